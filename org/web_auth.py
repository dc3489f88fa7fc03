"""Web sign-in of employees (DESIGN §8): web passwords, sessions and short-lived MQTT credentials.

Employees sign in through Django's auth machinery: each has a Django user of its own
(WebAccount, never staff), `EmployeeWebBackend` finds it by employee id or email, and the views
call `django.contrib.auth.authenticate(request, ...)` and `login()`, so lock-out libraries and
SSO backends plug in by configuration. Console accounts stay separate users.

A signed-in page asks for an MQTT credential (`web_credential_issue`): a token the mchat_auth
plugin verifies (org.web_tokens), bound to one client id `{employee_id}_web-<hex>`, expiring in
minutes. The long-lived device password never reaches the browser.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from axes.helpers import get_client_ip_address
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.services import audit_record
from mchat import broker_policy
from org import signin_audit, web_sessions
from org.models import Employee, WebAccount, WebSession
from org.web_tokens import SECRET_FILE, WEB_DEVICE_PATTERN, new_web_device, token_sign, web_secret_ensure

SESSION_SID_KEY = "mchat_web_sid"
# Django usernames of web accounts; a console user cannot be named like this by accident.
USERNAME_PREFIX = "web+"


class EmployeeWebBackend(ModelBackend):
    """`authenticate(request, username=<employee id or email>, password=<web password>)`.

    An email shared by several employees signs in no one (ambiguous). Inactive employees and
    employees without a web password (or signing in only through SSO) are refused like a wrong
    password; with MCHAT_WEB_LOCAL_PASSWORDS off nobody signs in with a password.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if not username or password is None or not settings.MCHAT_WEB_LOCAL_PASSWORDS:
            return None
        account = web_account_for_login(login=username)
        if account is None:
            # Same work as a real check, so timing does not tell which ids exist.
            get_user_model()().set_password(password)
            return None
        user = account.user
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None


def web_account_for_login(*, login: str) -> WebAccount | None:
    login = login.strip()
    if not login:
        return None
    matches = list(
        WebAccount.objects.select_related("user", "employee")
        .filter(employee__is_active=True)
        .filter(Q(employee__employee_id=login.lower()) | Q(employee__email__iexact=login))[:2]
    )
    return matches[0] if len(matches) == 1 else None


def canonical_login(login: str) -> str:
    """What the lock-out counts a typed login as: the employee id when it names one (so the id
    and the email, in any letter case, are one account), else the text in lower case."""
    login = login.strip()
    account = web_account_for_login(login=login)
    return account.employee.employee_id if account else login.lower()


def employee_of_user(user) -> Employee | None:
    """The active employee a signed-in Django user is, or None (console users, deactivated)."""
    if not getattr(user, "is_authenticated", False):
        return None
    account = WebAccount.objects.select_related("employee").filter(user_id=user.pk).first()
    if account is None or not account.employee.is_active:
        return None
    return account.employee


def new_web_password() -> str:
    """An initial password HR hands over; the employee replaces it at first sign-in."""
    return secrets.token_urlsafe(9)


@transaction.atomic
def web_password_set(*, employee: Employee, password: str | None = None, must_change: bool = True) -> str:
    """Set (or reset) the employee's web password; returns it (shown once, stored hashed).

    HR's passwords are initial ones (`must_change`): the employee chooses a new one at first
    sign-in. Every web sign-in of the employee ends, with its MQTT connections.
    """
    password = password or new_web_password()
    with transaction.atomic():
        account = WebAccount.objects.select_related("user").filter(employee=employee).first()
        if account is None:
            user = get_user_model().objects.create(username=f"{USERNAME_PREFIX}{employee.employee_id}")
            account = WebAccount(employee=employee, user=user)
        account.user.set_password(password)
        account.user.save(update_fields=["password"])
        account.must_change_password = must_change
        account.password_changed_at = timezone.now()
        account.save()
        if web_sessions.web_sessions_end_all(
            employee_id=employee.employee_id, reason=web_sessions.PASSWORD_RESET
        ):
            broker_policy.access_changed()
        # The console user or command that set it comes from the audit context.
        audit_record(
            action="employee_web_password_set",
            actor=None,
            target=employee,
            changes={"web_password": "changed", "must_change_password": must_change},
        )
    return password


def web_password_changed(*, employee: Employee) -> None:
    """The employee chose its own password (Django's password form saved it): no longer an
    initial one."""
    with transaction.atomic():
        WebAccount.objects.filter(employee=employee).update(
            must_change_password=False, password_changed_at=timezone.now()
        )
        audit_record(
            action="employee_web_password_change",
            actor=employee,
            target=employee,
            changes={"web_password": "changed"},
        )


def web_password_must_change(*, employee: Employee) -> bool:
    return WebAccount.objects.filter(employee=employee, must_change_password=True).exists()


def client_address(request) -> str:
    """The browser's address as the lock-out sees it (MCHAT_PROXY_COUNT: X-Forwarded-For's)."""
    return (get_client_ip_address(request) or "")[:64]


@transaction.atomic
def web_sign_in_started(
    *, request, employee: Employee, method: str = WebSession.Method.PASSWORD
) -> WebSession:
    """After `login()`: a web session whose id goes into every token issued to it. Other
    browsers of the employee stay signed in (each has its own session and client ids)."""
    session = web_sessions.web_session_start(
        employee=employee,
        method=method,
        address=client_address(request),
        user_agent=request.headers.get("user-agent", ""),
    )
    request.session[SESSION_SID_KEY] = session.sid
    signin_audit.web_signed_in(request=request, employee=employee, session=session)
    return session


def web_sign_out(*, request) -> None:
    """End this sign-in's web session: its tokens are refused and its MQTT connections closed
    once the broker files are rendered (after commit). The caller then calls `logout()`."""
    sid = request.session.get(SESSION_SID_KEY)
    if not sid:
        return
    with transaction.atomic():
        session = WebSession.objects.select_related("employee").filter(sid=sid, ended_at__isnull=True).first()
        if session is None or not web_sessions.web_session_end(sid=sid, reason=web_sessions.SIGNED_OUT):
            return
        signin_audit.web_signed_out(request=request, employee=session.employee, session_pk=session.pk)
        broker_policy.access_changed()


@transaction.atomic
def web_session_end_for(
    *, request, employee: Employee, session_pk: int, by: Employee | None
) -> WebSession | None:
    """End one of `employee`'s sign-ins: from another of its browsers (`by` = the employee, the
    "登录设备" panel) or by HR (`by` None, the console). Its tokens are refused and its MQTT
    connections closed; that browser's page finds itself signed out. None if there was no
    such active sign-in."""
    session = (
        WebSession.objects.select_for_update()
        .filter(pk=session_pk, employee=employee, ended_at__isnull=True)
        .first()
    )
    if session is None:
        return None
    reason = web_sessions.ENDED_BY_EMPLOYEE if by is not None else web_sessions.ENDED_BY_HR
    web_sessions.web_session_end(sid=session.sid, reason=reason)
    signin_audit.web_session_ended(request=request, employee=employee, session=session, by=by, reason=reason)
    broker_policy.access_changed()
    return session


def web_session_current(request) -> tuple[Employee, WebSession] | None:
    """The signed-in employee and the active web session of this request, else None."""
    employee = employee_of_user(request.user)
    if employee is None:
        return None
    session = web_sessions.web_session_get_active(sid=request.session.get(SESSION_SID_KEY), employee=employee)
    if session is None:
        return None
    return employee, session


@dataclass(frozen=True)
class WebCredential:
    employee: Employee
    client_id: str
    password: str
    expires_at: datetime
    refresh_in_seconds: int

    def as_json(self) -> dict:
        employee = self.employee
        return {
            "employee": {
                "employee_id": employee.employee_id,
                "name": employee.name,
                "is_org_admin": employee.is_org_admin,
                "is_ai_agent": employee.is_ai_agent,
                "department_id": employee.department.department_id if employee.department_id else None,
            },
            "client_id": self.client_id,
            "username": employee.employee_id,
            "password": self.password,
            "expires_at": self.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "refresh_in_seconds": self.refresh_in_seconds,
            "ws_url": settings.MCHAT_PUBLIC_WS_URL,
            "protocol_version": 5,
        }


def web_token_key() -> bytes:
    directory = Path(settings.MCHAT_BROKER_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    return web_secret_ensure(directory / SECRET_FILE)


@transaction.atomic
def web_credential_issue(*, employee: Employee, sid: str, device: str | None = None) -> WebCredential | None:
    """A short-lived MQTT credential for this web session; None if the session has ended.

    `device` (a previous `web-<hex>` of this same session) keeps the page's client id across
    refreshes; anything else gets a new device id.
    """
    session = (
        WebSession.objects.select_for_update()
        .filter(sid=sid, employee=employee, ended_at__isnull=True)
        .first()
    )
    if session is None:
        return None
    if not (
        isinstance(device, str)
        and WEB_DEVICE_PATTERN.match(device)
        and f"{employee.employee_id}_{device}" in session.client_ids
    ):
        device = new_web_device()
    client_id = f"{employee.employee_id}_{device}"
    ttl = settings.MCHAT_WEB_TOKEN_TTL_SECONDS
    expiry = int(timezone.now().timestamp()) + ttl
    expires_at = datetime.fromtimestamp(expiry, tz=UTC)
    web_sessions.web_session_add_client(session=session, client_id=client_id, valid_until=expires_at)
    token = token_sign(
        key=web_token_key(), username=employee.employee_id, client_id=client_id, expiry=expiry, sid=sid
    )
    return WebCredential(
        employee=employee,
        client_id=client_id,
        password=token,
        expires_at=expires_at,
        refresh_in_seconds=max(10, int(ttl * 0.8)),
    )
