"""paho-mqtt wiring only: connection settings, TCP_NODELAY, sessions, the bridge's loop."""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from django.conf import settings
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from bridge import metrics, status
from bridge.dispatch import Dispatcher
from bridge.gathering import GatheringClient
from bridge.periodic import PeriodicJobs
from mchat import outbox, wire

logger = logging.getLogger("mchat.bridge")

SESSION_EXPIRY_SECONDS = 7 * 24 * 3600
RECONNECT_MIN_SECONDS, RECONNECT_MAX_SECONDS = 1.0, 10.0


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def broker_address() -> BrokerAddress:
    url = urlparse(settings.MCHAT_MQTT_URL)
    tls = url.scheme in {"mqtts", "ssl", "tls"}
    return BrokerAddress(url.hostname or "127.0.0.1", url.port or (8883 if tls else 1883), tls)


def _nodelay(client, userdata, sock) -> None:
    # Without TCP_NODELAY on both ends one request in flight takes ~88 ms instead of ~0.2 ms.
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


class _PahoThreadLog(logging.LoggerAdapter):
    """paho's log for a client run by paho's own thread (loop_start), but for one line: after a
    connect attempt that failed (the broker not up yet, or restarting), that thread logs ERROR
    "Client is not connected" before it tries again. That is the expected wait, not an error:
    it goes to DEBUG, and the failed attempt itself is a warning (`server_publisher_client`)."""

    def log(self, level, msg, *args, **kwargs) -> None:
        if level == logging.ERROR and str(msg).startswith("Client is not connected"):
            level = logging.DEBUG
        super().log(level, msg, *args, **kwargs)


def make_client(
    client_id: str, *, manual_ack: bool = False, client_class: type[mqtt.Client] = mqtt.Client
) -> mqtt.Client:
    """A paho client logged in as the bridge's own broker user."""
    client = client_class(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    client.username_pw_set(settings.MCHAT_BRIDGE_USERNAME, settings.MCHAT_BRIDGE_PASSWORD)
    client.on_socket_open = _nodelay
    client.enable_logger(logging.getLogger("mchat.bridge.mqtt"))  # packets, at DEBUG
    client.reconnect_delay_set(min_delay=1, max_delay=10)
    # Unlimited: with a limit paho rescans every unacknowledged publish on each PUBACK.
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    if broker_address().tls:
        # The broker's certificate is verified (host name included) against MCHAT_TLS_CA, or
        # the system's CAs when it is unset.
        client.tls_set(ca_certs=settings.MCHAT_TLS_CA or None)
    return client


def connect_async(client: mqtt.Client, *, persistent: bool, receive_maximum: int | None = None) -> None:
    address = broker_address()
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = SESSION_EXPIRY_SECONDS if persistent else 0
    if receive_maximum is not None:
        # At most this many unacknowledged QoS 1 messages from the broker at a time (MQTT 5).
        properties.ReceiveMaximum = receive_maximum
    client.connect_async(
        address.host, address.port, keepalive=30, clean_start=not persistent, properties=properties
    )


def receive_maximum() -> int:
    """Unacknowledged requests the broker may send a bridge at once: a few batches' worth."""
    return 4 * settings.MCHAT_BRIDGE_BATCH


def _session_end() -> Properties:
    properties = Properties(PacketTypes.DISCONNECT)
    properties.SessionExpiryInterval = 0
    return properties


def server_publisher_client() -> mqtt.Client:
    """For processes that publish but serve no requests (web admin, Celery workers)."""
    device = f"srv-{socket.gethostname()[:40]}-{os.getpid()}".replace("_", "-")
    client = make_client(f"{settings.MCHAT_BRIDGE_USERNAME}_{device}")
    client.enable_logger(_PahoThreadLog(logging.getLogger("mchat.bridge.mqtt")))
    address = broker_address()
    # Until the broker answers, paho's thread retries (1 s doubling to 10 s) and what is
    # published waits for the connection (QoS 1).
    client.on_connect_fail = lambda client, userdata: logger.warning(
        "cannot reach the broker at %s:%d; retrying", address.host, address.port
    )
    connect_async(client, persistent=False)
    client.loop_start()
    return client


class BridgeClient:
    """Receives requests (persistent session, manual acks) and dispatches what has arrived
    in batches (see bridge.dispatch).

    A request is acknowledged to the broker only after it has been answered, so a crash
    before that leaves it with the broker, which redelivers it to the next session; the
    idempotency record makes the redelivery harmless.

    One thread does everything: it runs paho's network loop itself (loop_read, loop_write,
    loop_misc on its own select) between batches, with no hand-over to a network thread; what
    a batch publishes and acknowledges is gathered (GatheringSocket) and written once, when the
    batch is done. Other threads of
    the process (timers, tests) publish through `publish`, which passes the message to the
    loop thread.
    """

    def __init__(self, *, instance: str, shared: bool, keep_session: bool = True):
        self.keep_session = keep_session
        self.client_id = f"{settings.MCHAT_BRIDGE_USERNAME}_{instance}"
        shared_filter = f"$share/{wire.SHARED_GROUP}/{wire.REQUEST_FILTER}"
        self.filter = shared_filter if shared else wire.REQUEST_FILTER
        self._other_filter = wire.REQUEST_FILTER if shared else shared_filter
        # Received and not answered yet, each with the connection it came on (loop thread only).
        self._pending: list[tuple] = []
        self._connection = 0  # counts successful connects: an ack belongs to its connection
        self._accepting = False
        self._loop_thread: threading.Thread | None = None
        self._handoff: deque[tuple[str, bytes, int, bool, Future | None]] = deque()
        self._handoff_lock = threading.Lock()
        self._handoff_closed = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._reconnect_at = 0.0
        self._reconnect_delay = RECONNECT_MIN_SECONDS
        self.connected = threading.Event()
        self.client = make_client(self.client_id, manual_ack=True, client_class=GatheringClient)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_plain_message = self._received
        self.client.on_subscribe = self._on_subscribe
        self._request_sub_mid: int | None = None
        self.dispatcher = Dispatcher(LoopPublisher(self))
        self.periodic = PeriodicJobs(settings.MCHAT_BRIDGE_PERIODIC)
        outbox.install(self.dispatcher.publisher)
        self.metrics = metrics.RequestMetrics()
        self.last_turn = time.monotonic()  # the loop's last pass (liveness)

    def publish_queue_length(self) -> int:
        """Packets waiting to be written to the broker (a gauge; read from another thread)."""
        return len(self._handoff) + len(getattr(self.client, "_out_packet", ()))

    # --- paho callbacks (all in the loop thread) ----------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            logger.error("broker refused the bridge: %s", reason_code)
            return
        self._reconnect_delay = RECONNECT_MIN_SECONDS
        self._connection += 1
        metrics.CONNECTS.inc()
        # Subscriptions are restored on every (re)connect; a persistent session that switched
        # between shared and plain mode must not keep the other filter.
        _, self._request_sub_mid = client.subscribe(self.filter, qos=1)
        # Presence (org.presence): never shared, so every bridge sees each employee's status
        # messages in order; retained ones only when the subscription is new (a fresh session).
        client.subscribe(wire.STATUS_FILTER, options=SubscribeOptions(qos=1, retainHandling=1))
        if flags.session_present:
            client.unsubscribe(self._other_filter)
        logger.info("bridge %s connected, subscribing to %s", self.client_id, self.filter)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        # Serving only once the broker has confirmed the request subscription: a request
        # sent before that, by a clean session, would reach nobody.
        if mid == self._request_sub_mid:
            if any(code.is_failure for code in reason_codes):
                logger.error("broker refused the request subscription: %s", reason_codes)
                return
            self.connected.set()
            logger.info("bridge %s subscribed to %s", self.client_id, self.filter)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        metrics.DISCONNECTS.inc()
        # Unanswered requests of this connection come back with the session; serving them now
        # too would only answer them twice.
        self._pending.clear()
        self._reconnect_later()
        if reason_code.is_failure:
            logger.warning("bridge disconnected (%s); reconnecting", reason_code)

    def _reconnect_later(self) -> None:
        self._reconnect_at = time.monotonic() + self._reconnect_delay
        self._reconnect_delay = min(self._reconnect_delay * 2, RECONNECT_MAX_SECONDS)

    def _on_message(self, client, userdata, message) -> None:
        self._received(message.topic, message.payload, message.mid, message.qos)

    def _received(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        if self._accepting:
            self._pending.append((topic, payload, mid, qos, self._connection))
        # else: shutting down; left unacknowledged, the broker redelivers it next session

    # --- publishing from any thread -----------------------------------------------------------

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> Future:
        """Publish from any thread; the Future gives paho's MQTTMessageInfo once it is queued."""
        future: Future = Future()
        if self._loop_thread is None or threading.current_thread() is self._loop_thread:
            future.set_result(self.client.publish(topic, payload, qos=qos, retain=retain))
            return future
        self._hand_over(topic, payload, qos, retain, future)
        return future

    def publish_nowait(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """`publish` for a caller that does not look at the outcome (the dispatcher's answers and
        deliveries, three per message): on the loop thread straight into the gathered write,
        without a Future each."""
        if self._loop_thread is None or threading.current_thread() is self._loop_thread:
            self.client.publish(topic, payload, qos=qos, retain=retain)
        else:
            self._hand_over(topic, payload, qos, retain, None)

    def _hand_over(self, topic: str, payload: bytes, qos: int, retain: bool, future: Future | None) -> None:
        with self._handoff_lock:
            queued = not self._handoff_closed
            if queued:
                self._handoff.append((topic, payload, qos, retain, future))
        if not queued:
            logger.warning("the bridge is stopping: nothing more is published (%s)", topic)
            if future is not None:
                future.set_exception(RuntimeError("the bridge is stopping"))
            return
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already awake, or closing

    def _publish_handed_over(self) -> None:
        while self._handoff:
            topic, payload, qos, retain, future = self._handoff.popleft()
            try:
                info = self.client.publish(topic, payload, qos=qos, retain=retain)
            except Exception as exc:
                logger.exception("publishing on %s for another thread failed", topic)
                if future is not None:
                    future.set_exception(exc)
                continue
            if future is not None:
                future.set_result(info)

    # --- the loop -----------------------------------------------------------------------------

    def _network(self, timeout: float) -> None:
        """One pass of the network loop: connect if due, wait up to `timeout` for traffic,
        read what has arrived (on_message queues requests), write what is due, keepalive."""
        sock = self.client.socket()
        if sock is None:
            self._connect(timeout)
            return
        if sock.pending():
            timeout = 0  # received already: select() would not see it
        want_write = [sock] if self.client.want_write() or sock.unsent() else []
        try:
            readable, _, _ = select.select([sock, self._wake_r], want_write, [], timeout)
        except (OSError, ValueError):
            readable = [sock]  # paho's read finds out what is wrong with the socket
        if self._wake_r in readable:
            try:
                self._wake_r.recv(4096)
            except BlockingIOError:
                pass
        if sock in readable or sock.pending():
            self._read_available(sock)
        self._publish_handed_over()
        if self.client.socket() is not None:
            if self.client.want_write():
                self.client.loop_write()
            self.client.loop_misc()
        self._flush()

    def _flush(self) -> None:
        sock = self.client.socket()
        if sock is not None:
            sock.flush()

    def _read_available(self, sock) -> None:
        """Read what has arrived: always one pass (acknowledgements and PINGRESP must not wait
        behind a backlog; the broker sends at most receive_maximum() unacknowledged requests),
        then on while more is waiting and less than a batch is in hand."""
        while True:
            if self.client.loop_read() != mqtt.MQTT_ERR_SUCCESS or self.client.socket() is not sock:
                return
            if len(self._pending) >= settings.MCHAT_BRIDGE_BATCH:
                return
            if not sock.pending() and not select.select([sock], [], [], 0)[0]:
                return

    def _connect(self, timeout: float) -> None:
        wait = self._reconnect_at - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, timeout))
            return
        try:
            self.client.reconnect()
        except OSError as exc:
            logger.warning("cannot reach the broker (%s); retrying", exc)
            self._reconnect_later()

    def _serve_pending(self) -> None:
        started = time.monotonic()
        batch = self._pending[: settings.MCHAT_BRIDGE_BATCH]
        del self._pending[: len(batch)]
        # Status messages are not requests: org.presence, no reply, never a dispatch.
        requests = [(t, p) for t, p, *_ in batch if not status.is_status_topic(t)]
        for topic, payload, *_ in batch:
            if status.is_status_topic(topic):
                status.handle_status_message(topic, payload)
        outcomes = self.dispatcher.handle_batch(requests) if requests else ()
        for _, _, mid, qos, connection in batch:
            # A packet id means something only on the connection it came on; after a reconnect
            # the broker redelivers the unacknowledged request (answered again from its record).
            if qos and connection == self._connection and self.client.socket() is not None:
                self.client.ack(mid, qos)
        self._flush()  # the batch's answers, deliveries and acknowledgements, in one write
        seconds = time.monotonic() - started
        self.metrics.batch(len(batch), seconds, outcomes)
        took = seconds * 1000
        if took > settings.MCHAT_BRIDGE_SLOW_MS:
            logger.warning("slow batch: %d requests served in %.0f ms", len(batch), took)

    def _confirm_acks(self) -> None:
        """Make sure the broker has taken our acknowledgements before we go.

        Requests keep arriving until the very end, so closing the socket may reset the
        connection, and a reset makes the broker drop what it had not read yet: acknowledged
        requests would come back to the next session. The broker reads in order, so once it
        confirms a publish sent after our acks, it has processed them.
        """
        if self.client.socket() is None:
            return
        info = self.client.publish(f"mchat/bridge/{self.client_id}/stopping", b"", qos=1)
        deadline = time.monotonic() + 5
        while not info.is_published() and self.client.socket() is not None:
            if time.monotonic() > deadline:
                logger.warning("could not confirm the last acknowledgements before stopping")
                return
            self._network(0.05)

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set, then answer what was already received and disconnect."""
        self._loop_thread = threading.current_thread()
        self._accepting = True
        connect_async(self.client, persistent=True, receive_maximum=receive_maximum())
        try:
            while not stop.is_set() or self._pending:
                if stop.is_set():
                    self._accepting = False
                self._network(0 if self._pending else 0.2)
                self.last_turn = time.monotonic()
                if self._pending:
                    self._serve_pending()
                # After the batch: a request that has arrived never waits for a job that is due
                # (the agent-wait sweep is a database round trip five times a second).
                self.periodic.run_due()
        finally:
            self._accepting = False
            with self._handoff_lock:
                self._handoff_closed = True
            self._publish_handed_over()
            self._confirm_acks()
            self.client.disconnect(properties=None if self.keep_session else _session_end())
            deadline = time.monotonic() + 2
            while self.client.socket() is not None and time.monotonic() < deadline:
                self._network(0.05)
            self._loop_thread = None
            self._wake_r.close()
            self._wake_w.close()
            logger.info("bridge %s stopped", self.client_id)


class LoopPublisher:
    """The bridge process's Publisher: the bridge's own connection, from any thread."""

    def __init__(self, bridge: BridgeClient) -> None:
        self._bridge = bridge

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        self._bridge.publish_nowait(topic, payload, qos=qos, retain=retain)
