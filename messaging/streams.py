"""Streamed replies (issue 17, DESIGN §9): one message whose text arrives in pieces.

- msg.stream_start reserves the message and its `seq` now (the conversation's numbers stay
  gap-free): a row with empty content and stream_state "open"; everyone gets `stream_start`.
- msg.stream_append adds text to a bounded in-memory buffer of this process, with no
  database write: participants get `stream_delta` {offset, delta} at most STREAM_DELTA_INTERVAL
  apart per stream (the first append at once, the rest coalesced by the periodic
  `streams_tick`). The text so far is written into the reserved row every
  STREAM_PERSIST_SECONDS, so a restart loses at most that much; the stream then continues
  from the stored text.
- msg.stream_end stores the complete text once and delivers it as a normal message with
  `stream: true`; msg.stream_cancel (a recipient of a private stream, a group's owner or
  admin, or the streamer) keeps the text so far with `canceled: true` and tells everyone
  `stream_cancel`.
- Limits: STREAM_MAX_CHARS per stream, one open stream per sender per conversation, a stream
  not appended for STREAM_IDLE_SECONDS ends itself (`streams_tick` and `streams_expire`).

The buffer is per process: with several bridge processes sharing the request stream, appends
of one stream must reach the process that holds it (a process that does not, loads the stored
text, which may lack the last few seconds). A Redis buffer for that case is not built yet.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from mchat.errors import BadRequest, Conflict, NotFound, PermissionDenied, RateLimited
from messaging import events, ids, payloads, selectors
from messaging.models import Conversation, GroupMember, Message
from org.models import Employee

STREAM_MAX_CHARS = 12_000
STREAM_IDLE_SECONDS = 120
STREAM_PERSIST_SECONDS = 2.0
STREAM_DELTA_INTERVAL = 0.1  # at most ~10 deltas a second per stream
STREAMS_IN_MEMORY_MAX = 10_000  # open streams one process holds; more -> 429
REPEATS_REMEMBERED = 64  # (client_id, seq_id) of recent appends per stream: a redelivery appends nothing

OPEN, ENDED, CANCELED = "open", "ended", "canceled"


@dataclass
class _Stream:
    """An open stream as this process holds it."""

    message: Message  # with sender and conversation (group or both employees) loaded
    text: str
    published: int  # characters delivered to participants so far
    persisted: int  # characters stored in the row (the row holds text[:persisted])
    dirty: bool = False  # text changed since it was stored
    last_append: float = field(default_factory=lambda: time.monotonic())
    last_publish: float = 0.0
    stored_at: float = field(default_factory=lambda: time.monotonic())  # when the row last got the text
    touched_at: datetime = field(default_factory=timezone.now)
    repeats: OrderedDict = field(default_factory=OrderedDict)  # (client_id, seq_id) -> answer


_lock = threading.RLock()
_streams: dict[str, _Stream] = {}  # by msg_id


# --- services --------------------------------------------------------------------------------


def stream_start(
    *,
    actor: Employee,
    to_employee_id: str | None = None,
    group_id: str | None = None,
    reply_to: str | None = None,
    client_id: str = "",
    seq_id: str = "",
) -> Message:
    """Reserve a streamed message (and its seq) in a private or group conversation."""
    if bool(to_employee_id) == bool(group_id):
        raise BadRequest(_("to_employee_id 与 group_id 须且只能提供一个"))
    if group_id:
        access = selectors.group_access(actor=actor, group_id=group_id)
        conversation = selectors.group_conversation(group=access.group)
    else:
        from messaging.services import private_conversation_get_or_create

        recipient = selectors.peer_get(employee_id=to_employee_id, active=True)
        conversation = private_conversation_get_or_create(a=actor, b=recipient)
    if reply_to:
        replied = Message.objects.filter(msg_id=reply_to, conversation=conversation).exists()
        if not replied:
            raise NotFound(_("消息不存在：%(id)s") % {"id": reply_to})
    with _lock:
        if len(_streams) >= STREAMS_IN_MEMORY_MAX:
            raise RateLimited(retry_after_ms=1000)
    if seq_id:
        earlier = Message.objects.filter(client_id=client_id, seq_id=seq_id).first()
        if earlier is not None:  # the same request again (its record purged): the same stream
            return _loaded(earlier.msg_id)
    try:
        with transaction.atomic():
            message = _reserve(conversation, actor, reply_to or "", client_id, seq_id)
    except IntegrityError:
        if not seq_id:
            raise
        return _loaded(Message.objects.get(client_id=client_id, seq_id=seq_id).msg_id)
    stream = _Stream(message, "", 0, 0)
    with _lock:
        _streams[message.msg_id] = stream
    events.conversation_event(message.conversation, _start_payload(message))
    return message


def stream_append(*, actor: Employee, msg_id: str, delta: str, client_id: str = "", seq_id: str = "") -> dict:
    """Add `delta` to the actor's open stream; no database write. Returns {msg_id, seq,
    offset, length}: where the delta starts and the text's length after it."""
    if not isinstance(delta, str) or not delta:
        raise BadRequest(_("delta 不能为空"))
    if "\x00" in delta:
        raise BadRequest(_("delta 不能包含 NUL 字符"))
    try:
        delta.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(_("delta 包含无效的 Unicode 字符")) from None
    stream = _own_open_stream(actor, msg_id)
    key = (client_id, seq_id)
    with _lock:
        if seq_id and key in stream.repeats:
            return stream.repeats[key]
        if len(stream.text) + len(delta) > STREAM_MAX_CHARS:
            raise BadRequest(_("流式消息超过 %(max)d 字符上限，请结束该流式消息") % {"max": STREAM_MAX_CHARS})
        offset = len(stream.text)
        stream.text += delta
        stream.dirty = True
        stream.last_append = time.monotonic()
        stream.touched_at = timezone.now()
        answer = {"msg_id": msg_id, "seq": stream.message.seq, "offset": offset, "length": len(stream.text)}
        if seq_id:
            stream.repeats[key] = answer
            while len(stream.repeats) > REPEATS_REMEMBERED:
                stream.repeats.popitem(last=False)
        if stream.last_append - stream.last_publish >= STREAM_DELTA_INTERVAL:
            _publish_delta(stream)
    return answer


def stream_end(*, actor: Employee, msg_id: str, content: str | None = None) -> Message:
    """Store the stream's text (or the final `content`) once and deliver it as a message."""
    if content is not None:
        if not isinstance(content, str) or not content:
            raise BadRequest(_("content 必须是非空字符串"))
        if len(content) > STREAM_MAX_CHARS:
            raise BadRequest(_("content 超过 %(max)d 字符上限") % {"max": STREAM_MAX_CHARS})
        if "\x00" in content:
            raise BadRequest(_("content 不能包含 NUL 字符"))
    stream = _own_open_stream(actor, msg_id)
    with _lock:
        text = content if content is not None else stream.text
    return _finish(stream, state=ENDED, text=text)


def stream_cancel(*, actor: Employee, msg_id: str) -> Message:
    """Stop a stream: kept with the text so far and `canceled: true`; the streamer is told."""
    message = selectors.message_for_participant(actor=actor, msg_id=msg_id)
    if not message.stream_state:
        raise BadRequest(_("该消息不是流式消息：%(id)s") % {"id": msg_id})
    if message.stream_state != OPEN:
        raise Conflict(_("流式消息已结束，无法取消：%(id)s") % {"id": msg_id})
    conversation = message.conversation
    if message.sender_id != actor.pk and conversation.is_group:
        role = (
            GroupMember.objects.filter(group_id=conversation.group_id, employee=actor)
            .values_list("role", flat=True)
            .first()
        )
        if role not in (GroupMember.Role.OWNER, GroupMember.Role.ADMIN):
            raise PermissionDenied(_("只有流式消息的接收者、群主或管理员可以取消"))
    stream = _loaded(msg_id)
    with _lock:
        text = stream.text
    return _finish(stream, state=CANCELED, text=text, canceled_by=actor)


# --- what reads show ---------------------------------------------------------------------------


def stream_fields(message: Message) -> dict:
    """Extra keys of a streamed message in history and conversation lists: `stream`,
    `streaming` (and the text so far as `content`) while open, `canceled`."""
    if not message.stream_state:
        return {}
    fields: dict = {"stream": True, "streaming": message.stream_state == OPEN}
    if message.stream_state == OPEN:
        with _lock:
            held = _streams.get(message.msg_id)
            fields["content"] = held.text if held is not None else message.content
    if message.stream_state == CANCELED:
        fields["canceled"] = True
    return fields


# --- periodic jobs (settings.MCHAT_BRIDGE_PERIODIC) ------------------------------------------


def streams_tick() -> None:
    """Deliver coalesced deltas that are due, store texts every STREAM_PERSIST_SECONDS, and
    end streams idle for STREAM_IDLE_SECONDS."""
    now = time.monotonic()
    idle, persist = [], []
    with _lock:
        for stream in list(_streams.values()):
            if stream.published < len(stream.text) and now - stream.last_publish >= STREAM_DELTA_INTERVAL:
                _publish_delta(stream)
            if now - stream.last_append >= STREAM_IDLE_SECONDS:
                idle.append(stream)
            elif stream.dirty and now - stream.stored_at >= STREAM_PERSIST_SECONDS:
                persist.append(stream)
    _persist(persist, now)
    for stream in idle:
        try:
            _finish(stream, state=ENDED, text=stream.text)
        except Conflict:
            pass  # ended or canceled meanwhile (another process): nothing left to do


def _persist(streams: list[_Stream], now: float) -> None:
    for stream in streams:
        with _lock:
            text, touched, stream.dirty, stream.stored_at = stream.text, stream.touched_at, False, now
        stored = Message.objects.filter(pk=stream.message.pk, stream_state=OPEN).update(
            content=text, stream_touched_at=touched
        )
        with _lock:
            if stored:
                stream.persisted = len(text)
            else:  # ended or canceled elsewhere (another process)
                _streams.pop(stream.message.msg_id, None)


def streams_expire() -> int:
    """End streams that no process has touched for STREAM_IDLE_SECONDS (their process
    restarted or stopped); returns how many."""
    cutoff = timezone.now() - timedelta(seconds=STREAM_IDLE_SECONDS + STREAM_PERSIST_SECONDS)
    with _lock:
        held = set(_streams)
    stale = [
        msg_id
        for msg_id in Message.objects.filter(stream_state=OPEN, stream_touched_at__lt=cutoff).values_list(
            "msg_id", flat=True
        )[:200]
        if msg_id not in held
    ]
    for msg_id in stale:
        try:
            stream = _loaded(msg_id)
        except (NotFound, Conflict):
            continue
        _finish(stream, state=ENDED, text=stream.text)
    return len(stale)


def streams_forget() -> None:
    """Drop what this process holds (tests: a bridge restart)."""
    with _lock:
        _streams.clear()


# --- internals -------------------------------------------------------------------------------


def _reserve(
    conversation: Conversation, actor: Employee, reply_to: str, client_id: str, seq_id: str
) -> Message:
    """Take the conversation's next seq for an open stream (under its row lock)."""
    from messaging.services import read_position_move

    # FOR NO KEY UPDATE, as the store locks it (docs/architecture.md, "Row locks").
    locked = Conversation.objects.select_for_update(no_key=True).get(pk=conversation.pk)
    if Message.objects.filter(conversation=locked, sender=actor, stream_state=OPEN).exists():
        raise Conflict(_("该会话中已有一条进行中的流式消息，请先结束它"))
    now = timezone.now()
    sent_at = max(now, locked.last_activity_at)
    locked.last_seq += 1
    locked.last_activity_at = sent_at
    locked.save(update_fields=["last_seq", "last_activity_at"])
    conversation.last_seq, conversation.last_activity_at = locked.last_seq, sent_at
    message = Message.objects.create(
        conversation=conversation,
        seq=locked.last_seq,
        msg_id=ids.message_id(),
        sender=actor,
        content="",
        content_type=Message.ContentType.TEXT,
        sent_at=sent_at,
        client_id=client_id,
        seq_id=seq_id,
        stream_state=OPEN,
        stream_touched_at=now,
        reply_to=reply_to,
    )
    read_position_move(conversation=conversation, employee=actor, seq=message.seq, at=sent_at)
    return message


def _own_open_stream(actor: Employee, msg_id: str) -> _Stream:
    """The actor's open stream `msg_id`: 404 unseen, 403 another's, 409 no longer open."""
    with _lock:
        stream = _streams.get(msg_id)
    if stream is None:
        message = selectors.message_for_participant(actor=actor, msg_id=msg_id)
        if message.sender_id != actor.pk:
            raise PermissionDenied(_("只有发送者可以追加或结束流式消息"))
        stream = _loaded(msg_id)
    if stream.message.sender_id != actor.pk:
        selectors.message_for_participant(actor=actor, msg_id=msg_id)  # 404 for outsiders
        raise PermissionDenied(_("只有发送者可以追加或结束流式消息"))
    return stream


def _loaded(msg_id: str) -> _Stream:
    """The open stream, from memory or from its stored row (after a restart)."""
    with _lock:
        stream = _streams.get(msg_id)
        if stream is not None:
            return stream
        if len(_streams) >= STREAMS_IN_MEMORY_MAX:
            raise RateLimited(retry_after_ms=1000)
    message = (
        Message.objects.filter(msg_id=msg_id)
        .select_related(
            "sender", "conversation__group", "conversation__employee_low", "conversation__employee_high"
        )
        .first()
    )
    if message is None:
        raise NotFound(_("消息不存在：%(id)s") % {"id": msg_id})
    if not message.stream_state:
        raise BadRequest(_("该消息不是流式消息：%(id)s") % {"id": msg_id})
    if message.stream_state != OPEN:
        raise Conflict(_("流式消息已结束：%(id)s") % {"id": msg_id})
    text = message.content if isinstance(message.content, str) else ""
    with _lock:
        return _streams.setdefault(msg_id, _Stream(message, text, len(text), len(text)))


def _finish(stream: _Stream, *, state: str, text: str, canceled_by: Employee | None = None) -> Message:
    message = stream.message
    now = timezone.now()
    with transaction.atomic():
        done = Message.objects.filter(pk=message.pk, stream_state=OPEN).update(
            content=text, stream_state=state, stream_touched_at=now
        )
        with _lock:
            _streams.pop(message.msg_id, None)
        if not done:
            raise Conflict(_("流式消息已结束：%(id)s") % {"id": message.msg_id})
        message.content, message.stream_state, message.stream_touched_at = text, state, now
        conversation = message.conversation
        if state == ENDED:
            payload = {**payloads.message_payload(message, conversation), "stream": True}
            if message.reply_to:
                payload["reply_to"] = message.reply_to
            events.conversation_event(conversation, payload)
        else:
            payload = {
                **_where(message),
                "type": "stream_cancel",
                "msg_id": message.msg_id,
                "seq": message.seq,
                "content": text,
                "canceled_by": canceled_by.employee_id if canceled_by else None,
                "canceled_at": payloads.isoformat_z(now),
            }
            events.conversation_event(conversation, payload)
    return message


def _publish_delta(stream: _Stream) -> None:
    """Deliver what participants have not had yet (caller holds _lock)."""
    offset = stream.published
    delta = stream.text[offset:]
    if not delta:
        return
    stream.published = len(stream.text)
    stream.last_publish = time.monotonic()
    message = stream.message
    payload = {
        **_where(message),
        "type": "stream_delta",
        "msg_id": message.msg_id,
        "seq": message.seq,
        "offset": offset,
        "delta": delta,
        "length": stream.published,
    }
    events.conversation_event(message.conversation, payload, qos=0)


def _start_payload(message: Message) -> dict:
    payload = {
        **_where(message),
        "type": "stream_start",
        "msg_id": message.msg_id,
        "seq": message.seq,
        "sent_at": payloads.isoformat_z(message.sent_at),
    }
    if message.reply_to:
        payload["reply_to"] = message.reply_to
    return payload


def _where(message: Message) -> dict:
    conversation = message.conversation
    if conversation.is_group:
        return {
            "conversation_type": "group",
            "group_id": conversation.group.group_id,
            "from_employee_id": message.sender.employee_id,
        }
    return {
        "conversation_type": "private",
        "from_employee_id": message.sender.employee_id,
        "to_employee_id": conversation.peer_of(message.sender).employee_id,
    }
