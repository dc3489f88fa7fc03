"""The console's second step: a signed-in console user without a verified code reaches only
the login, logout and two-factor pages. Requires django_otp's OTPMiddleware before it."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.utils.translation import gettext as _

from org.twofactor import console_code_needed, has_authenticator

# The REST API answers session-authenticated requests too: the same gate applies there.
API_PREFIX = "/api/"


class ConsoleTwoFactorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self._gate(request)
        return response if response is not None else self.get_response(request)

    def _gate(self, request):
        admin_prefix = reverse("admin:index")
        path = request.path
        if not (path.startswith(admin_prefix) or path.startswith(API_PREFIX)):
            return None
        open_paths = (
            reverse("admin:login"),
            reverse("admin:logout"),
            reverse("console-2fa-enrol"),
            reverse("console-2fa-verify"),
        )
        if path in open_paths or not console_code_needed(request.user):
            return None
        if path.startswith(API_PREFIX):
            return JsonResponse({"code": 403, "message": _("请先在管理后台完成两步验证")}, status=403)
        step = "console-2fa-verify" if has_authenticator(request.user) else "console-2fa-enrol"
        return HttpResponseRedirect(f"{reverse(step)}?{urlencode({'next': request.get_full_path()})}")
