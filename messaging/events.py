"""Deliveries of messages, receipts and group notifications; all published after commit.

Topics (spec 2.3): a private message goes to both participants' inboxes (the sender's other
devices place it by `to_employee_id`), a group message is ONE publish to the group topic that
the broker fans out to members, receipts and notifications go to inboxes. QoS 1 throughout.
"""

from __future__ import annotations

from collections.abc import Iterable

from mchat.outbox import publish_json_on_commit
from mchat.wire import group_topic, inbox_topic
from messaging import payloads
from messaging.models import Conversation, Message
from messaging.participants import Participant


def message_sent(
    message: Message, *, sender: Participant, recipient: Participant | None = None, group_id: str = ""
) -> None:
    """A new message: to the private pair's inboxes (`recipient`), or to the group's topic."""
    if recipient is None:
        payload = payloads.group_message_payload(message, group_id=group_id, sender_id=sender.employee_id)
        publish_json_on_commit(group_topic(group_id), payload, qos=1)
        return
    payload = payloads.private_message_payload(
        message, sender_id=sender.employee_id, recipient_id=recipient.employee_id
    )
    _to_pair(payload)


def message_recalled(message: Message, conversation: Conversation) -> None:
    _to_conversation(conversation, payload=payloads.recall_payload(message, conversation))


def read_receipt(*, to_employee_id: str, receipt: dict) -> None:
    """A private receipt, a coalesced group tally, or a reader's own position (other devices)."""
    publish_json_on_commit(inbox_topic(to_employee_id), receipt, qos=1)


def system_notification(*, employee_ids: Iterable[str], notification: dict) -> None:
    for employee_id in employee_ids:
        publish_json_on_commit(inbox_topic(employee_id), notification, qos=1)


# --- streams, task states, typing (messaging.streams, messaging.agent_tasks, messaging.typing) --


def conversation_event(conversation: Conversation, payload: dict, *, qos: int = 1) -> None:
    """To every participant: the group topic, or both inboxes of a private pair (the payload
    names `to_employee_id` and `from_employee_id`). Ephemeral events use QoS 0."""
    _to_conversation(conversation, payload, qos=qos)


def payload_event(payload: dict, *, qos: int = 1) -> None:
    """To every participant of the conversation the payload names itself (`conversation_type`
    with `group_id`, or `to_employee_id` and `from_employee_id`): no database needed."""
    if payload["conversation_type"] == "group":
        publish_json_on_commit(group_topic(payload["group_id"]), payload, qos=qos)
        return
    employee_ids = dict.fromkeys([payload["to_employee_id"], payload["from_employee_id"]])
    publish_json_on_commit([inbox_topic(employee_id) for employee_id in employee_ids], payload, qos=qos)


def employees_event(employee_ids: Iterable[str], payload: dict, *, qos: int = 1) -> None:
    """The same payload to each employee's inbox (every device), once each, in order."""
    publish_json_on_commit([inbox_topic(e) for e in dict.fromkeys(employee_ids)], payload, qos=qos)


def _to_conversation(conversation: Conversation, payload: dict, *, qos: int = 1) -> None:
    if conversation.is_group:
        publish_json_on_commit(group_topic(conversation.group.group_id), payload, qos=qos)
        return
    _to_pair(payload, qos=qos)


def _to_pair(payload: dict, *, qos: int = 1) -> None:
    # The recipient first; then the sender's own inbox (once, for a note to oneself).
    employee_ids = dict.fromkeys([payload["to_employee_id"], payload["from_employee_id"]])
    publish_json_on_commit([inbox_topic(employee_id) for employee_id in employee_ids], payload, qos=qos)
