"""What the console's login page offers: single sign-on, local passwords."""

from django import template
from django.conf import settings

register = template.Library()


@register.simple_tag
def mchat_sso_enabled() -> bool:
    return bool(getattr(settings, "MCHAT_OIDC", False))


@register.simple_tag
def mchat_local_passwords() -> bool:
    return bool(getattr(settings, "MCHAT_LOCAL_PASSWORDS", True))
