"""Streamed replies (issue 17, DESIGN §9): one message whose text arrives in pieces.

- msg.stream_start reserves the message and its `seq` now (the conversation's numbers stay
  gap-free): a row with empty content and stream_state "open"; everyone gets `stream_start`.
- msg.stream_append adds text to the stream buffer (messaging.stream_buffers), with no
  database write: participants get `stream_delta` {offset, delta} at most
  settings.MCHAT_STREAM_DELTA_INTERVAL (0.1 s) apart per stream (an append after a quiet
  interval at once, the rest coalesced: by the next append due, or the periodic
  `streams_tick`). The text so far is written into the reserved row every
  STREAM_PERSIST_SECONDS, so losing the buffer loses at most that much; the stream then
  continues from the stored text.
- msg.stream_end stores the complete text once and delivers it as a normal message with
  `stream: true`; msg.stream_cancel (a recipient of a private stream, a group's owner or
  admin, or the streamer) keeps the text so far with `canceled: true` and tells everyone
  `stream_cancel`.
- Limits: STREAM_MAX_CHARS per stream, one open stream per sender per conversation, a stream
  not appended for STREAM_IDLE_SECONDS ends itself (`streams_tick` and `streams_expire`).

The buffer (settings.MCHAT_STREAM_BUFFER) is this process's memory, or Redis shared by every
bridge process (MCHAT_STREAM_REDIS_URL): with several bridge processes sharing the request
subscription, appends of one stream land on any of them, so they need the shared one. With the
in-memory buffer a process that does not hold a stream loads the stored text, which may lack
the last few seconds (docs/deploy.md: one bridge process).
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from mchat.errors import BadRequest, Conflict, NotFound, PermissionDenied, RateLimited
from messaging import events, ids, payloads, selectors, stream_buffers
from messaging.models import Conversation, GroupMember, Message
from messaging.stream_buffers import (
    STREAM_IDLE_SECONDS,
    STREAM_PERSIST_SECONDS,
    BufferUnavailable,
    Delta,
    StreamInfo,
)
from org.models import Employee

logger = logging.getLogger("mchat.messaging.streams")

STREAM_MAX_CHARS = 12_000
UNAVAILABLE_LOG_SECONDS = 30.0  # the periodic job logs a buffer that does not answer this often

OPEN, ENDED, CANCELED = "open", "ended", "canceled"
_MESSAGE_RELATED = (
    "sender",
    "conversation__group",
    "conversation__employee_low",
    "conversation__employee_high",
)


def buffer() -> stream_buffers.StreamBuffer:
    return stream_buffers.current()


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
    if buffer().full():
        raise RateLimited(retry_after_ms=1000)
    if seq_id:
        earlier = Message.objects.filter(client_id=client_id, seq_id=seq_id).first()
        if earlier is not None:  # the same request again (its record purged): the same stream
            return _again(earlier.msg_id)
    try:
        with transaction.atomic():
            message = _reserve(conversation, actor, reply_to or "", client_id, seq_id)
    except IntegrityError:
        if not seq_id:
            raise
        return _again(Message.objects.get(client_id=client_id, seq_id=seq_id).msg_id)
    buffer().open(_info(message), "")
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

    def append():
        return buffer().append(
            msg_id,
            sender_pk=actor.pk,
            delta=delta,
            repeat_key=f"{client_id}\x1f{seq_id}" if seq_id else "",
            max_chars=STREAM_MAX_CHARS,
        )

    appended = append()
    if appended.status == stream_buffers.MISSING:  # not held (a restart, a lost buffer): load it
        _hold(_senders_message(actor, msg_id))
        appended = append()
    if appended.status == stream_buffers.SENDER:
        _senders_message(actor, msg_id)  # 404 for outsiders, 403 for participants
    if appended.status == stream_buffers.TOO_LONG:
        raise BadRequest(_("流式消息超过 %(max)d 字符上限，请结束该流式消息") % {"max": STREAM_MAX_CHARS})
    if appended.status not in (stream_buffers.OK, stream_buffers.REPEAT):
        raise Conflict(_("流式消息已结束：%(id)s") % {"id": msg_id})
    if appended.delivery is not None:
        _deliver(appended.delivery)
    return {"msg_id": msg_id, "seq": appended.seq, "offset": appended.offset, "length": appended.length}


def stream_end(*, actor: Employee, msg_id: str, content: str | None = None) -> Message:
    """Store the stream's text (or the final `content`) once and deliver it as a message."""
    if content is not None:
        if not isinstance(content, str) or not content:
            raise BadRequest(_("content 必须是非空字符串"))
        if len(content) > STREAM_MAX_CHARS:
            raise BadRequest(_("content 超过 %(max)d 字符上限") % {"max": STREAM_MAX_CHARS})
        if "\x00" in content:
            raise BadRequest(_("content 不能包含 NUL 字符"))
    closed = buffer().close(msg_id, sender_pk=actor.pk)
    if closed.status == stream_buffers.MISSING:  # not held: the stored text is all there is
        message = _senders_message(actor, msg_id)
        _require_open(message)
        info, text = _info(message), message.content
    elif closed.status == stream_buffers.SENDER:
        _senders_message(actor, msg_id)
        raise PermissionDenied(_("只有发送者可以追加或结束流式消息"))
    elif closed.status != stream_buffers.OK:
        raise Conflict(_("流式消息已结束：%(id)s") % {"id": msg_id})
    else:
        info, text = closed.info, closed.text
    return _finish(info, state=ENDED, text=content if content is not None else text)


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
    closed = buffer().close(msg_id, sender_pk=None)
    if closed.status == stream_buffers.CLOSED:
        raise Conflict(_("流式消息已结束，无法取消：%(id)s") % {"id": msg_id})
    text = closed.text if closed.status == stream_buffers.OK else _text(message)
    return _finish(_info(message), state=CANCELED, text=text, canceled_by=actor)


# --- what reads show ---------------------------------------------------------------------------


def stream_fields(message: Message) -> dict:
    """Extra keys of a streamed message in history and conversation lists: `stream`,
    `streaming` (and the text so far as `content`) while open, `canceled`."""
    if not message.stream_state:
        return {}
    fields: dict = {"stream": True, "streaming": message.stream_state == OPEN}
    if message.stream_state == OPEN:
        try:
            held = buffer().text(message.msg_id)
        except BufferUnavailable:
            held = None  # what was stored last
        fields["content"] = held if held is not None else message.content
    if message.stream_state == CANCELED:
        fields["canceled"] = True
    return fields


# --- periodic jobs (settings.MCHAT_BRIDGE_PERIODIC) ------------------------------------------

_unavailable_logged = [float("-inf")]


def streams_tick() -> None:
    """Deliver coalesced deltas that are due, store texts every STREAM_PERSIST_SECONDS, and
    end streams idle for STREAM_IDLE_SECONDS (each handed to one process by the buffer)."""
    try:
        due = buffer().due()
    except BufferUnavailable as exc:
        now = time.monotonic()
        if now - _unavailable_logged[0] >= UNAVAILABLE_LOG_SECONDS:
            _unavailable_logged[0] = now
            logger.warning("streams: the stream buffer does not answer (%s)", exc.__cause__ or exc)
        return
    for delivery in due.deliveries:
        _deliver(delivery)
    for store in due.stores:
        stored = Message.objects.filter(pk=store.info.message_pk, stream_state=OPEN).update(
            content=store.text, stream_touched_at=store.touched_at
        )
        if not stored:  # ended or canceled meanwhile: nothing left to hold
            _forget(store.info.msg_id)
    for info, text in due.idle:
        try:
            _finish(info, state=ENDED, text=text)
        except Conflict:
            pass  # ended or canceled meanwhile (another process): nothing left to do


def streams_expire() -> int:
    """End streams that no buffer holds and nobody has touched for STREAM_IDLE_SECONDS (their
    process restarted or stopped, or Redis lost them); returns how many."""
    cutoff = timezone.now() - timedelta(seconds=STREAM_IDLE_SECONDS + STREAM_PERSIST_SECONDS)
    candidates = list(
        Message.objects.filter(stream_state=OPEN, stream_touched_at__lt=cutoff).values_list(
            "msg_id", flat=True
        )[:200]
    )
    try:
        held = buffer().held(candidates)
    except BufferUnavailable:
        return 0  # they may well be held: streams_tick logs that the buffer does not answer
    stale = [msg_id for msg_id in candidates if msg_id not in held]
    for msg_id in stale:
        message = Message.objects.filter(msg_id=msg_id).select_related(*_MESSAGE_RELATED).first()
        if message is None or message.stream_state != OPEN:
            continue
        try:
            _finish(_info(message), state=ENDED, text=_text(message))
        except Conflict:
            continue
    return len(stale)


def streams_forget() -> None:
    """Drop what the buffer holds (tests: a bridge restart)."""
    buffer().forget()


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


def _again(msg_id: str) -> Message:
    """A repeated stream_start: the stream it started (held again if still open)."""
    message = Message.objects.select_related(*_MESSAGE_RELATED).get(msg_id=msg_id)
    if message.stream_state == OPEN:
        _hold(message)
    return message


def _senders_message(actor: Employee, msg_id: str) -> Message:
    """The stream `msg_id` if the actor sent it: 404 unseen, 403 another's."""
    message = selectors.message_for_participant(actor=actor, msg_id=msg_id)
    if message.sender_id != actor.pk:
        raise PermissionDenied(_("只有发送者可以追加或结束流式消息"))
    return message


def _require_open(message: Message) -> None:
    if not message.stream_state:
        raise BadRequest(_("该消息不是流式消息：%(id)s") % {"id": message.msg_id})
    if message.stream_state != OPEN:
        raise Conflict(_("流式消息已结束：%(id)s") % {"id": message.msg_id})


def _hold(message: Message) -> None:
    """Put an open stream into the buffer with its stored text (after a restart)."""
    _require_open(message)
    if buffer().full():
        raise RateLimited(retry_after_ms=1000)
    buffer().open(_info(message), _text(message))


def _text(message: Message) -> str:
    return message.content if isinstance(message.content, str) else ""


def _info(message: Message) -> StreamInfo:
    return StreamInfo(message.msg_id, message.pk, message.sender_id, message.seq, _where(message))


def _finish(info: StreamInfo, *, state: str, text: str, canceled_by: Employee | None = None) -> Message:
    """Store the stream's final text once and tell everyone; the buffer forgets it."""
    now = timezone.now()
    try:
        with transaction.atomic():
            done = Message.objects.filter(pk=info.message_pk, stream_state=OPEN).update(
                content=text, stream_state=state, stream_touched_at=now
            )
            if not done:
                raise Conflict(_("流式消息已结束：%(id)s") % {"id": info.msg_id})
            message = Message.objects.select_related(*_MESSAGE_RELATED).get(pk=info.message_pk)
            conversation = message.conversation
            if state == ENDED:
                payload = {**payloads.message_payload(message, conversation), "stream": True}
                if message.reply_to:
                    payload["reply_to"] = message.reply_to
            else:
                payload = {
                    **info.where,
                    "type": "stream_cancel",
                    "msg_id": message.msg_id,
                    "seq": message.seq,
                    "content": text,
                    "canceled_by": canceled_by.employee_id if canceled_by else None,
                    "canceled_at": payloads.isoformat_z(now),
                }
            events.conversation_event(conversation, payload)
    except Conflict:
        _forget(info.msg_id)  # no longer open: nothing left to hold
        raise
    except Exception:
        try:
            buffer().reopen(info.msg_id)  # the write failed: a retry finds the text again
        except BufferUnavailable:
            pass
        raise
    _forget(info.msg_id)
    return message


def _forget(msg_id: str) -> None:
    try:
        buffer().discard(msg_id)
    except BufferUnavailable:
        pass  # a closed stream's keys expire by themselves (RedisStreamBuffer.CLOSED_TTL_MS)


def _deliver(delivery: Delta) -> None:
    """A coalesced stream_delta to every participant, from the stream's info alone."""
    info = delivery.info
    payload = {
        **info.where,
        "type": "stream_delta",
        "msg_id": info.msg_id,
        "seq": info.seq,
        "offset": delivery.offset,
        "delta": delivery.delta,
        "length": delivery.length,
    }
    events.payload_event(payload, qos=0)


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
