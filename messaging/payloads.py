"""Wire shapes of messages and group events, shared by deliveries (events) and reads (handlers).

Spec fields come first and keep the spec's names and formats; our additions are extra keys.
"""

from __future__ import annotations

from datetime import datetime

from audit.context import SYSTEM_OPERATOR_ID
from mchat.wire import isoformat_z
from messaging.models import Conversation, Group, Message


def message_payload(message: Message, conversation: Conversation) -> dict:
    """Spec 3.11 (private) or 3.12 (group) delivery payload, plus `seq` and our extras.

    `conversation` must have its group or both employees loaded; `message.sender` too.
    """
    if conversation.is_group:
        return group_message_payload(
            message, group_id=conversation.group.group_id, sender_id=message.sender.employee_id
        )
    return private_message_payload(
        message,
        sender_id=message.sender.employee_id,
        recipient_id=_private_recipient(message, conversation),
    )


def private_message_payload(message: Message, *, sender_id: str, recipient_id: str) -> dict:
    """Spec 3.11's delivery, plus `seq`: the employees by employee_id."""
    return {
        "msg_id": message.msg_id,
        "type": "private",
        "from_employee_id": sender_id,
        "content": message.content,
        "sent_at": isoformat_z(message.sent_at),
        "to_employee_id": recipient_id,
        "seq": message.seq,
    }


def group_message_payload(message: Message, *, group_id: str, sender_id: str) -> dict:
    """Spec 3.12's delivery, plus `seq`."""
    return {
        "msg_id": message.msg_id,
        "group_id": group_id,
        "from_employee_id": sender_id,
        "content": message.content,
        "sent_at": isoformat_z(message.sent_at),
        "type": "group",
        "seq": message.seq,
    }


def private_sent_data(message: Message, *, to_employee_id: str) -> dict:
    """Spec 3.11's answer `data` to msg.send_private (now, or when an AI agent acknowledges)."""
    return {
        "msg_id": message.msg_id,
        "to_employee_id": to_employee_id,
        "sent_at": isoformat_z(message.sent_at),
        "seq": message.seq,
    }


def stored_message_payload(message: Message, conversation: Conversation) -> dict:
    """A message as history serves it: the delivery payload, recalled content withheld."""
    payload = message_payload(message, conversation)
    payload["recalled"] = message.is_recalled
    if message.stream_state:  # a streamed reply: `stream`, `streaming` + text so far, `canceled`
        from messaging.streams import stream_fields

        payload.update(stream_fields(message))
    if message.reply_to:
        payload["reply_to"] = message.reply_to
    if message.is_recalled:
        payload["content"] = None
        payload["recalled_at"] = isoformat_z(message.recalled_at)
    return payload


def recall_payload(message: Message, conversation: Conversation) -> dict:
    payload = {
        "type": "recall",
        "msg_id": message.msg_id,
        "seq": message.seq,
        "recalled_by": message.recalled_by.employee_id if message.recalled_by else SYSTEM_OPERATOR_ID,
        "recalled_at": isoformat_z(message.recalled_at),
    }
    if conversation.is_group:
        payload["group_id"] = conversation.group.group_id
    else:
        payload["conversation_type"] = "private"
        payload["from_employee_id"] = message.sender.employee_id
        payload["to_employee_id"] = _private_recipient(message, conversation)
    return payload


def _private_recipient(message: Message, conversation: Conversation) -> str:
    if message.sender_id == conversation.employee_low_id:
        return conversation.employee_high.employee_id
    return conversation.employee_low.employee_id


def system_notification(
    *, notify_id: str, type: str, title: str, group: Group, created_at: datetime, **body
) -> dict:
    """Spec 3.19: {notify_id, type, title, body {group_id, group_name, ...}, created_at}."""
    return {
        "notify_id": notify_id,
        "type": type,
        "title": title,
        "body": {"group_id": group.group_id, "group_name": group.name, **body},
        "created_at": isoformat_z(created_at),
    }
