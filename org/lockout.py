"""Lock-out after repeated sign-in failures (django-axes): the one policy of every sign-in form.

Axes counts the failures of every `django.contrib.auth.authenticate(request, ...)` call (the
console's login form, the web client's sign-in, which counts a typed login as its employee
id: org.web_auth.canonical_login), per account and per address, and refuses both for the
cool-off once either reaches MCHAT_LOCKOUT_FAILURES. This module only words the answer (the
console's page, the web sign-in's page, JSON for scripts; 429 with Retry-After) and gives HR
one service to lift a lock-out early.
"""

from __future__ import annotations

import math

from axes.helpers import get_client_username, get_cool_off
from axes.utils import reset
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _


def lockout_response(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: the Chinese cool-off page (429), JSON for scripted clients."""
    cool_off = get_cool_off(request)
    minutes = max(1, math.ceil(cool_off.total_seconds() / 60)) if cool_off else None
    context = {
        "username": get_client_username(request, credentials) or "",
        "failure_limit": settings.MCHAT_LOCKOUT_FAILURES,
        "cooloff_minutes": minutes,
    }
    if request.headers.get("x-requested-with") == "XMLHttpRequest" or request.path.startswith("/api/"):
        response = JsonResponse(
            {
                "code": 429,
                "message": _("登录失败次数过多，已暂时锁定"),
                "data": {"retry_after_minutes": minutes},
            },
            status=429,
        )
    else:
        console = request.path.startswith(reverse("admin:index"))
        response = render(request, "org/lockout.html" if console else "web/locked.html", context, status=429)
    if cool_off:
        response["Retry-After"] = str(math.ceil(cool_off.total_seconds()))
    return response


def signin_lockout_reset(*, username: str | None = None, ip_address: str | None = None) -> int:
    """Lift a lock-out now (HR): forget the failures of this account and/or address.

    Both given: the account's and the address's failures go. Returns how many failure
    records were removed; the history (AccessFailureLog, AccessLog) is kept as the record.
    """
    if not username and not ip_address:
        raise ValueError("username or ip_address is required")
    both = bool(username and ip_address)
    return reset(username=username or None, ip=ip_address or None, ip_or_username=both)
