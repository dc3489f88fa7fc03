"""Task states (issue 17, DESIGN §9): a private message to an AI agent is a task, id = msg_id.

A2A's states: submitted (no AgentTask row yet) -> working / input-required -> completed /
failed; the sender may cancel. The agent moves it with agent.task_update, the sender cancels
with the same action. Terminal states never change (409): a follow-up is a new task. Every
change goes to the inboxes of the sender (all devices) and of the agent as `task_status`.

Answering the sender's pending msg.send_private when the agent takes the task up is the
caller's part (the bridge's acknowledgement wait), as for a read ack.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from mchat.errors import BadRequest, Conflict, PermissionDenied
from messaging import events, payloads, selectors
from messaging.models import AgentTask, Conversation, Message
from org.models import Employee

State = AgentTask.State
AGENT_STATES = (State.WORKING, State.INPUT_REQUIRED, State.COMPLETED, State.FAILED)
SENDER_STATES = (State.CANCELED,)
TERMINAL = frozenset({State.COMPLETED, State.FAILED, State.CANCELED})
STATUS_TEXT_MAX = 200


def task_update(
    *, actor: Employee, msg_id: str, state: str, status_text: str = ""
) -> tuple[AgentTask, Message]:
    """Move task `msg_id` to `state`: the agent to working / input-required / completed /
    failed, the sender to canceled. 404 for a message the actor cannot see, 400 for one that
    is not a task, 403 for the wrong party, 409 once it is finished."""
    if state not in AGENT_STATES + SENDER_STATES:
        raise BadRequest(_("state 必须是 working、input-required、completed、failed 或 canceled"))
    if len(status_text) > STATUS_TEXT_MAX:
        raise BadRequest(_("status_text 不能超过 %(max)d 个字符") % {"max": STATUS_TEXT_MAX})
    message = selectors.message_for_participant(actor=actor, msg_id=msg_id)
    agent = task_agent(message, message.conversation)
    if agent is None:
        raise BadRequest(_("该消息不是发给 AI Agent 的任务：%(id)s") % {"id": msg_id})
    if state in SENDER_STATES and actor.pk != message.sender_id:
        raise PermissionDenied(_("只有任务的发起人可以取消任务"))
    if state in AGENT_STATES and actor.pk != agent.pk:
        raise PermissionDenied(_("只有承接任务的 Agent 可以更新任务状态"))
    now = timezone.now()
    with transaction.atomic():
        task = AgentTask.objects.select_for_update().filter(message=message).first()
        if task is not None and task.state in TERMINAL:
            raise Conflict(
                _("任务已结束（%(state)s），不能再更改；后续请求请发送新消息") % {"state": task.state}
            )
        if task is None:
            task = AgentTask(message=message)
        task.state, task.status_text, task.updated_at = state, status_text, now
        task.save()
        payload = {
            "type": "task_status",
            "task_id": message.msg_id,
            "msg_id": message.msg_id,
            "seq": message.seq,
            "conversation_type": "private",
            "from_employee_id": message.sender.employee_id,
            "to_employee_id": agent.employee_id,
            "agent_id": agent.employee_id,
            "state": state,
            "status_text": status_text,
            "updated_by": actor.employee_id,
            "updated_at": payloads.isoformat_z(now),
        }
        events.employees_event([message.sender.employee_id, agent.employee_id], payload)
    return task, message


def task_agent(message: Message, conversation: Conversation) -> Employee | None:
    """The AI agent a message is a task for, or None: private, to an agent other than its sender."""
    if conversation.is_group:
        return None
    recipient = conversation.peer_of(message.sender)
    if not recipient.is_ai_agent or recipient.pk == message.sender_id:
        return None
    return recipient


def task_fields_of(messages: Iterable[tuple[Message, Conversation]]) -> dict[int, dict]:
    """For reads (msg.history, conversation.list): {message pk: {task_state, task_status_text,
    task_updated_at}} of each message that is a task; one query."""
    tasks = [m for m, c in messages if m is not None and task_agent(m, c) is not None]
    if not tasks:
        return {}
    rows = {t.pk: t for t in AgentTask.objects.filter(message__in=[m.pk for m in tasks])}
    fields = {}
    for message in tasks:
        row = rows.get(message.pk)
        fields[message.pk] = {
            "task_state": row.state if row else State.SUBMITTED.value,
            "task_status_text": row.status_text if row else "",
            "task_updated_at": payloads.isoformat_z(row.updated_at if row else message.sent_at),
        }
    return fields
