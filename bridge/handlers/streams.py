"""Streamed replies and typing indicators (issue 17): msg.stream_start / stream_append /
stream_end / stream_cancel, conversation.typing. Services: messaging.streams, messaging.typing."""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from bridge.handlers import Request, validate
from bridge.handlers.groups import id_field
from mchat.errors import EMPTY_MESSAGES, MChatError
from mchat.wire import isoformat_z
from messaging import streams, typing

MSG_ID_MAX = 40


class TextField(serializers.CharField):
    """A JSON string only (DRF's CharField would take 5 as "5"); whitespace is text too."""

    def __init__(self, **options):
        super().__init__(
            trim_whitespace=False, error_messages={**EMPTY_MESSAGES, "invalid": _("必须是字符串")}, **options
        )

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


def _text(**options) -> serializers.CharField:
    return TextField(**options)


class StreamStartInput(serializers.Serializer):
    to_employee_id = id_field(required=False)
    group_id = id_field(required=False)
    reply_to = serializers.CharField(max_length=MSG_ID_MAX, required=False)


class StreamRef(serializers.Serializer):
    msg_id = serializers.CharField(max_length=MSG_ID_MAX, error_messages=EMPTY_MESSAGES)


class StreamAppendInput(StreamRef):
    delta = _text(max_length=streams.STREAM_MAX_CHARS)


class StreamEndInput(StreamRef):
    content = _text(max_length=streams.STREAM_MAX_CHARS, required=False)


class TypingInput(serializers.Serializer):
    conversation_type = serializers.ChoiceField(choices=["private", "group"], required=False)
    peer_employee_id = id_field(required=False)
    group_id = id_field(required=False)
    status_text = serializers.CharField(
        max_length=typing.STATUS_TEXT_MAX, required=False, allow_blank=True, default=""
    )
    active = serializers.BooleanField(required=False, default=True)
    ttl_seconds = serializers.IntegerField(min_value=1, max_value=typing.AGENT_MAX_SECONDS, required=False)


def stream_start(request: Request) -> dict:
    fields = validate(StreamStartInput, request.payload)
    message = streams.stream_start(
        actor=request.employee,
        to_employee_id=fields.get("to_employee_id"),
        group_id=fields.get("group_id"),
        reply_to=fields.get("reply_to"),
        client_id=request.client_id,
        seq_id=request.seq_id,
    )
    return {"msg_id": message.msg_id, "seq": message.seq, "sent_at": isoformat_z(message.sent_at)}


def stream_append(request: Request) -> dict:
    fields = validate(StreamAppendInput, request.payload)
    return streams.stream_append(
        actor=request.employee,
        msg_id=fields["msg_id"],
        delta=fields["delta"],
        client_id=request.client_id,
        seq_id=request.seq_id,
    )


def stream_append_many(requests: Sequence[Request]) -> list[dict | MChatError]:
    """stream_append for requests that arrived together. It commits itself
    (STREAM_APPEND_BATCH): an append writes nothing to the database, and a repeat of one is
    recognised by the stream (the (client_id, seq_id) of its recent appends), so appends cost
    no record of their answer; refusals are recorded as usual."""
    results: list[dict | MChatError] = []
    for request in requests:
        try:
            results.append(stream_append(request))
        except MChatError as exc:
            results.append(exc)
    return results


class StreamAppendBatch:
    """msg.stream_append's strategy for appends that arrive together (bridge.routes.BatchExecutor):
    served one by one from the stream buffer, with no transaction and no answer record."""

    payload_employees = ()
    commits_itself = True
    serve_known = None
    serve_many = staticmethod(stream_append_many)


STREAM_APPEND_BATCH = StreamAppendBatch()


def stream_end(request: Request) -> dict:
    fields = validate(StreamEndInput, request.payload)
    message = streams.stream_end(
        actor=request.employee, msg_id=fields["msg_id"], content=fields.get("content")
    )
    return {
        "msg_id": message.msg_id,
        "seq": message.seq,
        "length": len(message.content),
        "ended_at": isoformat_z(message.stream_touched_at),
    }


def stream_cancel(request: Request) -> dict:
    fields = validate(StreamRef, request.payload)
    message = streams.stream_cancel(actor=request.employee, msg_id=fields["msg_id"])
    return {
        "msg_id": message.msg_id,
        "seq": message.seq,
        "length": len(message.content),
        "canceled_at": isoformat_z(message.stream_touched_at),
    }


def conversation_typing(request: Request) -> dict:
    fields = validate(TypingInput, request.payload)
    shown = typing.conversation_typing(
        actor=request.employee,
        peer_employee_id=fields.get("peer_employee_id"),
        group_id=fields.get("group_id"),
        status_text=fields["status_text"],
        active=fields["active"],
        ttl_seconds=fields.get("ttl_seconds"),
    )
    return {"expires_at": isoformat_z(shown.expires_at), "delivered": shown.delivered}
