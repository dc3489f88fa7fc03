"""Sign-in events in the audit log (docs/protocol.md §12, docs/signin.md "Recorded").

Rows (`action`, with `changes["via"]` = "web" or "console" and the browser's User-Agent in
`changes["user_agent"]`; the address is the row's own `address`):

| action | actor | target | when |
|---|---|---|---|
| `sign_in` | the employee (web) / console user | the same | a password or SSO sign-in succeeded |
| `sign_in_failed` | system (nobody is signed in) | the account tried, if it exists | a wrong password, an SSO refusal |
| `sign_in_locked_out` | system | the account tried, if it exists | the failure that started a lock-out |
| `sign_out` | the employee / console user | the same | signing out |
| `web_session_end` | the employee / console user (HR) | the employee | a sign-in ended from another browser or by HR |
| `sso_link` | the employee | the employee | an employee's web account linked to (or created for) a provider identity |
| `console_2fa_enrol` / `_verify` / `_refused` | the console user | the console user | two-factor enrolment, a code accepted, a code refused |

Attempts refused during a lock-out, without their password being checked, are not rows here
(Axes' AccessFailureLog keeps each of them): a guesser cannot grow the audit log faster than
the lock-out lets it guess. A typed login that names no account is recorded as "unknown",
never as typed (people type passwords there).

Console and web sign-ins reach these through Django's auth signals (`user_logged_in`,
`user_login_failed`, `user_logged_out`) and Axes' `user_locked_out`; the web sign-in's own
steps (its session, SSO links, sessions ended) call the functions below.
"""

from __future__ import annotations

from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth import get_user_model, user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.urls import reverse

from audit.services import Target, audit_record
from org.models import Employee, WebAccount

WEB = "web"
CONSOLE = "console"
USER_AGENT_MAX = 300
UNKNOWN = "unknown"


def user_agent_of(request) -> str:
    if request is None:
        return ""
    return request.headers.get("user-agent", "")[:USER_AGENT_MAX]


def via_of(request) -> str:
    """Which door a request came through: the web client's sign-in pages and endpoints
    (org/urls_web.py) or the console's (anything else: /admin/, /oidc/)."""
    path = getattr(request, "path", "") or ""
    web = (reverse("web-login"), reverse("web-logout"), reverse("web-password"), "/api/web/")
    return WEB if path.startswith(web) else CONSOLE


def record(action: str, *, request, target, actor: Employee | None = None, **changes) -> None:
    """One sign-in row with the browser's User-Agent (the address comes from the request's
    audit source, set by audit.context.AuditSourceMiddleware)."""
    audit_record(
        action=action,
        actor=actor,
        target=target,
        changes={"via": via_of(request), **changes, "user_agent": user_agent_of(request)},
    )


def _employee_of(user) -> Employee | None:
    if user is None or not getattr(user, "pk", None):
        return None
    account = WebAccount.objects.select_related("employee").filter(user_id=user.pk).first()
    return account.employee if account else None


def _attempted(request, credentials: dict):
    """The account a failed attempt named: (target, actor-less) for the row."""
    login = str((credentials or {}).get("username") or "").strip()
    if not login:
        return Target("account", "", UNKNOWN)
    if via_of(request) == WEB:
        from org.web_auth import web_account_for_login

        account = web_account_for_login(login=login)
        return account.employee if account else Target("employee", "", UNKNOWN)
    user = get_user_model().objects.filter(username=login).first()
    return user if user is not None else Target("user", "", UNKNOWN)


def _refused_unchecked(request) -> bool:
    """Axes refused this attempt because a lock-out was already on (the password was not
    checked): its failure count is past the limit."""
    failures = getattr(request, "axes_failures_since_start", None)
    return bool(failures and failures > settings.AXES_FAILURE_LIMIT)


def _through_a_door(request) -> bool:
    """A sign-in or sign-out of an HTTP request (not Django's test client's force_login /
    logout, which sign in with a bare request)."""
    return request is not None and bool(getattr(request, "path", ""))


@receiver(user_logged_in, dispatch_uid="mchat_signin_audit_logged_in")
def _logged_in(sender, request, user, **kwargs) -> None:
    if not _through_a_door(request) or _employee_of(user) is not None:
        return  # the web sign-in records itself, with its session (web_signed_in)
    method = "sso" if getattr(user, "backend", "").endswith("OIDCBackend") else "password"
    record("sign_in", request=request, target=user, method=method)


@receiver(user_login_failed, dispatch_uid="mchat_signin_audit_login_failed")
def _login_failed(sender, credentials, request=None, **kwargs) -> None:
    if request is None or _refused_unchecked(request):
        return
    if getattr(request, "mchat_sso_refusal", None):
        return  # the SSO callback records its refusal with the reason (sso_refused)
    method = "password" if "username" in (credentials or {}) else "sso"
    record("sign_in_failed", request=request, target=_attempted(request, credentials), method=method)


@receiver(user_locked_out, dispatch_uid="mchat_signin_audit_locked_out")
def _locked_out(sender, request, username=None, ip_address=None, **kwargs) -> None:
    if request is None or _refused_unchecked(request):
        return
    record(
        "sign_in_locked_out",
        request=request,
        target=_attempted(request, getattr(request, "axes_credentials", None) or {"username": username}),
        failures=getattr(request, "axes_failures_since_start", None),
        cooloff_minutes=settings.MCHAT_LOCKOUT_COOLOFF_MINUTES,
    )


@receiver(user_logged_out, dispatch_uid="mchat_signin_audit_logged_out")
def _logged_out(sender, request, user, **kwargs) -> None:
    if user is None or not _through_a_door(request) or _employee_of(user) is not None:
        return  # web sign-outs are recorded with their session (web_signed_out)
    record("sign_out", request=request, target=user)


# --- the web sign-in's own steps ---------------------------------------------------------------


def web_signed_in(*, request, employee: Employee, session) -> None:
    record(
        "sign_in",
        request=request,
        actor=employee,
        target=employee,
        method=session.method,
        session=session.pk,
    )


def web_signed_out(*, request, employee: Employee, session_pk: int) -> None:
    record("sign_out", request=request, actor=employee, target=employee, session=session_pk)


def web_session_ended(*, request, employee: Employee, session, by: Employee | None, reason: str) -> None:
    """`by`: the employee ending one of its sign-ins elsewhere, or None (HR in the console)."""
    from org.web_sessions import device_label

    record(
        "web_session_end",
        request=request,
        actor=by,
        target=employee,
        session=session.pk,
        device=device_label(session.user_agent),
        session_address=session.address,
        reason=reason,
    )


def sso_linked(*, request, employee: Employee, subject_before: str, subject_after: str, claim: str) -> None:
    record(
        "sso_link",
        request=request,
        actor=employee,
        target=employee,
        sso_subject={"before": subject_before or None, "after": subject_after},
        claim=claim,
    )


def sso_refused(*, request, target, reason: str, claim: dict) -> None:
    """`claim`: {claim name: the value the provider sent} that matched no (usable) employee."""
    record("sign_in_failed", request=request, target=target, method="sso", reason=reason, claim=claim)


def console_2fa(action: str, *, request, **changes) -> None:
    """console_2fa_enrol / console_2fa_verify / console_2fa_refused for the signed-in user."""
    record(action, request=request, target=request.user, **changes)
