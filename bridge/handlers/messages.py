"""Message actions: spec 3.11-3.13, plus msg.recall, msg.history, conversation.list."""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.translation import gettext as _
from rest_framework import serializers

from bridge.deferred import Deferred
from bridge.handlers import Request, validate, validate_many
from bridge.handlers.groups import id_field
from bridge.models import unanswered_condition
from mchat.errors import EMPTY_MESSAGES, BadRequest, MChatError
from mchat.wire import isoformat_z
from messaging import payloads, selectors, services
from messaging.agent_tasks import task_fields_of
from messaging.models import Conversation, Message
from messaging.services.store import StoredMessage

HISTORY_MAX = 100
CONVERSATIONS_MAX = 100
CONVERSATION_TYPES = [Conversation.Kind.PRIVATE.value, Conversation.Kind.GROUP.value]


class ContentField(serializers.JSONField):
    """Any JSON here; messaging.content decides what is valid (and names content.* fields)."""

    def __init__(self, **options):
        super().__init__(error_messages=EMPTY_MESSAGES, **options)


class SendPrivateInput(serializers.Serializer):
    to_employee_id = id_field()
    content = ContentField()


class SendGroupInput(serializers.Serializer):
    group_id = id_field()
    content = ContentField()


class MessageRef(serializers.Serializer):
    msg_id = serializers.CharField(max_length=40, error_messages=EMPTY_MESSAGES)


class ReadAckInput(MessageRef):
    conversation_type = serializers.ChoiceField(choices=CONVERSATION_TYPES, required=False)
    peer_employee_id = id_field(required=False)
    group_id = id_field(required=False)


class ConversationInput(serializers.Serializer):
    conversation_type = serializers.ChoiceField(choices=CONVERSATION_TYPES, error_messages=EMPTY_MESSAGES)
    peer_employee_id = id_field(required=False)
    group_id = id_field(required=False)

    def validate(self, attrs):
        needed = "group_id" if attrs["conversation_type"] == "group" else "peer_employee_id"
        if not attrs.get(needed):
            raise serializers.ValidationError({needed: _("不能为空")})
        return attrs


class HistoryInput(ConversationInput):
    before_seq = serializers.IntegerField(min_value=1, required=False)
    after_seq = serializers.IntegerField(min_value=0, required=False)
    limit = serializers.IntegerField(min_value=1, max_value=HISTORY_MAX, default=50)


class ConversationListInput(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=CONVERSATIONS_MAX, default=50)
    cursor = serializers.CharField(max_length=64, required=False)


def send_private(request: Request) -> dict | Deferred:
    """One request on its own (the dispatcher's _execute_one)."""
    (answer,) = send_private_many([request])
    if isinstance(answer, MChatError):
        raise answer
    return answer


def send_private_many(requests: Sequence[Request]) -> list[dict | Deferred | MChatError]:
    """send_private for requests that arrived together (the dispatcher's batch path): validate,
    one service call, the answers each would get alone. The dispatcher opens no transaction
    around it (SEND_PRIVATE_BATCH.commits_itself): the service makes its writes atomic."""
    fields = validate_many(SendPrivateInput, requests)
    sends, recipients = [], {}
    for request, f in zip(requests, fields, strict=True):
        if not isinstance(f, MChatError):
            sends.append(
                services.PrivateSend(
                    request.employee, f["to_employee_id"], f["content"], request.client_id, request.seq_id
                )
            )
            recipients.update(request.employees)  # recipients the dispatcher found already
    outcomes = iter(services.message_send_private(sends=sends, recipients=recipients))
    return [f if isinstance(f, MChatError) else _answer(next(outcomes)) for f in fields]


def send_private_known(requests: Sequence[Request]) -> list[dict] | None:
    """send_private for a batch whose senders have sent to these recipients before (the
    dispatcher's optimistic path: nobody looked up yet, Request.employee is None). The
    service stores them all with one statement if everything this process remembers still
    holds; None otherwise, and the dispatcher serves the batch the usual way."""
    fields = validate_many(SendPrivateInput, requests)
    if any(isinstance(f, MChatError) for f in fields):
        return None
    sent = services.message_send_private(
        sends=[
            services.PrivateSend(r.employee_id, f["to_employee_id"], f["content"], r.client_id, r.seq_id)
            for r, f in zip(requests, fields, strict=True)
        ],
        # A refusal is recorded, not stored: its repeat must get it again (bridge.dispatch).
        unanswered=unanswered_condition("posts.client_id", "posts.seq_id"),
    )
    return None if sent is None else [s.data for s in sent]


def _answer(outcome: services.PrivateSent | MChatError) -> dict | Deferred | MChatError:
    if isinstance(outcome, MChatError):
        return outcome
    # To an AI agent the answer waits for its msg.read_ack (messaging.agent_waits).
    return Deferred() if outcome.waits else outcome.data


class SendPrivateBatch:
    """msg.send_private's strategy for requests that arrive together (bridge.routes.BatchExecutor):
    the one-statement path for pairs seen before, else the batch handler, which commits itself;
    the dispatcher looks up each payload's recipient with the senders."""

    payload_employees = ("to_employee_id",)
    commits_itself = True
    serve_known = staticmethod(send_private_known)
    serve_many = staticmethod(send_private_many)


SEND_PRIVATE_BATCH = SendPrivateBatch()


def send_group(request: Request) -> dict:
    fields = validate(SendGroupInput, request.payload)
    message = services.message_send_group(
        actor=request.employee,
        group_id=fields["group_id"],
        content=fields["content"],
        client_id=request.client_id,
        seq_id=request.seq_id,
    )
    return _group_sent(message, fields["group_id"])


def send_group_known(requests: Sequence[Request]) -> list[dict] | None:
    """send_group for a lone request whose sender has sent to this group before (the
    dispatcher's optimistic path: nobody looked up yet, Request.employee is None). The service
    stores it with one statement if everything this process remembers still holds; None
    otherwise (and for several requests at once, or a payload send_group would refuse), and the
    dispatcher serves it the usual way."""
    if len(requests) != 1:
        return None
    (request,) = requests
    try:
        fields = validate(SendGroupInput, request.payload)
    except BadRequest:
        return None
    message = services.message_send_group(
        actor=request.employee_id,
        group_id=fields["group_id"],
        content=fields["content"],
        client_id=request.client_id,
        seq_id=request.seq_id,
        # A refusal is recorded, not stored: its repeat must get it again (bridge.dispatch).
        unanswered=unanswered_condition("posts.client_id", "posts.seq_id"),
    )
    return None if message is None else [_group_sent(message, fields["group_id"])]


def _group_sent(message: Message | StoredMessage, group_id: str) -> dict:
    """Spec 3.12's answer data."""
    return {
        "msg_id": message.msg_id,
        "group_id": group_id,
        "sent_at": isoformat_z(message.sent_at),
        "seq": message.seq,
    }


class SendGroupBatch:
    """msg.send_group's strategy for a request that arrives alone (bridge.routes.BatchExecutor):
    the one-statement path when its sender has sent to the group before; requests of it that
    arrive together are served one by one, each in its own transaction (no serve_many)."""

    payload_employees = ()
    commits_itself = False
    serve_known = staticmethod(send_group_known)
    serve_many = None


SEND_GROUP_BATCH = SendGroupBatch()


def read_ack(request: Request) -> dict:
    fields = validate(ReadAckInput, request.payload)
    ack = services.read_ack(actor=request.employee, **fields)
    return {
        "msg_id": ack.message.msg_id,
        "conversation_type": ack.conversation.kind,
        "last_read_seq": ack.last_read_seq,
        "read_at": isoformat_z(ack.read_at),
    }


def recall(request: Request) -> dict:
    fields = validate(MessageRef, request.payload)
    message = services.message_recall(actor=request.employee, msg_id=fields["msg_id"])
    return {
        "msg_id": message.msg_id,
        "seq": message.seq,
        "recalled_at": isoformat_z(message.recalled_at),
    }


def history(request: Request) -> dict:
    fields = validate(HistoryInput, request.payload)
    before, after = fields.get("before_seq"), fields.get("after_seq")
    if before is not None and after is not None and after >= before:
        raise BadRequest(_("after_seq 必须小于 before_seq"))
    ref = selectors.ConversationRef(
        fields["conversation_type"], fields.get("peer_employee_id"), fields.get("group_id")
    )
    conversation = selectors.conversation_for_reading(actor=request.employee, ref=ref)
    data = _conversation_ref(ref)
    if conversation is None:
        return {**data, "messages": [], "has_more": False, "last_seq": 0, "last_read_seq": 0}
    page, more = selectors.message_history(
        conversation=conversation, before_seq=before, after_seq=after, limit=fields["limit"]
    )
    tasks = task_fields_of((m, conversation) for m in page)  # messages to agents: task state
    return {
        **data,
        "messages": [
            {**payloads.stored_message_payload(m, conversation), **tasks.get(m.pk, {})} for m in page
        ],
        "has_more": more,
        "last_seq": conversation.last_seq,
        "last_read_seq": selectors.read_position(conversation=conversation, employee=request.employee),
    }


def conversation_list(request: Request) -> dict:
    fields = validate(ConversationListInput, request.payload)
    summaries, next_cursor = selectors.conversations_of(
        employee=request.employee, limit=fields["limit"], cursor=fields.get("cursor")
    )
    tasks = task_fields_of((s.last_message, s.conversation) for s in summaries)
    return {
        "conversations": [_summary(s, request, tasks) for s in summaries],
        "next_cursor": next_cursor,
    }


def _conversation_ref(ref: selectors.ConversationRef) -> dict:
    if ref.conversation_type == "group":
        return {"conversation_type": "group", "group_id": ref.group_id}
    return {"conversation_type": "private", "peer_employee_id": ref.peer_employee_id}


def _summary(summary: selectors.ConversationSummary, request: Request, tasks: dict) -> dict:
    conversation = summary.conversation
    if conversation.is_group:
        where = {
            "conversation_type": "group",
            "group_id": conversation.group.group_id,
            "name": conversation.group.name,
            "dismissed": conversation.group.is_dismissed,
        }
    else:
        peer = conversation.peer_of(request.employee)
        where = {"conversation_type": "private", "peer_employee_id": peer.employee_id, "name": peer.name}
    last = summary.last_message
    return {
        **where,
        "last_seq": conversation.last_seq,
        "last_read_seq": summary.last_read_seq,
        "unread_count": summary.unread_count,
        "last_message": {**payloads.stored_message_payload(last, conversation), **tasks.get(last.pk, {})}
        if last
        else None,
        "last_activity_at": isoformat_z(conversation.last_activity_at),
    }
