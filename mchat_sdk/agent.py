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
   conversation; it may also call `incoming.reply(...)` itself, any number of times, or stream
   its answer (issue 17):

       def answer(incoming):
           with incoming.stream() as s:          # async handlers: async with ... await s.append
               for piece in pieces:
                   s.append(piece)               # stops quietly if the recipient cancels

4. a private message is a task (its msg_id): the runtime reports `working` when the handler
   starts, `completed` when it returns and `failed` when it raises (task_states=True); the
   handler may set `incoming.set_state("input-required", "请提供订单号")` or show a status with
   `incoming.status("正在查询订单…")`. `incoming.canceled` is set when the sender cancels.

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
from mchat_sdk.errors import Conflict, MChatError
from mchat_sdk.events import Conversation, Event, Message

logger = logging.getLogger("mchat_sdk.agent")

RECENT_IDS = 10_000
CATCH_UP_PAGE = 100
CATCH_UP_MAX_PER_CONVERSATION = 1000
GROUP_POLICIES = ("mention", "all", "none")


TERMINAL_STATES = ("completed", "failed", "canceled")


class StreamCanceled(Exception):
    """The recipient (or a group's owner/admin) canceled the stream: stop producing text.
    `with incoming.stream()` swallows it, so a handler simply ends."""


class ReplyStream:
    """A streamed reply into the incoming message's conversation (msg.stream_*).

    `with incoming.stream() as s: s.append(text)` ends it when the block ends (the text so far
    is kept if the block raises); `async with incoming.stream() as s: await s.append(text)`
    does the same in a coroutine handler. After a cancel, `append` raises StreamCanceled
    (which the `with` block swallows) and `canceled` is true.
    """

    def __init__(self, incoming: Incoming):
        self.incoming = incoming
        self.msg_id: str | None = None
        self.seq: int | None = None
        self.length = 0
        self.ended = False
        self._canceled = threading.Event()

    @property
    def canceled(self) -> bool:
        return self._canceled.is_set()

    def start(self) -> ReplyStream:
        agent = self.incoming.agent
        data = agent.client.stream_start(self.incoming.conversation, reply_to=self.incoming.message.msg_id)
        self.msg_id, self.seq = data["msg_id"], data.get("seq")
        with agent._lock:
            agent._streams[self.msg_id] = self
        return self

    def append(self, text: str) -> None:
        if not text:
            return
        if self.canceled:
            raise StreamCanceled(self.msg_id)
        try:
            self.length = self.incoming.agent.client.stream_append(self.msg_id, text)["length"]
        except Conflict:
            self._canceled.set()  # canceled (or ended) meanwhile
            raise StreamCanceled(self.msg_id) from None

    def end(self, content: str | None = None) -> None:
        if self.ended or self.canceled or self.msg_id is None:
            return
        self.ended = True
        try:
            self.incoming.agent.client.stream_end(self.msg_id, content=content)
        except Conflict:
            self._canceled.set()
        self.incoming.replies.append({"msg_id": self.msg_id, "seq": self.seq, "stream": True})

    def _cancel_noticed(self) -> None:
        self._canceled.set()

    def __enter__(self) -> ReplyStream:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            self.end()
        finally:
            with self.incoming.agent._lock:
                self.incoming.agent._streams.pop(self.msg_id or "", None)
        return exc_type is not None and issubclass(exc_type, StreamCanceled)

    async def __aenter__(self) -> AsyncReplyStream:
        await asyncio.to_thread(self.start)
        return AsyncReplyStream(self)

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        return await asyncio.to_thread(self.__exit__, exc_type, exc, tb)


class AsyncReplyStream:
    """ReplyStream for coroutine handlers: `await s.append(text)`."""

    def __init__(self, stream: ReplyStream):
        self.stream = stream

    @property
    def canceled(self) -> bool:
        return self.stream.canceled

    @property
    def msg_id(self) -> str | None:
        return self.stream.msg_id

    async def append(self, text: str) -> None:
        await asyncio.to_thread(self.stream.append, text)

    async def end(self, content: str | None = None) -> None:
        await asyncio.to_thread(self.stream.end, content)


@dataclass
class Incoming:
    """One message for the agent's handler."""

    message: Message
    agent: Agent = field(repr=False)
    replies: list[dict] = field(default_factory=list, repr=False)
    acknowledged: Future | None = field(default=None, repr=False)  # the msg.read_ack, if sent
    task_state: str = "submitted"  # a private message is a task: its last reported state
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def is_task(self) -> bool:
        return not self.message.is_group

    @property
    def canceled(self) -> bool:
        """The sender canceled the task (agent.task_update "canceled")."""
        return self.cancel_event.is_set()

    def stream(self) -> ReplyStream:
        """A streamed reply: `with incoming.stream() as s: s.append(...)` (or `async with`)."""
        return ReplyStream(self)

    def set_state(self, state: str, status_text: str | None = None) -> dict:
        """agent.task_update for this task: working, input-required, completed or failed."""
        data = self.agent.client.task_update(self.message.msg_id, state, status_text=status_text)
        self.task_state = state
        return data

    def status(self, text: str, *, ttl_seconds: int | None = None) -> dict:
        """Show a "thinking" status such as "正在查询订单…" in the conversation (up to 120 s;
        cleared by the next message)."""
        return self.agent.client.typing(self.conversation, status_text=text, ttl_seconds=ttl_seconds)

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
        task_states: bool = True,
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
        self.task_states = task_states
        self._streams: dict[str, ReplyStream] = {}  # open streamed replies by msg_id
        self._running: dict[str, Incoming] = {}  # tasks being handled by msg_id
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
            self.client.on("stream", self._on_stream),
            self.client.on("task_status", self._on_task_status),
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
                if message.raw.get("streaming"):
                    continue  # still being written: it arrives as a message at stream_end
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

    def _on_stream(self, event: Event) -> None:
        if event.data.get("type") != "stream_cancel":
            return
        with self._lock:
            stream = self._streams.get(str(event.data.get("msg_id")))
        if stream is not None:
            stream._cancel_noticed()

    def _on_task_status(self, event: Event) -> None:
        if event.data.get("state") != "canceled":
            return
        with self._lock:
            incoming = self._running.get(str(event.data.get("msg_id")))
        if incoming is not None:
            incoming.task_state = "canceled"
            incoming.cancel_event.set()

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
        with self._lock:
            self._running[incoming.message.msg_id] = incoming
        try:
            self._report(incoming, "working")
            result = self.handler(incoming)
            if inspect.isawaitable(result):
                result = self._await(result)
            if result is not None and not incoming.canceled:
                incoming.reply(result)
            if incoming.task_state not in ("input-required", *TERMINAL_STATES):
                self._report(incoming, "completed")
            with self._lock:
                self.handled += 1
        except Exception:  # one failing message must not stop the agent
            self._report(incoming, "failed")
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
        finally:
            with self._lock:
                self._running.pop(incoming.message.msg_id, None)

    def _report(self, incoming: Incoming, state: str) -> None:
        """The runtime's own task states (task_states=True): refusals are logged, never raised."""
        if not (self.task_states and incoming.is_task) or incoming.task_state in TERMINAL_STATES:
            return
        try:
            incoming.set_state(state)
        except MChatError as exc:
            logger.info(
                "agent %s: task %s -> %s: %s", self.client.client_id, incoming.message.msg_id, state, exc
            )

    def _await(self, awaitable: Any) -> Any:
        if self._loop is None:
            return asyncio.run(awaitable)
        return asyncio.run_coroutine_threadsafe(awaitable, self._loop).result()
