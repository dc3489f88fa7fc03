"""Web sessions: one row per sign-in, so that ending one ends its MQTT credentials (DESIGN §8).

Database only. Whoever ends sessions also asks for the broker files to be rendered again
(mchat.broker_policy.access_changed), which writes `web-revoked` from
`web_sessions_revoked_for_broker`; the mchat_auth plugin then refuses the sessions' tokens and
disconnects their connections.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from org.models import Employee, WebSession
from org.web_tokens import new_sid

# Client ids remembered per session (each tab or reload of the page may open one).
MAX_CLIENT_IDS = 50
PURGE_BATCH = 1000

SIGNED_OUT = "signed_out"
DEACTIVATED = "deactivated"
CREDENTIAL_RESET = "credential_reset"
PASSWORD_RESET = "password_reset"
# Ended from another browser of the employee's ("登录设备"), or by HR in the console.
ENDED_BY_EMPLOYEE = "ended_by_employee"
ENDED_BY_HR = "ended_by_hr"

USER_AGENT_MAX = 300
# A session's last_seen_at is written at most this often (the page refreshes its credential
# every few minutes; a reload asks again at once).
LAST_SEEN_STEP = timedelta(seconds=60)


def web_session_start(
    *, employee: Employee, method: str = WebSession.Method.PASSWORD, address: str = "", user_agent: str = ""
) -> WebSession:
    """A new sign-in. Each browser has its own: an employee may be signed in on several."""
    now = timezone.now()
    return WebSession.objects.create(
        sid=new_sid(),
        employee=employee,
        method=method,
        address=address[:64],
        user_agent=user_agent[:USER_AGENT_MAX],
        last_seen_at=now,
    )


def web_sessions_active(*, employee: Employee) -> QuerySet[WebSession]:
    """The employee's current sign-ins, the most recently active first."""
    return WebSession.objects.filter(employee=employee, ended_at__isnull=True).order_by(
        "-last_seen_at", "-created_at", "-pk"
    )


def web_session_get_active(*, sid: str | None, employee: Employee) -> WebSession | None:
    if not sid:
        return None
    return WebSession.objects.filter(sid=sid, employee=employee, ended_at__isnull=True).first()


@transaction.atomic
def web_session_end(*, sid: str, reason: str) -> bool:
    """True if the session was active (the broker files need rendering)."""
    return bool(
        WebSession.objects.filter(sid=sid, ended_at__isnull=True).update(
            ended_at=timezone.now(), end_reason=reason
        )
    )


def web_sessions_end_all(*, employee_id: str, reason: str) -> int:
    """Every active session of the employee; runs inside the caller's transaction."""
    return WebSession.objects.filter(employee__employee_id=employee_id, ended_at__isnull=True).update(
        ended_at=timezone.now(), end_reason=reason
    )


def web_session_add_client(*, session: WebSession, client_id: str, valid_until: datetime) -> None:
    """Record a token issued to `client_id` until `valid_until` (the row is locked by the caller)."""
    ids = [cid for cid in session.client_ids if cid != client_id]
    session.client_ids = [*ids, client_id][-MAX_CLIENT_IDS:]
    if session.tokens_valid_until is None or session.tokens_valid_until < valid_until:
        session.tokens_valid_until = valid_until
    session.last_seen_at = timezone.now()
    session.save(update_fields=["client_ids", "tokens_valid_until", "last_seen_at"])


def web_session_seen(*, session: WebSession) -> None:
    """The browser showed up (a page load): move last_seen_at, at most once a minute."""
    now = timezone.now()
    if session.last_seen_at is None or now - session.last_seen_at >= LAST_SEEN_STEP:
        WebSession.objects.filter(pk=session.pk).update(last_seen_at=now)
        session.last_seen_at = now


_BROWSERS = (
    # (pattern, name) in order: Edge and Opera also say "Chrome", Chrome also says "Safari".
    (re.compile(r"Edg(?:e|A|iOS)?/(\d+)"), "Edge"),
    (re.compile(r"(?:OPR|Opera)/(\d+)"), "Opera"),
    (re.compile(r"MicroMessenger/(\d+)"), "微信"),
    (re.compile(r"Firefox/(\d+)"), "Firefox"),
    (re.compile(r"(?:Chromium|HeadlessChrome)/(\d+)"), "Chromium"),
    (re.compile(r"(?:Chrome|CriOS)/(\d+)"), "Chrome"),
    (re.compile(r"Version/(\d+)[.\d]* (?:Mobile/\S+ )?Safari/"), "Safari"),
)
_SYSTEMS = (
    ("Windows", "Windows"),
    ("Android", "Android"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


def device_label(user_agent: str) -> str:
    """ "Chrome 131 · Windows" from a User-Agent header, for people to recognise a sign-in;
    the header itself is kept beside it. Unknown parts are left out."""
    browser = ""
    for pattern, name in _BROWSERS:
        match = pattern.search(user_agent)
        if match:
            browser = f"{name} {match.group(1)}"
            break
    system = next((label for token, label in _SYSTEMS if token in user_agent), "")
    return " · ".join(part for part in (browser, system) if part)


def web_sessions_revoked_for_broker(*, now: datetime | None = None) -> list[tuple[str, int, list[str]]]:
    """(sid, until as Unix seconds, client_ids) of ended sessions whose tokens have not all
    expired yet: what `web-revoked` lists. Sessions that never got a token need no line."""
    now = now or timezone.now()
    rows = (
        WebSession.objects.filter(ended_at__isnull=False, tokens_valid_until__gt=now)
        .order_by("sid")
        .values_list("sid", "tokens_valid_until", "client_ids")
    )
    return [(sid, int(until.timestamp()) + 1, list(client_ids)) for sid, until, client_ids in rows]


def web_sessions_purge() -> int:
    """Forget web sessions that can no longer matter: ended ones whose tokens all expired, and
    ones older than a Django session can live (their browser's session expired). A periodic
    clean-up (settings.MCHAT_SCHEDULE: Celery beat or runschedule); bounded per run."""
    now = timezone.now()
    expired_tokens = Q(tokens_valid_until__isnull=True) | Q(tokens_valid_until__lt=now)
    stale = WebSession.objects.filter(expired_tokens).filter(
        Q(ended_at__isnull=False) | Q(created_at__lt=now - timedelta(seconds=settings.SESSION_COOKIE_AGE))
    )
    pks = list(stale.values_list("pk", flat=True)[:PURGE_BATCH])
    deleted, _ = WebSession.objects.filter(pk__in=pks).delete()
    return deleted
