"""The web client's server side (DESIGN §8): sign-in pages, the MQTT credential, the page shell.

Server-rendered, no inline scripts (the Content-Security-Policy forbids them). Everything else
the page does goes over MQTT.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib.auth import authenticate, login, logout, update_session_auth_hash
from django.contrib.auth.forms import PasswordChangeForm, SetPasswordForm
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.csrf import csrf_failure as django_csrf_failure
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect, ensure_csrf_cookie
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from org import web_auth, web_sessions
from org.models import Employee, WebSession

HOME = "/"


class SignInForm(forms.Form):
    login = forms.CharField(label=gettext_lazy("员工编号或邮箱"), max_length=254)
    password = forms.CharField(
        label=gettext_lazy("密码"), max_length=128, strip=False, widget=forms.PasswordInput
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["login"].widget.attrs.update(autocomplete="username", autofocus=True)
        self.fields["password"].widget.attrs.update(autocomplete="current-password")


def _safe_next(request: HttpRequest, value: str | None) -> str:
    """A same-site path to go to after signing in; anything else (other hosts, schemes,
    protocol-relative URLs) is replaced by the home page."""
    if (
        value
        and value.startswith("/")
        and not value.startswith(("//", "/\\"))
        and url_has_allowed_host_and_scheme(
            value, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
    ):
        return value
    return HOME


def _with_next(path: str, next_url: str) -> str:
    return f"{path}?{urlencode({'next': next_url})}"


def _current(request: HttpRequest) -> tuple[Employee, WebSession] | None:
    """This request's employee and web session; a Django session whose web session ended
    (signed out elsewhere, deactivated, password reset) is signed out here too."""
    current = web_auth.web_session_current(request)
    if (
        current is None
        and request.user.is_authenticated
        and web_auth.employee_of_user(request.user) is not None
    ):
        logout(request)
    return current


def _must_change_password(employee: Employee, session: WebSession) -> bool:
    """An initial password must be replaced first, unless this sign-in came through SSO (or
    local passwords are off): the employee then never uses that password."""
    return (
        session.method == WebSession.Method.PASSWORD
        and settings.MCHAT_WEB_LOCAL_PASSWORDS
        and web_auth.web_password_must_change(employee=employee)
    )


def _sign_in_page(
    request: HttpRequest, form: SignInForm | None, next_url: str, status: int = 200
) -> HttpResponse:
    context = {
        "form": form if settings.MCHAT_WEB_LOCAL_PASSWORDS or not settings.MCHAT_WEB_OIDC else None,
        "next": next_url,
        "sso": settings.MCHAT_WEB_OIDC,
    }
    return render(request, "web/login.html", context, status=status)


@sensitive_post_parameters("password")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def sign_in(request: HttpRequest) -> HttpResponse:
    next_url = _safe_next(request, request.POST.get("next") or request.GET.get("next"))
    if request.method == "GET" and _current(request) is not None:
        return redirect(next_url)
    form = SignInForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and settings.MCHAT_WEB_OIDC and not settings.MCHAT_WEB_LOCAL_PASSWORDS:
        return _sign_in_page(request, None, next_url, status=403)  # SSO only: no passwords here
    if request.method == "POST":
        if form.is_valid():
            # Always through authenticate(), as the canonical account: django-axes counts
            # every failure per account and per address and locks both out (org.lockout);
            # its middleware then answers with the cool-off page instead of this one.
            user = authenticate(
                request,
                username=web_auth.canonical_login(form.cleaned_data["login"]),
                password=form.cleaned_data["password"],
            )
            employee = web_auth.employee_of_user(user) if user is not None else None
            if employee is not None:
                web_auth.web_sign_out(request=request)  # a sign-in this browser had before ends
                login(request, user)
                session = web_auth.web_sign_in_started(request=request, employee=employee)
                if _must_change_password(employee, session):
                    return redirect(_with_next(reverse("web-password"), next_url))
                return redirect(next_url)
        form.add_error(None, _("员工编号/邮箱或密码不正确"))
    return _sign_in_page(request, form, next_url)


@sensitive_post_parameters()
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def password_change(request: HttpRequest) -> HttpResponse:
    """Choose a new password: required after an initial one (HR's or createemployee's)."""
    next_url = _safe_next(request, request.POST.get("next") or request.GET.get("next"))
    current = _current(request)
    if current is None:
        return redirect(_with_next(reverse("web-login"), request.get_full_path()))
    employee, session = current
    if not settings.MCHAT_WEB_LOCAL_PASSWORDS:
        return redirect(next_url)  # no local password to change
    forced = _must_change_password(employee, session)
    form_class = SetPasswordForm if forced else PasswordChangeForm
    form = form_class(request.user, request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        form.save()
        web_auth.web_password_changed(employee=employee)
        update_session_auth_hash(request, form.user)
        return redirect(next_url)
    return render(
        request, "web/password.html", {"form": form, "forced": forced, "next": next_url, "employee": employee}
    )


@csrf_protect
@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    """End the Django session and this sign-in's MQTT credentials and connections."""
    web_auth.web_sign_out(request=request)
    logout(request)
    return redirect("web-login")


def _json_error(code: int, message: str) -> JsonResponse:
    return JsonResponse(
        {"code": code, "message": message}, status=code, json_dumps_params={"ensure_ascii": False}
    )


@never_cache
@require_POST
def mqtt_credential(request: HttpRequest) -> JsonResponse:
    """POST /api/web/mqtt-credential (session cookie + X-CSRFToken): a short-lived MQTT
    credential for this page's own client id (docs/protocol.md, "Web sign-in")."""
    current = _current(request)
    if current is None:
        return _json_error(401, _("未登录或登录已失效，请重新登录"))
    employee, session = current
    if _must_change_password(employee, session):
        return _json_error(403, _("请先修改初始密码"))
    device = None
    if request.body:
        try:
            body = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            return _json_error(400, _("请求体必须是 JSON 对象"))
        if not isinstance(body, dict):
            return _json_error(400, _("请求体必须是 JSON 对象"))
        device = body.get("device")
    credential = web_auth.web_credential_issue(employee=employee, sid=session.sid, device=device)
    if credential is None:
        return _json_error(401, _("未登录或登录已失效，请重新登录"))
    return JsonResponse(credential.as_json(), json_dumps_params={"ensure_ascii": False})


@ensure_csrf_cookie
@never_cache
@require_http_methods(["GET", "HEAD"])
def web_shell(request: HttpRequest, rest: str = "") -> HttpResponse:
    """`/` and `/c/...`: the built client's index.html for a signed-in employee."""
    current = _current(request)
    if current is None:
        return redirect(_with_next(reverse("web-login"), request.get_full_path()))
    employee, session = current
    if _must_change_password(employee, session):
        return redirect(_with_next(reverse("web-password"), request.get_full_path()))
    web_sessions.web_session_seen(session=session)
    try:
        html = (Path(settings.MCHAT_WEB_DIST_DIR) / "index.html").read_bytes()
    except FileNotFoundError:
        return render(request, "web/unbuilt.html", status=503)
    return HttpResponse(html, content_type="text/html; charset=utf-8")


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """JSON for the web client's API, Django's page elsewhere."""
    if request.path.startswith("/api/web/"):
        return _json_error(403, _("CSRF 校验失败，请刷新页面后重试"))
    return django_csrf_failure(request, reason)
