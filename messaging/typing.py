"""Typing and "thinking" indicators (issue 17): ephemeral, never stored.

conversation.typing tells the other participants `type: "typing"` with `expires_at`: a
person's indicator lasts PERSON_SECONDS unless renewed, an agent's status up to
AGENT_MAX_SECONDS (`ttl_seconds`, default AGENT_DEFAULT_SECONDS). `active: false` clears it at
once. Clients also clear an employee's indicator when a message (or a stream) from that
employee arrives in the conversation: no separate "stopped" event is sent for that.

Throttled per employee and conversation (per process): the same status again within
RENEW_AFTER_FRACTION of its lifetime is answered but not delivered again.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.translation import gettext as _

from mchat.errors import BadRequest, NotFound
from messaging import events, payloads, selectors
from messaging.models import Conversation
from org.models import Employee

PERSON_SECONDS = 6
AGENT_DEFAULT_SECONDS = 30
AGENT_MAX_SECONDS = 120
RENEW_AFTER_FRACTION = 0.5
STATUS_TEXT_MAX = 100
_REMEMBERED_MAX = 50_000


@dataclass(frozen=True)
class Typing:
    expires_at: datetime
    delivered: bool


_lock = threading.Lock()
_recent: dict[tuple[int, int], tuple[float, str, datetime]] = {}  # (employee pk, conv pk) -> sent


def conversation_typing(
    *,
    actor: Employee,
    peer_employee_id: str | None = None,
    group_id: str | None = None,
    status_text: str = "",
    active: bool = True,
    ttl_seconds: int | None = None,
) -> Typing:
    if bool(peer_employee_id) == bool(group_id):
        raise BadRequest(_("peer_employee_id 与 group_id 须且只能提供一个"))
    if len(status_text) > STATUS_TEXT_MAX:
        raise BadRequest(_("status_text 不能超过 %(max)d 个字符") % {"max": STATUS_TEXT_MAX})
    if ttl_seconds is not None and not actor.is_ai_agent:
        raise BadRequest(_("ttl_seconds 仅适用于 AI Agent"))
    seconds = (ttl_seconds or AGENT_DEFAULT_SECONDS) if actor.is_ai_agent else PERSON_SECONDS
    if not 1 <= seconds <= AGENT_MAX_SECONDS:
        raise BadRequest(_("ttl_seconds 必须是 1 到 %(max)d 之间的整数") % {"max": AGENT_MAX_SECONDS})
    if group_id:
        access = selectors.group_access(actor=actor, group_id=group_id)
        conversation = selectors.group_conversation(group=access.group)
        where = {"conversation_type": "group", "group_id": group_id}
    else:
        peer = selectors.peer_get(employee_id=peer_employee_id, active=True)
        if peer.pk == actor.pk:
            raise BadRequest(_("peer_employee_id 不能是自己"))
        conversation = selectors.private_conversation(a=actor, b=peer)
        if conversation is None:
            raise NotFound(_("会话不存在：%(id)s") % {"id": peer_employee_id})
        where = {"conversation_type": "private", "to_employee_id": peer.employee_id}
    now = timezone.now()
    expires_at = now + timedelta(seconds=seconds) if active else now
    key = (actor.pk, conversation.pk)
    clock = time.monotonic()
    with _lock:
        earlier = _recent.get(key)
        if (
            active
            and earlier is not None
            and earlier[1] == status_text
            and clock - earlier[0] < seconds * RENEW_AFTER_FRACTION
        ):
            return Typing(earlier[2], delivered=False)
        _recent[key] = (clock, status_text, expires_at)
        if len(_recent) > _REMEMBERED_MAX:
            _recent.clear()  # forgetting only lets one more indicator through
    payload = {
        "type": "typing",
        **where,
        "from_employee_id": actor.employee_id,
        "is_ai_agent": actor.is_ai_agent,
        "status_text": status_text,
        "active": active,
        "expires_at": payloads.isoformat_z(expires_at),
    }
    if conversation.kind == Conversation.Kind.GROUP:
        events.conversation_event(conversation, payload, qos=0)
    else:
        events.employees_event([peer_employee_id], payload, qos=0)
    return Typing(expires_at, delivered=True)
