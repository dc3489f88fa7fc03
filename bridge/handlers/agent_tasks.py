"""Agents as colleagues (issue 17): agent.task_update, agent.card.
Services: messaging.agent_tasks, org.agent_cards."""

from __future__ import annotations

from rest_framework import serializers

from bridge.handlers import Request, validate
from bridge.handlers.groups import id_field
from mchat.errors import EMPTY_MESSAGES
from mchat.wire import isoformat_z
from messaging import agent_tasks
from messaging.agent_waits import agent_acknowledged
from org import agent_cards

STATES = [*agent_tasks.AGENT_STATES, *agent_tasks.SENDER_STATES]


class TaskUpdateInput(serializers.Serializer):
    msg_id = serializers.CharField(max_length=40, error_messages=EMPTY_MESSAGES)
    state = serializers.ChoiceField(choices=[str(s) for s in STATES], error_messages=EMPTY_MESSAGES)
    status_text = serializers.CharField(
        max_length=agent_tasks.STATUS_TEXT_MAX, required=False, allow_blank=True, default=""
    )


class CardInput(serializers.Serializer):
    employee_id = id_field()


def task_update(request: Request) -> dict:
    fields = validate(TaskUpdateInput, request.payload)
    task, message = agent_tasks.task_update(actor=request.employee, **fields)
    if task.state in agent_tasks.AGENT_STATES:
        # The agent took the task up: its sender's pending msg.send_private is answered with
        # 0, exactly as by the agent's read ack (messaging.agent_waits).
        agent_acknowledged(
            agent=request.employee, conversation_id=message.conversation_id, up_to_seq=message.seq
        )
    return {
        "task_id": message.msg_id,
        "msg_id": message.msg_id,
        "state": task.state,
        "status_text": task.status_text,
        "updated_at": isoformat_z(task.updated_at),
    }


def card(request: Request) -> dict:
    fields = validate(CardInput, request.payload)
    return agent_cards.agent_card(employee_id=fields["employee_id"])
