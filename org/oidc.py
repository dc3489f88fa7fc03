"""Single sign-on for the console through the company's OpenID Connect provider
(mozilla-django-oidc), on when MCHAT_OIDC_CLIENT_ID is set.

A console user is the Django user whose MCHAT_OIDC_USER_FIELD (email) equals the provider's
MCHAT_OIDC_MATCH_CLAIM (email) claim, compared case-insensitively. Nobody is created unless
MCHAT_OIDC_CREATE_USERS is on (and then not as staff: HR grants console access). Deactivated
users are refused (mozilla-django-oidc logs in active users only). Two-factor, if required,
still follows (ConsoleTwoFactorMiddleware).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import Http404
from django.urls import path
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

log = logging.getLogger("mchat.signin")


class ConsoleOIDCBackend(OIDCAuthenticationBackend):
    def authenticate(self, request, **kwargs):
        if request is not None and getattr(request, "mchat_web_sso", False):
            return None  # the web client's employees (org.web_oidc): not console users
        return super().authenticate(request, **kwargs)

    def _claim(self, claims: dict) -> str:
        return str(claims.get(settings.MCHAT_OIDC_MATCH_CLAIM) or "").strip()

    def verify_claims(self, claims: dict) -> bool:
        return bool(self._claim(claims))

    def filter_users_by_claims(self, claims: dict):
        value = self._claim(claims)
        if not value:
            return self.UserModel.objects.none()
        users = self.UserModel.objects.filter(**{f"{settings.MCHAT_OIDC_USER_FIELD}__iexact": value})
        if not users:
            log.warning("oidc sign-in: no console user with %s=%s", settings.MCHAT_OIDC_USER_FIELD, value)
        return users

    def create_user(self, claims: dict):
        log.info("oidc sign-in: creating user for %s", self._claim(claims))
        return super().create_user(claims)


def _when_configured(view):
    def guarded(request, *args, **kwargs):
        if not getattr(settings, "MCHAT_OIDC", False):
            raise Http404
        return view(request, *args, **kwargs)

    return guarded


# Mounted under oidc/ by mchat/urls.py; 404 while single sign-on is not configured.
urlpatterns = [
    path(
        "authenticate/",
        _when_configured(OIDCAuthenticationRequestView.as_view()),
        name="oidc_authentication_init",
    ),
    path(
        "callback/",
        _when_configured(OIDCAuthenticationCallbackView.as_view()),
        name="oidc_authentication_callback",
    ),
]
