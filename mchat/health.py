"""The web process's `/healthz` (up, and reaches its database: for a load balancer, systemd,
runstack) and `/metrics` (Prometheus, by django-prometheus)."""

from __future__ import annotations

import hmac
import logging

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpResponseForbidden, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_prometheus.exports import ExportToDjangoView

logger = logging.getLogger("mchat.web")


@never_cache
@require_GET
def healthz(request):
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        logger.warning("health check: database unreachable", exc_info=True)
        return JsonResponse({"status": "unavailable", "database": "unreachable"}, status=503)
    return JsonResponse({"status": "ok"})


LOOPBACK = {"127.0.0.1", "::1"}


@never_cache
@require_GET
def metrics(request):
    """Prometheus metrics of the web (all gunicorn workers when PROMETHEUS_MULTIPROC_DIR is set).

    Only for a scraper on this machine (a request relayed by a reverse proxy carries
    X-Forwarded-For and is refused), or anyone presenting MCHAT_METRICS_TOKEN as a bearer token.
    """
    token = settings.MCHAT_METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        allowed = hmac.compare_digest(given.encode(), token.encode())
    else:
        allowed = request.META.get("REMOTE_ADDR") in LOOPBACK and "X-Forwarded-For" not in request.headers
    if not allowed:
        return HttpResponseForbidden("metrics: forbidden\n", content_type="text/plain")
    return ExportToDjangoView(request)
