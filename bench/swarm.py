"""Many paho MQTT clients driven by one selector thread.

A thread per client (paho's `loop_start`) does not scale to the 1,000 members of a fan-out
group, and a busy requester with its own thread fights the others for the GIL. Here every
client runs on paho's external-loop API (`loop_read`/`loop_write`/`loop_misc`) inside one
thread; everything that touches a client (connect, subscribe, publish) runs in that thread,
submitted with `call` or scheduled with `call_at`. Times are `time.monotonic()`, which is
CLOCK_MONOTONIC on Linux and therefore comparable across processes.

The clients are the bridge's own (bridge.gathering.GatheringClient): a usual QoS 1 publish, a
received plain PUBLISH and its PUBACK skip paho's per-packet objects, and what a pass of the
loop writes leaves in one send per connection. The same packets go on the wire; the load
generator and the receivers share this 2-core machine with what they measure, and paho's
objects were most of their CPU.
"""

from __future__ import annotations

import heapq
import itertools
import math
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bridge.gathering import GatheringClient

MISC_INTERVAL = 1.0


class SwarmError(RuntimeError):
    pass


class Received:
    """What on_message callbacks read of a received message."""

    __slots__ = ("payload", "topic")

    def __init__(self, topic: str, payload: bytes) -> None:
        self.topic, self.payload = topic, payload


class _Client(GatheringClient):
    """Tells its swarm when it has gathered bytes to write."""

    _dirty: set

    def _gather(self, packet: bytes) -> None:
        super()._gather(packet)
        self._dirty.add(self)


class Swarm:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._calls: deque[Callable[[], Any]] = deque()
        self._timers: list[tuple[float, int, Callable[[], Any]]] = []
        self._timer_seq = itertools.count()
        self._clients: list[mqtt.Client] = []
        self._writers: set[mqtt.Client] = set()  # paho has packets queued
        self._dirty: set[mqtt.Client] = set()  # bytes gathered in the client's socket
        self._stop = False
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> Swarm:
        self._thread = threading.Thread(target=self._run, name="swarm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return

        def disconnect_all() -> None:
            for client in self._clients:
                try:
                    client.disconnect()
                    client.loop_write()
                except Exception:
                    pass
            self._stop = True

        self.call(disconnect_all)
        self._thread.join(10)
        self._thread = None
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    # --- scheduling -----------------------------------------------------------------------

    def call(self, fn: Callable[[], Any]) -> None:
        """Run `fn` in the swarm thread soon (thread-safe)."""
        self._calls.append(fn)
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass

    def call_wait(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Run `fn` in the swarm thread and return its result."""
        done = threading.Event()
        box: dict[str, Any] = {}

        def wrapper() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:
                box["error"] = exc
            done.set()

        self.call(wrapper)
        if not done.wait(timeout):
            raise SwarmError("swarm thread did not run the call in time")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def call_at(self, when: float, fn: Callable[[], Any]) -> None:
        """Swarm thread only: run `fn` at monotonic time `when`."""
        heapq.heappush(self._timers, (when, next(self._timer_seq), fn))

    # --- clients --------------------------------------------------------------------------

    def connect_many(
        self,
        logins: list[tuple[str, str, str]],
        *,
        on_message: Callable[[mqtt.Client, mqtt.MQTTMessage], None] | None = None,
        subscriptions: list[list[str]] | None = None,
        timeout: float = 60.0,
        batch: int = 100,
    ) -> list[mqtt.Client]:
        """Connect (username, password, client_id) logins and subscribe each to its topics
        (QoS 1); return once every CONNACK and SUBACK has arrived."""
        pending = {"connack": 0, "suback": 0, "refused": []}
        cond = threading.Condition()
        clients: list[mqtt.Client] = []
        subscriptions = subscriptions or [[] for _ in logins]
        wanted_subacks = sum(1 for topics in subscriptions if topics)

        def on_connect(client, userdata, flags, reason_code, properties) -> None:
            with cond:
                if reason_code.is_failure:
                    pending["refused"].append(f"{client._client_id.decode()}: {reason_code}")
                else:
                    topics = userdata["topics"]
                    if topics:
                        client.subscribe([(t, 1) for t in topics])
                pending["connack"] += 1
                cond.notify_all()

        def on_subscribe(client, userdata, mid, reason_codes, properties) -> None:
            with cond:
                pending["suback"] += 1
                cond.notify_all()

        def _deliver(client, topic: str, payload: bytes, mid: int, qos: int) -> None:
            if on_message is not None:
                on_message(client, Received(topic, payload))
            if qos:
                client.ack(mid, qos)

        def create(chunk: list[tuple[int, tuple[str, str, str]]]) -> None:
            for index, (username, password, client_id) in chunk:
                client = self._new_client(client_id, {"topics": subscriptions[index]})
                client.username_pw_set(username, password)
                client.on_connect = on_connect
                client.on_subscribe = on_subscribe
                client.on_message = lambda c, u, m: _deliver(c, m.topic, m.payload, m.mid, m.qos)
                client.on_plain_message = lambda t, p, mid, qos, c=client: _deliver(c, t, p, mid, qos)
                client.connect(self.host, self.port, keepalive=60)
                clients.append(client)

        indexed = list(enumerate(logins))
        deadline = time.monotonic() + timeout
        for start in range(0, len(indexed), batch):
            chunk = indexed[start : start + batch]
            self.call_wait(lambda chunk=chunk: create(chunk), timeout)
            with cond:
                # Pace the CONNECTs: a burst of hundreds of PBKDF2 checks stalls the broker.
                wanted = start + len(chunk)
                cond.wait_for(
                    lambda wanted=wanted: pending["connack"] >= wanted,
                    max(0.0, deadline - time.monotonic()),
                )
        with cond:
            ok = cond.wait_for(
                lambda: (
                    pending["connack"] >= len(logins)
                    and pending["suback"] >= wanted_subacks - len(pending["refused"])
                ),
                max(0.0, deadline - time.monotonic()),
            )
        if pending["refused"]:
            raise SwarmError(f"broker refused {len(pending['refused'])} logins: {pending['refused'][:3]}")
        if not ok:
            raise SwarmError(
                f"connected {pending['connack']}/{len(logins)}, "
                f"subscribed {pending['suback']}/{wanted_subacks} within {timeout} s"
            )
        return clients

    def _new_client(self, client_id: str, userdata: Any) -> mqtt.Client:
        client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            userdata=userdata,
            manual_ack=True,  # acknowledged once on_message has run (as paho does by itself)
        )
        client._dirty = self._dirty
        # Unlimited: with a limit paho rescans every unacknowledged publish on each PUBACK.
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._register_write
        client.on_socket_unregister_write = self._unregister_write
        self._clients.append(client)
        return client

    # --- paho external-loop callbacks (swarm thread) --------------------------------------

    def _socket_open(self, client, userdata, sock) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._selector.register(sock, selectors.EVENT_READ, client)

    def _socket_close(self, client, userdata, sock) -> None:
        self._writers.discard(client)
        self._dirty.discard(client)
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass

    def _register_write(self, client, userdata, sock) -> None:
        self._writers.add(client)

    def _unregister_write(self, client, userdata, sock) -> None:
        self._writers.discard(client)

    # --- the loop -------------------------------------------------------------------------

    def _run(self) -> None:
        next_misc = time.monotonic() + MISC_INTERVAL
        while not self._stop:
            self._flush_writes()
            now = time.monotonic()
            timeout = 0.05
            timer_first = False
            if self._timers:
                due_in = self._timers[0][0] - now
                if due_in < timeout:
                    # epoll waits in whole milliseconds, rounded up: a timer would fire up to
                    # 1 ms late, and open-loop latency counts from the scheduled time. Wait in
                    # whole milliseconds rounded down, then sleep (sub-millisecond) the rest.
                    timeout, timer_first = max(0.0, math.floor(due_in * 1e3) * 1e-3), True
            if self._calls:
                timeout, timer_first = 0.0, False
            try:
                events = self._selector.select(timeout)
            except OSError as exc:
                self.errors.append(f"select: {exc}")
                continue
            if timer_first and not events:
                rest = self._timers[0][0] - time.monotonic()
                if rest > 0:
                    time.sleep(rest)
            for key, mask in events:
                client = key.data
                if client is None:
                    try:
                        self._wake_r.recv(65536)
                    except BlockingIOError:
                        pass
                    continue
                if mask & selectors.EVENT_READ:
                    client.loop_read_buffered()
            while self._calls:
                self._calls.popleft()()
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, fn = heapq.heappop(self._timers)
                fn()
            if now >= next_misc:
                for client in self._clients:
                    client.loop_misc()
                next_misc = now + MISC_INTERVAL

    def _flush_writes(self) -> None:
        for client in list(self._writers):
            client.loop_write()  # into the client's socket, which gathers it
            self._dirty.add(client)
        for client in list(self._dirty):
            sock = client.socket()
            if sock is not None:
                sock.flush()
            # A socket that cannot take everything now stays dirty; wait for writability.
            if sock is not None and sock.unsent():
                try:
                    self._selector.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, client)
                except (KeyError, ValueError):
                    pass
                continue
            self._dirty.discard(client)
            if sock is not None:
                try:
                    key = self._selector.get_key(sock)
                    if key.events & selectors.EVENT_WRITE:
                        self._selector.modify(sock, selectors.EVENT_READ, client)
                except (KeyError, ValueError):
                    pass
