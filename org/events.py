"""What org changes tell the outside world, always after commit."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable

from django.utils import timezone

from mchat import broker_policy
from mchat.outbox import publish_json_on_commit
from mchat.wire import SYSTEM_NOTIFY_TOPIC, isoformat_z, profile_topic
from org import web_sessions
from org.models import AgentProfile, Employee, SystemNotice
from org.presence import presence_signed_off

# The public profile (spec 3.18 `profile`): what every employee may see on mchat/profile/+.
# Contact details (email, phone) and is_org_admin stay out of this broadcast.
PROFILE_FIELDS = (
    "name",
    "department_id",
    "manager_id",
    "is_ai_agent",
    "is_active",
    "title",
    "avatar",
    "signature",
    "skills_badge",
    "capabilities",
)


def credential_reset(employee_id: str) -> None:
    """A new password: the old one's live sessions are disconnected at the reload."""
    _credential_revoked(employee_id, reason=web_sessions.CREDENTIAL_RESET)


def employee_deactivated(employee: Employee) -> None:
    """The passwd line goes away (new logins refused) and live sessions are disconnected.
    Mosquitto publishes no Will for sessions it drops that way, so presence says offline."""
    _credential_revoked(employee.employee_id, reason=web_sessions.DEACTIVATED)
    presence_signed_off(employee=employee)


def _credential_revoked(employee_id: str, *, reason: str) -> None:
    # Its web sign-ins end too: the broker refuses their short-lived tokens (web-revoked).
    web_sessions.web_sessions_end_all(employee_id=employee_id, reason=reason)
    broker_policy.sessions_revoked([employee_id])


def profile_payload(employee: Employee) -> dict:
    try:
        agent: AgentProfile | None = employee.agent_profile
    except AgentProfile.DoesNotExist:
        agent = None
    return {
        "name": employee.name,
        "department_id": employee.department.department_id if employee.department else None,
        "manager_id": employee.manager.employee_id if employee.manager else None,
        "is_ai_agent": employee.is_ai_agent,
        "is_active": employee.is_active,
        "title": employee.title,
        "avatar": employee.avatar,
        "signature": employee.signature,
        "skills_badge": list(agent.skills_badge) if agent else [],
        "capabilities": list(agent.capabilities) if agent else [],
    }


def employee_profile_changed(employee: Employee, *, fields: Iterable[str], event: str) -> None:
    """Spec 3.18 on mchat/profile/{employee_id}.

    `event` is "created", "updated", "deactivated" or "reactivated"; `fields` names the public
    profile fields that changed (others, such as email, are not announced). Nothing is
    published when no public field changed.
    """
    shown = [name for name in PROFILE_FIELDS if name in set(fields)]
    if not shown:
        return
    publish_json_on_commit(
        profile_topic(employee.employee_id),
        {
            "employee_id": employee.employee_id,
            "event": event,
            "fields": shown,
            "profile": profile_payload(employee),
            "updated_at": isoformat_z(employee.updated_at),
        },
    )


def new_notify_id() -> str:
    """Time-ordered and unguessable, like messaging's ids: notify_0193a4f1c2d85f3e9a1b7c4d."""
    return f"notify_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(6)}"


def system_notice_published(notice: SystemNotice, *, operator_id: str) -> None:
    """Spec 3.19 to every employee on mchat/system/notify; not retained (a notice is news).
    `operator_id`: the employee who published it, or "system" (docs/protocol.md §12.3)."""
    publish_json_on_commit(
        SYSTEM_NOTIFY_TOPIC,
        {
            "notify_id": notice.notify_id,
            "type": "system_notice",
            "title": notice.title,
            "body": {"text": notice.text, "operator_id": operator_id},
            "created_at": isoformat_z(notice.created_at or timezone.now()),
        },
        qos=1,
        retain=False,
    )
