"""A runtime for AI agents: an employee whose messages are answered by a function.

    from mchat_sdk import Agent

    def answer(incoming):
        return f"收到：{incoming.text}"      # sent back into the same conversation

    Agent.from_file("agent.json", answer).run_forever()

For every message addressed to the agent (private, or a group message that mentions it):

1. the message is acknowledged at once with msg.read_ack, which is what the sender's
   msg.send_private waits for (DESIGN §5: 504 "Agent 响应超时" when the agent's deadline passes);
2. the handler runs on a worker thread, at most `concurrency` at a time, and messages of one
   conversation one after another in order;
3. what the handler returns (text or a content object, spec 1.3) is sent back into the same
   conversation; it may also call `incoming.reply(...)` itself, any number of times.

On start (and after a reconnect that lost the session) unread messages are fetched with
conversation.list + msg.history, so what arrived while the agent was stopped is answered too.
`stop()` stops taking messages, lets running handlers finish and send their replies, then
disconnects; `run_forever()` does that on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import signal
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from mchat_sdk.client import Client
from mchat_sdk.errors import MChatError
from mchat_sdk.events import Conversation, Event, Message

logger = logging.getLogger("mchat_sdk.agent")

RECENT_IDS = 10_000
CATCH_UP_PAGE = 100
CATCH_UP_MAX_PER_CONVERSATION = 1000
GROUP_POLICIES = ("mention", "all", "none")


@dataclass
class Incoming:
    """One message for the agent's handler."""

    message: Message
    agent: Agent = field(repr=False)
    replies: list[dict] = field(default_factory=list, repr=False)
    acknowledged: Future | None = field(default=None, repr=False)  # the msg.read_ack, if sent

    @property
    def text(self) -> str:
        return self.message.text

    @property
    def sender(self) -> str:
        return self.message.from_employee_id

    @property
    def conversation(self) -> Conversation:
        return self.message.conversation

    @property
    def client(self) -> Client:
        return self.agent.client

    def reply(self, content: Any) -> dict:
        """Send `content` into the message's conversation; returns the send's response data."""
        sent = self.agent.client.send(self.conversation, content, timeout=self.agent.reply_timeout)
        self.replies.append(sent)
        return sent


Handler = Callable[[Incoming], Any]


class Agent:
    def __init__(
        self,
        client: Client,
        handler: Handler,
        *,
        concurrency: int = 4,
        groups: str = "mention",
        mention_names: Iterable[str] = (),
        auto_ack: bool = True,
        catch_up: bool = True,
        error_reply: str | None = "抱歉，处理这条消息时出错了，请稍后再试。",
        reply_timeout: float | None = 60.0,
    ):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if groups not in GROUP_POLICIES:
            raise ValueError(f"groups must be one of {GROUP_POLICIES}")
        self.client = client
        self.handler = handler
        self.concurrency = concurrency
        self.groups = groups
        self.mentions = [
            f"@{client.employee_id}",
            *(f"@{name}" for name in mention_names),
        ]
        self.auto_ack = auto_ack
        self.catch_up = catch_up
        self.error_reply = error_reply
        self.reply_timeout = reply_timeout
        self.handled = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._lanes: dict[str, collections.deque[Incoming]] = {}
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._accepting = False
        self._workers: ThreadPoolExecutor | None = None
        self._acker: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._stopped = threading.Event()

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        handler: Handler,
        *,
        device: str = "agent",
        **options: Any,
    ) -> Agent:
        client_options = {k: options.pop(k) for k in ("request_timeout", "session_expiry") if k in options}
        return cls(Client.from_file(path, device=device, **client_options), handler, **options)

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Agent:
        """Connect (if needed), take messages, and answer what arrived while stopped."""
        self._workers = ThreadPoolExecutor(self.concurrency, thread_name_prefix="mchat-agent")
        # One thread: acknowledgements go out in arrival order, never behind a slow handler.
        self._acker = ThreadPoolExecutor(1, thread_name_prefix="mchat-agent-ack")
        if inspect.iscoroutinefunction(self.handler):
            self._loop = asyncio.new_event_loop()
            self._loop_thread = threading.Thread(target=self._loop.run_forever, daemon=True)
            self._loop_thread.start()
        with self._lock:
            self._accepting = True
        self._unsubscribe = [
            self.client.on("message", self._on_message),
            self.client.on("connection", self._on_connection),
        ]
        if not self.client.connected:
            self.client.connect()
        if self.catch_up:
            self.fetch_unread()
        logger.info("agent %s is taking messages", self.client.client_id)
        return self

    def stop(self, timeout: float = 30.0, *, end_session: bool = False) -> None:
        """Graceful: no new messages; running and queued handlers finish (up to `timeout`);
        then disconnect (see Client.close for `end_session`). Messages not taken stay unread
        and are answered after the next start."""
        with self._lock:
            if not self._accepting and self._stopped.is_set():
                return
            self._accepting = False
            drained = self._idle.wait_for(lambda: not self._lanes, timeout)
        if not drained:
            logger.warning(
                "agent %s: handlers still running after %s s",
                self.client.client_id,
                timeout,
            )
        for remove in self._unsubscribe:
            remove()
        if self._workers is not None:
            self._workers.shutdown(wait=drained, cancel_futures=not drained)
        if self._acker is not None:
            self._acker.shutdown(wait=True)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(5)
        self.client.close(end_session=end_session)
        self._stopped.set()

    def run_forever(self) -> None:
        """start(), serve until SIGINT or SIGTERM, then stop() gracefully."""
        stop = threading.Event()
        previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            while not stop.wait(0.5):
                pass
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- taking messages -----------------------------------------------------------------------

    def fetch_unread(self) -> int:
        """Take every unread message of the agent's conversations (conversation.list +
        msg.history). Returns how many were new to this runtime."""
        taken = 0
        cursor = None
        while True:
            page = self.client.conversation_list(limit=CATCH_UP_PAGE, cursor=cursor)
            for summary in page.get("conversations", []):
                if summary.get("unread_count", 0) <= 0:
                    continue
                if summary.get("conversation_type") == "group":
                    if self.groups == "none" or summary.get("dismissed"):
                        continue
                    conversation = Conversation("group", summary["group_id"])
                else:
                    conversation = Conversation("private", summary["peer_employee_id"])
                taken += self._fetch_conversation(conversation, after_seq=summary.get("last_read_seq", 0))
            cursor = page.get("next_cursor")
            if not cursor:
                return taken

    def _fetch_conversation(self, conversation: Conversation, *, after_seq: int) -> int:
        taken = 0
        fetched = 0
        while fetched < CATCH_UP_MAX_PER_CONVERSATION:
            page = self.client.history(conversation, after_seq=after_seq, limit=CATCH_UP_PAGE)
            messages = [Message.from_payload(m, me=self.client.employee_id) for m in page.get("messages", [])]
            for message in messages:
                if not message.recalled and self._take(message):
                    taken += 1
            fetched += len(messages)
            if not page.get("has_more") or not messages:
                break
            after_seq = messages[-1].seq or after_seq
        return taken

    def _on_message(self, event: Event) -> None:
        if event.message is not None:
            self._take(event.message)

    def _on_connection(self, event: Event) -> None:
        # A reconnect without the old session lost what was queued meanwhile: fetch it.
        if event.data.get("state") == "connected" and not event.data.get("session_present") and self.catch_up:
            with self._lock:
                accepting = self._accepting
            if accepting and self._acker is not None:
                try:
                    self._acker.submit(self._fetch_unread_logged)
                except RuntimeError:
                    pass  # stopping

    def _fetch_unread_logged(self) -> None:
        try:
            self.fetch_unread()
        except MChatError as exc:
            logger.warning(
                "agent %s: fetching unread messages failed: %s",
                self.client.client_id,
                exc,
            )

    def _wanted(self, message: Message) -> bool:
        if message.from_employee_id == self.client.employee_id:
            return False  # its own messages (copies for its other devices, its group posts)
        if not message.is_group:
            return True
        if self.groups == "all":
            return True
        return self.groups == "mention" and any(m in message.text for m in self.mentions)

    def _take(self, message: Message) -> bool:
        if not self._wanted(message):
            return False
        incoming = Incoming(message, self)
        with self._lock:
            if not self._accepting or message.msg_id in self._seen:
                return False
            self._seen[message.msg_id] = None
            while len(self._seen) > RECENT_IDS:
                self._seen.popitem(last=False)
            if self.auto_ack and self._acker is not None:
                # Before it is queued: its handler waits for this (see _handle).
                incoming.acknowledged = self._acker.submit(self._acknowledge, message)
            key = message.conversation.key
            lane = self._lanes.get(key)
            if lane is not None:
                lane.append(incoming)
                start_lane = False
            else:
                self._lanes[key] = collections.deque([incoming])
                start_lane = True
        if start_lane and self._workers is not None:
            self._workers.submit(self._drain, key)
        return True

    def _acknowledge(self, message: Message) -> None:
        try:
            self.client.read_ack(message)
        except MChatError as exc:
            logger.warning(
                "agent %s: read_ack of %s failed: %s",
                self.client.client_id,
                message.msg_id,
                exc,
            )

    def _drain(self, key: str) -> None:
        while True:
            with self._lock:
                lane = self._lanes.get(key)
                if not lane:
                    self._lanes.pop(key, None)
                    self._idle.notify_all()
                    return
                incoming = lane.popleft()
            self._handle(incoming)

    def _handle(self, incoming: Incoming) -> None:
        if incoming.acknowledged is not None:
            # Acknowledged before answered: a reply moves the agent's read position past the
            # message, and an acknowledgement after it would no longer tell the sender.
            wait([incoming.acknowledged], timeout=self.reply_timeout)
        try:
            result = self.handler(incoming)
            if inspect.isawaitable(result):
                result = self._await(result)
            if result is not None:
                incoming.reply(result)
            with self._lock:
                self.handled += 1
        except Exception:  # one failing message must not stop the agent
            with self._lock:
                self.failed += 1
            logger.exception(
                "agent %s: handler failed on %s",
                self.client.client_id,
                incoming.message.msg_id,
            )
            if self.error_reply:
                try:
                    incoming.reply(self.error_reply)
                except MChatError:
                    logger.warning(
                        "agent %s: could not send the error reply",
                        self.client.client_id,
                    )

    def _await(self, awaitable: Any) -> Any:
        if self._loop is None:
            return asyncio.run(awaitable)
        return asyncio.run_coroutine_threadsafe(awaitable, self._loop).result()
