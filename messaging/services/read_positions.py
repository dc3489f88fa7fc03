"""Read positions and receipts: msg.read_ack (spec 3.13, DESIGN §5)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from mchat.errors import NotFound
from mchat.wire import isoformat_z
from messaging import events
from messaging.agent_waits import agent_acknowledged
from messaging.models import Conversation, Message, ReadPosition
from messaging.services.messages import message_visible
from messaging.services.receipts import group_receipts_note
from org.models import Employee


@dataclass(frozen=True)
class ReadAck:
    message: Message
    conversation: Conversation
    last_read_seq: int
    read_at: datetime
    advanced: bool


def read_ack(
    *,
    actor: Employee,
    msg_id: str,
    conversation_type: str | None = None,
    peer_employee_id: str | None = None,
    group_id: str | None = None,
) -> ReadAck:
    """The actor has read its conversation up to `msg_id` (spec 3.13).

    Moves the actor's read position forward (never back). Private: the peer gets a receipt
    for each ack that moved it. Group: senders of the newly read messages get coalesced
    counts (services.receipts). The actor's other devices learn the new position.
    """
    read_at = timezone.now()
    with transaction.atomic():
        message = message_visible(actor, msg_id)
        conversation = message.conversation
        _check_reference(message, conversation, actor, conversation_type, peer_employee_id, group_id)
        previous = read_position_move(conversation=conversation, employee=actor, seq=message.seq, at=read_at)
        advanced = previous < message.seq
        if advanced:
            _announce_read(actor, message, conversation, previous=previous, read_at=read_at)
        # An AI agent's acknowledgement answers the sends waiting for it (messaging.agent_waits).
        agent_acknowledged(agent=actor, conversation_id=conversation.pk, up_to_seq=max(previous, message.seq))
    return ReadAck(message, conversation, max(previous, message.seq), read_at, advanced)


def read_position_move(
    *, conversation: Conversation, employee: Employee, seq: int, at: datetime | None = None
) -> int:
    """Move the employee's read position up to `seq` if it is behind; return where it was.

    Locks the position row for the rest of the transaction, so concurrent acks of one reader
    move it in order. Callers that wait for an acknowledgement (AI agents) can compare the
    returned value with a message's seq.
    """
    at = at or timezone.now()
    position = (
        ReadPosition.objects.select_for_update(no_key=True)
        .filter(conversation=conversation, employee=employee)
        .first()
    )
    if position is None:
        position, _created = ReadPosition.objects.get_or_create(conversation=conversation, employee=employee)
    previous = position.last_read_seq
    if previous < seq:
        position.last_read_seq = seq
        position.updated_at = at
        position.save(update_fields=["last_read_seq", "updated_at"])
    return previous


def _check_reference(message, conversation, actor, conversation_type, peer_employee_id, group_id) -> None:
    """The optional conversation fields of a read_ack must name the message's conversation."""
    if conversation_type is not None and conversation_type != conversation.kind:
        raise NotFound(_("消息不存在：%(id)s") % {"id": message.msg_id})
    if conversation.is_group:
        if group_id is not None and group_id != conversation.group.group_id:
            raise NotFound(_("消息不存在：%(id)s") % {"id": message.msg_id})
    elif peer_employee_id is not None and peer_employee_id != conversation.peer_of(actor).employee_id:
        raise NotFound(_("消息不存在：%(id)s") % {"id": message.msg_id})


def _announce_read(actor, message, conversation, *, previous: int, read_at: datetime) -> None:
    when = isoformat_z(read_at)
    if conversation.is_group:
        where = {"conversation_type": "group", "group_id": conversation.group.group_id}
        group_receipts_note(
            conversation=conversation, reader=actor, after_seq=previous, up_to_seq=message.seq
        )
    else:
        peer = conversation.peer_of(actor)
        where = {"conversation_type": "private", "peer_employee_id": peer.employee_id}
        if peer.pk != actor.pk:
            events.read_receipt(
                to_employee_id=peer.employee_id,
                receipt={
                    "type": "read_receipt",
                    "conversation_type": "private",
                    "reader_id": actor.employee_id,
                    "msg_id": message.msg_id,
                    "seq": message.seq,
                    "read_at": when,
                },
            )
    events.read_receipt(
        to_employee_id=actor.employee_id,
        receipt={"type": "read_position", **where, "last_read_seq": message.seq, "read_at": when},
    )
