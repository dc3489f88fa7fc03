"""Employees sign in to the web client through the company's OpenID Connect provider
(mozilla-django-oidc, the same provider and client as the console's SSO: org/oidc.py).

On when MCHAT_OIDC_CLIENT_ID and MCHAT_WEB_OIDC are set. `/login/` then offers
"使用企业账号登录" -> `/login/sso/` -> the provider -> `/login/sso/callback/` (register it at the
provider beside the console's `/oidc/callback/`). The employee is the one whose
MCHAT_WEB_OIDC_EMPLOYEE_FIELD (`email`, case-insensitive, or `employee_id`) equals the provider's
MCHAT_WEB_OIDC_MATCH_CLAIM; none is created unless MCHAT_WEB_OIDC_CREATE_EMPLOYEES. Deactivated
employees, AI agents, and claims naming several employees are refused with a page saying so.
The sign-in is then what a password sign-in gives: a Django session and a web session with
short-lived MQTT credentials (org.web_auth), here of method "sso"; no initial password to
change. The employee's web account (its Django user) is created at the first SSO sign-in
if HR never set a web password, and its provider subject is kept (`sso_link` in the audit log).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import auth
from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousOperation
from django.db import transaction
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.utils.translation import gettext as _
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView
from requests.exceptions import RequestException

from audit.services import Target
from mchat.errors import MChatError
from org import services, signin_audit, web_auth
from org.models import Employee, WebAccount, WebSession

log = logging.getLogger("mchat.signin")

CALLBACK_URL_NAME = "web-sso-callback"
# The reasons a refusal page gives (request.mchat_sso_refusal).
UNKNOWN, DEACTIVATED, AMBIGUOUS, AGENT, NO_CLAIM, PROVIDER = (
    "unknown",
    "deactivated",
    "ambiguous",
    "agent",
    "no_claim",
    "provider",
)


def _settings(attr, *args):
    """mozilla-django-oidc's settings, with this flow's own callback URL."""
    if attr == "OIDC_AUTHENTICATION_CALLBACK_URL":
        return CALLBACK_URL_NAME
    return import_from_settings(attr, *args)


class EmployeeOIDCBackend(OIDCAuthenticationBackend):
    """Authenticates only inside the web SSO callback (request.mchat_web_sso), so the console's
    callback never matches employees and this one never matches console users."""

    get_settings = staticmethod(_settings)

    def authenticate(self, request, **kwargs):
        if request is None or not getattr(request, "mchat_web_sso", False):
            return None
        return super().authenticate(request, **kwargs)

    def verify_claims(self, claims: dict) -> bool:
        return True  # a missing claim is refused with its reason in get_or_create_user

    def _refuse(self, reason: str, target, claim_value: str):
        self.request.mchat_sso_refusal = reason
        signin_audit.sso_refused(
            request=self.request,
            target=target,
            reason=reason,
            claim={settings.MCHAT_WEB_OIDC_MATCH_CLAIM: claim_value},
        )
        log.warning(
            "web sso sign-in refused (%s): %s=%r", reason, settings.MCHAT_WEB_OIDC_MATCH_CLAIM, claim_value
        )
        return None

    def get_or_create_user(self, access_token, id_token, payload):
        claims = self.get_userinfo(access_token, id_token, payload)
        value = str(claims.get(settings.MCHAT_WEB_OIDC_MATCH_CLAIM) or "").strip()
        if not value:
            return self._refuse(NO_CLAIM, Target("employee", "", signin_audit.UNKNOWN), "")
        field = settings.MCHAT_WEB_OIDC_EMPLOYEE_FIELD
        lookup = {"email__iexact": value} if field == "email" else {"employee_id": value.lower()}
        matches = list(Employee.objects.filter(**lookup)[:2])
        if len(matches) > 1:
            return self._refuse(AMBIGUOUS, Target("employee", "", signin_audit.UNKNOWN), value)
        if not matches:
            if not settings.MCHAT_WEB_OIDC_CREATE_EMPLOYEES:
                return self._refuse(UNKNOWN, Target("employee", "", signin_audit.UNKNOWN), value)
            employee = self._create_employee(claims, value)
            if employee is None:
                return self._refuse(UNKNOWN, Target("employee", "", signin_audit.UNKNOWN), value)
        else:
            employee = matches[0]
        if not employee.is_active:
            return self._refuse(DEACTIVATED, employee, value)
        if employee.is_ai_agent:
            return self._refuse(AGENT, employee, value)
        return self._link(employee, subject=str(payload.get("sub") or claims.get("sub") or ""))

    def _create_employee(self, claims: dict, value: str) -> Employee | None:
        """MCHAT_WEB_OIDC_CREATE_EMPLOYEES: a new employee (no department) from the claims;
        audited as any employee_create (source: this request, system actor)."""
        by_email = settings.MCHAT_WEB_OIDC_EMPLOYEE_FIELD == "email"
        name = str(claims.get("name") or "").strip() or (value.split("@")[0] if by_email else value)
        try:
            issued = services.employee_create(
                actor=None,
                name=name,
                email=value if by_email else str(claims.get("email") or ""),
                employee_id=None if by_email else value.lower(),
            )
        except MChatError as exc:
            log.warning("web sso: cannot create an employee for %r: %s", value, exc)
            return None
        log.info("web sso: created employee %s for %r", issued.employee.employee_id, value)
        return issued.employee

    @transaction.atomic
    def _link(self, employee: Employee, *, subject: str):
        """The employee's web account (created without a usable password when HR never set
        one), its provider subject kept; a new or changed subject is an `sso_link` row."""
        account = (
            WebAccount.objects.select_related("user").select_for_update().filter(employee=employee).first()
        )
        if account is None:
            user = get_user_model()(username=f"{web_auth.USERNAME_PREFIX}{employee.employee_id}")
            user.set_unusable_password()
            user.save()
            account = WebAccount.objects.create(employee=employee, user=user, must_change_password=False)
        if subject and account.sso_subject != subject:
            before = account.sso_subject
            account.sso_subject = subject
            account.save(update_fields=["sso_subject"])
            signin_audit.sso_linked(
                request=self.request,
                employee=employee,
                subject_before=before,
                subject_after=subject,
                claim=settings.MCHAT_WEB_OIDC_MATCH_CLAIM,
            )
        return account.user


def _when_configured(view):
    def guarded(request, *args, **kwargs):
        if not getattr(settings, "MCHAT_WEB_OIDC", False):
            raise Http404
        return view(request, *args, **kwargs)

    return guarded


class WebSSOStart(OIDCAuthenticationRequestView):
    """GET /login/sso/?next=/c/...: off to the provider."""

    get_settings = staticmethod(_settings)

    def get(self, request):
        from org.views_web import _safe_next

        response = super().get(request)
        request.session["oidc_login_next"] = _safe_next(request, request.GET.get("next"))
        return response


class WebSSOCallback(OIDCAuthenticationCallbackView):
    """GET /login/sso/callback/?code=...&state=...: the provider's answer."""

    get_settings = staticmethod(_settings)

    def get(self, request):
        request.mchat_web_sso = True
        try:
            return super().get(request)
        except (SuspiciousOperation, RequestException, ValueError) as exc:
            # A stale or replayed state, an id token that does not verify, the provider down.
            log.warning("web sso callback failed: %s", exc)
            request.mchat_sso_refusal = PROVIDER
            signin_audit.sso_refused(
                request=request,
                target=Target("employee", "", signin_audit.UNKNOWN),
                reason=PROVIDER,
                claim={},
            )
            return self.login_failure()

    def login_success(self):
        employee = web_auth.employee_of_user(self.user)
        if employee is None:
            return self.login_failure()
        next_url = self.request.session.pop("oidc_login_next", None) or "/"  # login() may flush it
        web_auth.web_sign_out(request=self.request)  # a sign-in this browser had before ends
        auth.login(self.request, self.user)
        web_auth.web_sign_in_started(request=self.request, employee=employee, method=WebSession.Method.SSO)
        return HttpResponseRedirect(next_url)

    def login_failure(self):
        reason = getattr(self.request, "mchat_sso_refusal", None) or PROVIDER
        messages = {
            UNKNOWN: _("没有与该企业账号对应的员工。请联系人事管理员确认你的员工信息（邮箱或员工编号）。"),
            DEACTIVATED: _("该员工账号已停用，无法登录。如有疑问请联系人事管理员。"),
            AMBIGUOUS: _("该企业账号对应了多名员工，无法确定是谁。请联系人事管理员。"),
            AGENT: _("AI Agent 不能登录网页客户端。"),
            NO_CLAIM: _("企业账号没有提供用于识别员工的信息，请联系管理员检查单点登录配置。"),
            PROVIDER: _("企业账号登录未完成（可能已取消、超时或重复提交）。请重新登录。"),
        }
        return render(
            self.request,
            "web/sso_failed.html",
            {"message": messages.get(reason, messages[PROVIDER]), "reason": reason},
            status=403,
        )


start = _when_configured(WebSSOStart.as_view())
callback = _when_configured(WebSSOCallback.as_view())
