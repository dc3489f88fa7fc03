"""Two-factor sign-in for the HR console (TOTP with recovery codes, django-otp).

MCHAT_CONSOLE_2FA: "off" (the embedded default), "optional" (console users who enrolled a
device must enter a code at every sign-in), "required" (every console user enrols an
authenticator at first sign-in, then enters a code at every sign-in). The password step stays
Django's admin login, so the lock-out (django-axes) counts its failures; the code step is
enforced by ConsoleTwoFactorMiddleware on the console and the session-authenticated REST API.
"""

from __future__ import annotations

from django.conf import settings
from django_otp import devices_for_user
from django_otp.plugins.otp_totp.models import TOTPDevice


def console_2fa_mode() -> str:
    return getattr(settings, "MCHAT_CONSOLE_2FA", "off")


def has_authenticator(user) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def console_code_needed(user) -> bool:
    """Whether this signed-in user must still enter a code before using the console."""
    mode = console_2fa_mode()
    if mode == "off" or not user.is_authenticated or not user.is_staff:
        return False
    if user.is_verified():
        return False
    if mode == "required":
        return True
    return any(True for _ in devices_for_user(user, confirmed=True))
