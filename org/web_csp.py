"""The Content-Security-Policy with the endpoints the web client may reach, read from the
settings at each response (django-csp's static policy is in settings.CONTENT_SECURITY_POLICY):
the MQTT WebSockets URL and the storage origins for file bytes. Nothing else off-site."""

from __future__ import annotations

from csp.middleware import CSPMiddleware, PolicyParts
from django.conf import settings


class WebClientCSPMiddleware(CSPMiddleware):
    def get_policy_parts(self, request, response, report_only: bool = False) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        storage = list(settings.MCHAT_CSP_STORAGE_ORIGINS)
        endpoints = {
            "connect-src": [settings.MCHAT_PUBLIC_WS_URL, *storage],
            "img-src": storage,
            "media-src": storage,
        }
        for directive, sources in (parts.update or {}).items():
            endpoints[directive] = [*endpoints.get(directive, []), *sources]
        return PolicyParts(parts.config, endpoints, parts.replace, parts.nonce)
