"""The receiving side of a client: group topics it follows, events for callbacks, the async
iterator and waiters, the delivery thread, and gap detection by conversation seq."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from mchat_sdk.errors import MChatError
from mchat_sdk.events import (
    GROUP_PREFIX,
    INBOX_PREFIX,
    Conversation,
    Event,
    Message,
    classify,
)

logger = logging.getLogger("mchat_sdk")

CATCH_UP_LIMIT = 1000  # missed messages fetched per conversation at a time
JOIN_RECHECK_SECONDS = 1.0
STOP = object()  # ends the delivery thread and async iterators


class Deliveries:
    """Mixed into Client (which owns the state these methods use)."""

    # --- groups followed by this client --------------------------------------------------------

    def sync_groups(self, timeout: float | None = None) -> dict[str, dict]:
        """Reload the group list and (un)subscribe group topics to match it."""
        groups = {g["group_id"]: g for g in self.request("group.list", timeout=timeout).get("groups", [])}
        with self._lock:
            gone = [gid for gid in self.groups if gid not in groups]
            new = [gid for gid in groups if gid not in self.groups]
            self.groups = groups
        for gid in gone:
            self._leave_group_topic(gid)
        for gid in groups:
            self._join_group_topic(gid)
        deadline = time.monotonic() + (timeout or self.request_timeout)
        for gid in groups:
            self.wait_group(gid, max(0.1, deadline - time.monotonic()))
        if new:
            logger.debug("%s follows groups %s", self.client_id, new)
        return dict(groups)

    def wait_group(self, group_id: str, timeout: float = 10.0) -> bool:
        """Wait until this client receives the group's topic (after a member_joined notice)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                ready = self._group_subscribed.get(group_id)
            if ready is not None:
                return ready.wait(max(0.0, deadline - time.monotonic()))
            time.sleep(0.01)
        return False

    def _join_group_topic(self, group_id: str) -> int | None:
        with self._lock:
            ready = self._group_subscribed.setdefault(group_id, threading.Event())
        result, mid = self._mqtt.subscribe(GROUP_PREFIX + group_id, options=SubscribeOptions(qos=1))
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return None  # not connected: every reconnect subscribes all followed groups again
        with self._suback_cond:
            if self._subacks.pop(mid, None) is not None:  # the SUBACK was quicker
                ready.set()
            else:
                self._group_mids[mid] = ready
        return mid

    def _leave_group_topic(self, group_id: str) -> None:
        with self._lock:
            self._group_subscribed.pop(group_id, None)
        self._mqtt.unsubscribe(GROUP_PREFIX + group_id)

    # --- events --------------------------------------------------------------------------------

    def on(self, kind: str, callback: Callable[[Event], Any]) -> Callable[[], None]:
        """Call `callback(event)` for every event of `kind` ("*" for all); returns a remover.

        Callbacks run on the client's delivery thread, one at a time, in arrival order.
        """
        with self._lock:
            self._callbacks[kind].append(callback)

        def remove() -> None:
            with self._lock:
                if callback in self._callbacks[kind]:
                    self._callbacks[kind].remove(callback)

        return remove

    async def events(self, *kinds: str) -> AsyncIterator[Event]:
        """Async iterator over events (of the given kinds, or all) from now on:

        async for event in client.events("message"):
            ...
        """
        loop = asyncio.get_running_loop()
        feed: asyncio.Queue = asyncio.Queue()
        entry = (loop, feed, frozenset(kinds))
        with self._lock:
            self._async_queues.append(entry)
        try:
            while True:
                event = await feed.get()
                if event is STOP:
                    return
                yield event
        finally:
            with self._lock:
                if entry in self._async_queues:
                    self._async_queues.remove(entry)

    def wait_event(
        self,
        predicate: Callable[[Event], bool] | None = None,
        *,
        kind: str | None = None,
        timeout: float = 10.0,
    ) -> Event:
        """The first event (already received or arriving within `timeout`) of `kind` that
        satisfies `predicate`. Searches the recent history too. Raises TimeoutError."""

        def matching() -> Event | None:
            for event in self._history:
                if (kind is None or event.kind == kind) and (predicate is None or predicate(event)):
                    return event
            return None

        with self._history_cond:
            found = self._history_cond.wait_for(matching, timeout)
        if found is None:
            raise TimeoutError(f"no matching {kind or ''} event within {timeout} s")
        return found

    @property
    def history_events(self) -> list[Event]:
        with self._history_cond:
            return list(self._history)

    # --- the delivery thread -------------------------------------------------------------------

    def _deliver_forever(self) -> None:
        while True:
            item = self._incoming.get()
            if item is STOP:
                break
            try:
                if item[0] == "catch_up":
                    for event in self._catch_up(item[1]):
                        self._publish_event(event)
                    continue
                event = self._decode(item)
                if event is not None:
                    self._track(event)
                    for ready in self._in_order(event):
                        self._publish_event(ready)
            except Exception:  # one bad delivery must not stop the rest
                logger.exception("%s: delivery of %r failed", self.client_id, item[:2])
        with self._lock:
            queues = list(self._async_queues)
        for loop, feed, _kinds in queues:
            _feed(loop, feed, STOP)

    def _decode(self, item: tuple) -> Event | None:
        if item[0] == "connection":
            return Event("connection", "", item[1])
        _, topic, raw = item
        if not raw:
            return None  # a cleared retained status
        try:
            payload = json.loads(raw)
        except ValueError:
            logger.warning("%s: undecodable payload on %s", self.client_id, topic)
            return None
        return classify(topic, payload, me=self.employee_id)

    def _track(self, event: Event) -> None:
        """The client's own bookkeeping, before anyone else sees the event."""
        if event.kind == "status" and event.employee_id:
            with self._lock:
                self.presence[event.employee_id] = event.data
        elif event.kind == "notification":
            self._follow_membership(event.data)
        elif (
            event.kind == "connection"
            and event.data.get("state") == "connected"
            and self._first_connect_done
            and self.track_groups
        ):
            try:  # memberships may have changed while offline
                self.sync_groups()
            except MChatError as exc:
                logger.warning("%s: group list after reconnect failed: %s", self.client_id, exc)

    # Every conversation numbers its messages 1, 2, 3... (DESIGN §5). A delivery that skips
    # numbers after one this client has seen means deliveries were missed (e.g. in the moment
    # between joining a group and the broker applying the new membership): they are fetched
    # with msg.history and handed out first, marked data["recovered"] = True.

    def _in_order(self, event: Event) -> list[Event]:
        if event.kind == "stream" and event.data.get("type") == "stream_start":
            return self._stream_started(event)
        message = event.message
        if event.kind == "message" and message is not None and message.raw.get("stream"):
            # A stream's message took its seq at stream_start; it ends now, whatever came since.
            return [event]
        if event.kind != "message" or message is None or message.seq is None:
            return [event]
        key = message.conversation.key
        with self._lock:
            last = self._last_seq.get(key)
            if last is not None and message.seq <= last:
                return []  # already handed out (a redelivery, or fetched as missing)
            self._last_seq[key] = message.seq
        if last is None or message.seq == last + 1:
            return [event]
        return [*self._fetch_missing(message.conversation, after_seq=last, before_seq=message.seq), event]

    def _stream_started(self, event: Event) -> list[Event]:
        """A stream_start holds its conversation's next seq: count it as seen (its message
        comes at stream_end), fetching what was missed before it."""
        seq = event.data.get("seq")
        conversation = event.conversation_for(self.employee_id)
        if not isinstance(seq, int) or conversation is None:
            return [event]
        key = conversation.key
        with self._lock:
            last = self._last_seq.get(key)
            if last is not None and seq <= last:
                return [event]
            self._last_seq[key] = seq
        if last is None or seq == last + 1:
            return [event]
        return [*self._fetch_missing(conversation, after_seq=last, before_seq=seq), event]

    def _catch_up(self, conversation: Conversation) -> list[Event]:
        """Messages of `conversation` newer than the last one handed out (or, the first time,
        than this employee's read position)."""
        key = conversation.key
        with self._lock:
            last = self._last_seq.get(key)
        try:
            if last is None:
                last = int(self.history(conversation, limit=1).get("last_read_seq") or 0)
                with self._lock:
                    last = self._last_seq.setdefault(key, last)
            missing = self._fetch_missing(conversation, after_seq=last, before_seq=None)
        except MChatError as exc:
            logger.warning("%s: catching up %s failed: %s", self.client_id, key, exc)
            return []
        if missing:
            with self._lock:
                top = max(e.message.seq for e in missing if e.message and e.message.seq)
                if top > self._last_seq.get(key, 0):
                    self._last_seq[key] = top
        return missing

    def _fetch_missing(
        self, conversation: Conversation, *, after_seq: int, before_seq: int | None
    ) -> list[Event]:
        topic = (
            (GROUP_PREFIX + conversation.id)
            if conversation.type == "group"
            else INBOX_PREFIX + self.employee_id
        )
        found: list[Event] = []
        while len(found) < CATCH_UP_LIMIT:
            try:
                page = self.history(conversation, after_seq=after_seq, before_seq=before_seq, limit=100)
            except MChatError as exc:
                logger.warning(
                    "%s: fetching missed messages of %s failed: %s",
                    self.client_id,
                    conversation.key,
                    exc,
                )
                break
            for payload in page.get("messages", []):
                after_seq = max(after_seq, int(payload.get("seq") or after_seq))
                if payload.get("streaming"):
                    continue  # still being written: it arrives as a message at stream_end
                data = {**payload, "recovered": True}
                found.append(
                    Event(
                        "message",
                        topic,
                        data,
                        Message.from_payload(data, me=self.employee_id),
                    )
                )
            if not page.get("has_more") or not page.get("messages"):
                break
        return found

    def _schedule_catch_up(self, conversation: Conversation) -> None:
        self._incoming.put(("catch_up", conversation))
        # The broker applies a membership change within a moment; look once more after it.
        timer = threading.Timer(JOIN_RECHECK_SECONDS, self._incoming.put, args=[("catch_up", conversation)])
        timer.daemon = True
        timer.start()

    def _follow_membership(self, notice: dict) -> None:
        if not self.track_groups:
            return
        body = notice.get("body") or {}
        group_id = body.get("group_id")
        if not group_id:
            return
        kind = notice.get("type")
        concerns_me = self.employee_id in (body.get("member_ids") or [])
        if kind == "member_joined" and concerns_me:
            with self._lock:
                self.groups.setdefault(group_id, {"group_id": group_id, "name": body.get("group_name", "")})
            self._join_group_topic(group_id)
            self._schedule_catch_up(Conversation("group", group_id))
        elif (kind == "member_removed" and concerns_me) or kind == "group_dismissed":
            with self._lock:
                self.groups.pop(group_id, None)
            self._leave_group_topic(group_id)
        elif kind == "group_renamed":
            with self._lock:
                if group_id in self.groups:
                    self.groups[group_id] = {
                        **self.groups[group_id],
                        "name": body.get("group_name", ""),
                    }

    def _publish_event(self, event: Event) -> None:
        with self._history_cond:
            self._history.append(event)
            self._history_cond.notify_all()
        with self._lock:
            callbacks = list(self._callbacks.get(event.kind, ())) + list(self._callbacks.get("*", ()))
            queues = list(self._async_queues)
        for callback in callbacks:
            try:
                callback(event)
            except Exception:  # a failing callback must not stop deliveries
                logger.exception("%s: callback for %s failed", self.client_id, event.kind)
        for loop, feed, kinds in queues:
            if not kinds or event.kind in kinds:
                _feed(loop, feed, event)


def _feed(loop: asyncio.AbstractEventLoop, feed: asyncio.Queue, item: Any) -> None:
    try:
        loop.call_soon_threadsafe(feed.put_nowait, item)
    except RuntimeError:
        pass  # that event loop is closed
