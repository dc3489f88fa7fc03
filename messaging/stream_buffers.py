"""Where open streams are held between appends (issue 17): the port messaging.streams uses,
and its in-memory implementation.

A buffer holds, per open stream, the text so far and what the coalescing needs (how much
was delivered and when, when the row last got the text, when the last append came). Its
operations are atomic per stream, so several processes sharing one buffer agree on
offsets and on who delivers what:

- `append` adds a delta and says whether to deliver now (at most one delivery per
  delta_interval() per stream, counting every process);
- `due` hands each coalesced delivery, each text to store (every STREAM_PERSIST_SECONDS)
  and each stream idle for STREAM_IDLE_SECONDS to exactly one caller;
- `close` ends appends (end, cancel): later appends get "closed".

Which implementation runs is named by settings.MCHAT_STREAM_BUFFER: `MemoryStreamBuffer`
(this process only: one bridge process, or appends of a stream must reach the process that
holds it) or `messaging.stream_buffers_redis:RedisStreamBuffer` (shared by every bridge
process through Redis, MCHAT_STREAM_REDIS_URL).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from mchat.errors import MChatError
from mchat.targets import target_resolve

STREAM_IDLE_SECONDS = 120
STREAM_PERSIST_SECONDS = 2.0


def delta_interval() -> float:
    """Seconds between two deliveries of one stream (settings.MCHAT_STREAM_DELTA_INTERVAL,
    0.1: at most ~10 deltas a second per stream). An append waits for the next delivery half
    of it on average: the trade between update rate and latency (bench/STREAMS.md)."""
    return settings.MCHAT_STREAM_DELTA_INTERVAL


REPEATS_REMEMBERED = 64  # (client_id, seq_id) of recent appends per stream: a redelivery appends nothing

# What `append` and `close` found.
OK, REPEAT, MISSING, SENDER, CLOSED, TOO_LONG = "ok", "repeat", "missing", "sender", "closed", "too_long"


class BufferUnavailable(MChatError):
    """The shared buffer (Redis) does not answer: streams cannot be served for now."""

    code = 503
    default_message = _("流式消息服务暂不可用，请稍后重试")


@dataclass(frozen=True)
class StreamInfo:
    """What any process needs to serve and deliver a stream without the database."""

    msg_id: str
    message_pk: int
    sender_pk: int
    seq: int
    where: dict  # conversation_type, group_id or to_employee_id, from_employee_id

    def dumps(self) -> str:
        return json.dumps([self.msg_id, self.message_pk, self.sender_pk, self.seq, self.where])

    @classmethod
    def loads(cls, data: str) -> StreamInfo:
        msg_id, message_pk, sender_pk, seq, where = json.loads(data)
        return cls(msg_id, message_pk, sender_pk, seq, where)


@dataclass(frozen=True)
class Delta:
    """A coalesced delivery: the text from `offset` up to `length`."""

    info: StreamInfo
    offset: int
    delta: str
    length: int


@dataclass(frozen=True)
class Appended:
    status: str  # OK, REPEAT, MISSING, SENDER, CLOSED, TOO_LONG
    seq: int = 0
    offset: int = 0  # where this delta starts
    length: int = 0  # the text's length after it
    delivery: Delta | None = None  # to deliver now


@dataclass(frozen=True)
class Closed:
    status: str  # OK, MISSING, SENDER, CLOSED
    info: StreamInfo | None = None
    text: str = ""


@dataclass(frozen=True)
class Store:
    """A text to write into the stream's row."""

    info: StreamInfo
    text: str
    touched_at: datetime


@dataclass
class Due:
    deliveries: list[Delta] = field(default_factory=list)
    stores: list[Store] = field(default_factory=list)
    idle: list[tuple[StreamInfo, str]] = field(default_factory=list)  # closed by this call: end them


class StreamBuffer(Protocol):
    def full(self) -> bool:
        """No room for another open stream (start answers 429)."""

    def open(self, info: StreamInfo, text: str) -> None:
        """Hold the stream with `text` so far, unless it is held already."""

    def append(self, msg_id: str, *, sender_pk: int, delta: str, repeat_key: str, max_chars: int) -> Appended:
        """Add `delta` (once per non-empty repeat_key) if the stream is held, open, the
        sender's and stays within max_chars."""

    def text(self, msg_id: str) -> str | None:
        """The text so far, None when not held."""

    def close(self, msg_id: str, *, sender_pk: int | None) -> Closed:
        """No more appends (sender_pk None: anyone may close); the text so far."""

    def reopen(self, msg_id: str) -> None:
        """Undo `close` (storing the final text failed: a retry finds the text again)."""

    def discard(self, msg_id: str) -> None:
        """Forget the stream (its row is final, or no longer open)."""

    def due(self) -> Due:
        """Deliveries, stores and idle streams due now, each handed to one caller only."""

    def held(self, msg_ids: list[str]) -> set[str]:
        """Which of these streams are held (by any process sharing the buffer)."""

    def forget(self) -> None:
        """Drop everything held (tests: a restart)."""


@dataclass
class _Held:
    info: StreamInfo
    text: str
    published: int  # characters delivered so far
    last_append: float
    stored_at: float  # when the row last got the text
    touched_at: datetime
    last_publish: float = float("-inf")
    dirty: bool = False  # text changed since it was stored
    closed: bool = False
    repeats: OrderedDict = field(default_factory=OrderedDict)  # repeat_key -> (offset, length)


class MemoryStreamBuffer:
    """This process's streams in a dict (one bridge process; documented in docs/deploy.md)."""

    MAX_OPEN = 10_000  # open streams one process holds; more -> 429

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._streams: dict[str, _Held] = {}

    def full(self) -> bool:
        with self._lock:
            return len(self._streams) >= self.MAX_OPEN

    def open(self, info: StreamInfo, text: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._streams.setdefault(info.msg_id, _Held(info, text, len(text), now, now, timezone.now()))

    def append(self, msg_id: str, *, sender_pk: int, delta: str, repeat_key: str, max_chars: int) -> Appended:
        with self._lock:
            held = self._streams.get(msg_id)
            if held is None:
                return Appended(MISSING)
            if held.info.sender_pk != sender_pk:
                return Appended(SENDER)
            if held.closed:
                return Appended(CLOSED)
            seq = held.info.seq
            if repeat_key and repeat_key in held.repeats:
                offset, length = held.repeats[repeat_key]
                return Appended(REPEAT, seq, offset, length)
            if len(held.text) + len(delta) > max_chars:
                return Appended(TOO_LONG)
            offset = len(held.text)
            held.text += delta
            held.dirty = True
            held.last_append = time.monotonic()
            held.touched_at = timezone.now()
            if repeat_key:
                held.repeats[repeat_key] = (offset, len(held.text))
                while len(held.repeats) > REPEATS_REMEMBERED:
                    held.repeats.popitem(last=False)
            delivery = None
            if held.last_append - held.last_publish >= delta_interval():
                delivery = self._take_delivery(held, held.last_append)
            return Appended(OK, seq, offset, len(held.text), delivery)

    def text(self, msg_id: str) -> str | None:
        with self._lock:
            held = self._streams.get(msg_id)
            return held.text if held is not None else None

    def close(self, msg_id: str, *, sender_pk: int | None) -> Closed:
        with self._lock:
            held = self._streams.get(msg_id)
            if held is None:
                return Closed(MISSING)
            if sender_pk is not None and held.info.sender_pk != sender_pk:
                return Closed(SENDER)
            if held.closed:
                return Closed(CLOSED)
            held.closed = True
            return Closed(OK, held.info, held.text)

    def reopen(self, msg_id: str) -> None:
        with self._lock:
            held = self._streams.get(msg_id)
            if held is not None:
                held.closed, held.last_append = False, time.monotonic()

    def discard(self, msg_id: str) -> None:
        with self._lock:
            self._streams.pop(msg_id, None)

    def due(self) -> Due:
        now = time.monotonic()
        interval = delta_interval()
        due = Due()
        with self._lock:
            for held in self._streams.values():
                if held.closed:
                    continue
                if held.published < len(held.text) and now - held.last_publish >= interval:
                    due.deliveries.append(self._take_delivery(held, now))
                if now - held.last_append >= STREAM_IDLE_SECONDS:
                    held.closed = True
                    due.idle.append((held.info, held.text))
                elif held.dirty and now - held.stored_at >= STREAM_PERSIST_SECONDS:
                    held.dirty, held.stored_at = False, now
                    due.stores.append(Store(held.info, held.text, held.touched_at))
        return due

    def held(self, msg_ids: list[str]) -> set[str]:
        with self._lock:
            return {msg_id for msg_id in msg_ids if msg_id in self._streams}

    def forget(self) -> None:
        with self._lock:
            self._streams.clear()

    @staticmethod
    def _take_delivery(held: _Held, now: float) -> Delta | None:
        offset = held.published
        if offset >= len(held.text):
            return None
        held.published, held.last_publish = len(held.text), now
        return Delta(held.info, offset, held.text[offset:], held.published)


_current: StreamBuffer | None = None
_current_lock = threading.Lock()


def current() -> StreamBuffer:
    """The buffer settings.MCHAT_STREAM_BUFFER names, created on first use."""
    global _current
    if _current is None:
        with _current_lock:
            if _current is None:
                _current = target_resolve(settings.MCHAT_STREAM_BUFFER)()
    return _current


def install(buffer: StreamBuffer | None) -> None:
    """Use `buffer` from now on (None: the configured one, created again on next use)."""
    global _current
    _current = buffer
