"""The MChat client: one MQTT connection of one employee's device.

    from mchat_sdk import Client

    with Client.from_file("zhangsan.json", device="laptop") as client:
        client.on("message", lambda event: print(event.message.text))
        client.send_private("emp_lisi_002", "你好，下午会议改到 3 点。")

What it does for you (interface spec 1.1, 2.3, 2.4, 3.17; DESIGN §2-§4):

- connects as `{employee_id}_{device}` with MQTT 5, TCP_NODELAY, a persistent session (queued
  deliveries survive a disconnect), automatic reconnect;
- publishes a retained `online` status on mchat/status/{employee_id} and leaves an `offline`
  Last Will, both naming the device and client id;
- subscribes to its responses, its inbox, profiles, statuses, system notices, and the topic of
  every group it belongs to (from group.list, then following membership notifications);
- `request(action, **fields)` publishes to mchat/msg/req/{client_id}/{seq_id} and returns the
  response's `data`, or raises the typed error for its code (mchat_sdk.errors); a timeout raises
  RequestTimeout and the same `seq_id` may be sent again safely (the server answers it once);
- decodes deliveries into `Event`s for callbacks (`on`), an async iterator (`events`) or a
  blocking wait (`wait_event`).

Threads: paho's network thread only routes packets; events are decoded and callbacks run on
one delivery thread of the client, so a callback may itself call `request`.

No Django here: this package is a client library and needs only paho-mqtt.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import queue
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from mchat_sdk.actions import Actions
from mchat_sdk.connection import ConnectionInfo, utc_now
from mchat_sdk.deliveries import STOP, Deliveries
from mchat_sdk.errors import (
    ConnectionFailed,
    RateLimited,
    RequestTimeout,
    error_for,
)
from mchat_sdk.events import (
    GROUP_PREFIX,
    INBOX_PREFIX,
    PROFILE_PREFIX,
    RESPONSE_PREFIX,
    STATUS_PREFIX,
    SYSTEM_TOPIC,
    Event,
)

logger = logging.getLogger("mchat_sdk")

DEVICE_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
SEQ_ID_RE = re.compile(r"^[!-\"$-*,-.0-~]{1,128}$")  # printable ASCII without "/", "+", "#"
DEFAULT_REQUEST_TIMEOUT = 15.0
DEFAULT_SESSION_EXPIRY = 24 * 3600
HISTORY_EVENTS = 2000
UNCLAIMED_RESPONSES = 256
UNCLAIMED_SUBACKS = 256


class _Waiter:
    __slots__ = ("done", "response")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.response: dict | None = None


class Client(Actions, Deliveries):
    """One device of one employee. Thread-safe; usable as a context manager."""

    def __init__(
        self,
        connection: ConnectionInfo | Mapping[str, Any],
        *,
        device: str = "sdk",
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        session_expiry: int = DEFAULT_SESSION_EXPIRY,
        keepalive: int = 30,
        track_groups: bool = True,
        reconnect_delay: tuple[int, int] = (1, 30),
    ):
        self.connection = (
            connection if isinstance(connection, ConnectionInfo) else ConnectionInfo.from_mapping(connection)
        )
        if not DEVICE_RE.match(device):
            raise ValueError("device: 1-64 characters of [A-Za-z0-9-] (no '_')")
        self.employee_id = self.connection.employee_id
        self.device = device
        self.client_id = f"{self.employee_id}_{device}"
        self.request_timeout = request_timeout
        self.session_expiry = session_expiry
        self.keepalive = keepalive
        self.track_groups = track_groups

        self.groups: dict[str, dict] = {}  # group_id -> {"group_id", "name", ...}
        self.presence: dict[str, dict] = {}  # employee_id -> latest status payload
        self._lock = threading.RLock()
        self._waiters: dict[str, list[_Waiter]] = {}
        self._unclaimed: collections.OrderedDict[str, dict] = collections.OrderedDict()
        self._callbacks: dict[str, list[Callable[[Event], Any]]] = collections.defaultdict(list)
        self._async_queues: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue, frozenset[str]]] = []
        self._history: collections.deque[Event] = collections.deque(maxlen=HISTORY_EVENTS)
        self._history_cond = threading.Condition()
        # SUBACKs nobody has claimed yet, by mid. Paho calls on_subscribe holding its callback
        # mutex, which its subscribe() may also take: never call paho holding _suback_cond.
        self._subacks: collections.OrderedDict[int, list[int]] = collections.OrderedDict()
        self._base_mid = -1
        self._group_mids: dict[int, threading.Event] = {}
        self._suback_cond = threading.Condition()
        self._group_subscribed: dict[str, threading.Event] = {}
        self._last_seq: dict[str, int] = {}  # conversation key -> newest seq handed out
        self._incoming: queue.Queue = queue.Queue()
        self._connected = threading.Event()
        self._connack: threading.Event = threading.Event()
        self._connack_failure: str | None = None
        self._first_connect_done = False
        self._closing = False
        self._delivery_thread: threading.Thread | None = None

        self._mqtt = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        self._mqtt.username_pw_set(self.connection.mqtt_username, self.connection.mqtt_password)
        self._mqtt.on_socket_open = _nodelay
        self._mqtt.on_connect = self._on_connect
        self._mqtt.on_disconnect = self._on_disconnect
        self._mqtt.on_message = self._on_message
        self._mqtt.on_subscribe = self._on_subscribe
        self._mqtt.reconnect_delay_set(min_delay=reconnect_delay[0], max_delay=reconnect_delay[1])
        self._mqtt.max_inflight_messages_set(100)
        if self.connection.use_tls:
            self._mqtt.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        self._set_will()

    @classmethod
    def from_file(cls, path: str | Path, **options: Any) -> Client:
        """A client for the `mqtt_connection` saved in a JSON file."""
        return cls(ConnectionInfo.from_file(path), **options)

    # --- lifecycle -----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def connect(self, timeout: float = 10.0) -> Client:
        """Connect, subscribe, announce `online`, and join the employee's group topics.

        Raises ConnectionFailed if the broker refuses or cannot be reached in `timeout`.
        After this returns the client reconnects by itself whenever the connection drops.
        """
        if self._delivery_thread is None:
            self._delivery_thread = threading.Thread(
                target=self._deliver_forever,
                name=f"mchat-sdk-{self.client_id}",
                daemon=True,
            )
            self._delivery_thread.start()
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.session_expiry
        try:
            self._mqtt.connect_async(
                self.connection.broker_host,
                self.connection.broker_port,
                keepalive=self.keepalive,
                clean_start=False,
                properties=properties,
            )
        except (OSError, ValueError) as exc:
            raise ConnectionFailed(f"cannot connect to the broker: {exc}") from None
        self._mqtt.loop_start()
        deadline = time.monotonic() + timeout
        if not self._connack.wait(timeout) or self._connack_failure is not None:
            reason = (
                self._connack_failure
                or f"no answer from {self.connection.broker_host}:{self.connection.broker_port}"
            )
            self._shutdown_network()
            raise ConnectionFailed(f"broker refused {self.client_id}: {reason}")
        if not self._wait_subscribed(self._base_mid, max(0.1, deadline - time.monotonic())):
            self._shutdown_network()
            raise ConnectionFailed("the broker did not confirm the subscriptions")
        self._first_connect_done = True
        if self.track_groups:
            self.sync_groups(timeout=max(1.0, deadline - time.monotonic()))
        return self

    def close(self, timeout: float = 5.0, *, end_session: bool = False) -> None:
        """Announce `offline`, disconnect and stop the client's threads (callbacks already
        running finish first). The broker keeps the session, and queues this device's
        deliveries, for `session_expiry` seconds unless `end_session` is true."""
        if self._closing:
            return
        self._closing = True
        if self._connected.is_set():
            info = self._mqtt.publish(self._status_topic, self._status_payload("offline"), qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass
        self._shutdown_network(end_session=end_session)
        self._incoming.put(STOP)
        thread = self._delivery_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._fail_waiters()

    def __enter__(self) -> Self:
        if not self._first_connect_done:
            self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _shutdown_network(self, *, end_session: bool = False) -> None:
        properties = None
        if end_session:
            properties = Properties(PacketTypes.DISCONNECT)
            properties.SessionExpiryInterval = 0
        try:
            self._mqtt.disconnect(properties=properties)
        finally:
            self._mqtt.loop_stop()
            self._connected.clear()

    # --- requests ------------------------------------------------------------------------------

    def call(
        self,
        action: str,
        *,
        seq_id: str | None = None,
        timeout: float | None = None,
        **fields: Any,
    ) -> dict:
        """Send one request and return the whole response {seq_id, code, message, data}.

        Never raises for a non-zero code; raises RequestTimeout if nothing arrives in time.
        """
        seq_id = seq_id or uuid.uuid4().hex
        if not SEQ_ID_RE.match(seq_id):
            raise ValueError("seq_id: 1-128 printable ASCII characters without '/', '+', '#'")
        if self._closing:
            raise ConnectionFailed("the client is closed", action=action, seq_id=seq_id)
        timeout = self.request_timeout if timeout is None else timeout
        body = json.dumps({"action": action, **fields}, ensure_ascii=False, separators=(",", ":"))
        waiter = self._register(seq_id)
        try:
            if waiter.response is None:
                info = self._mqtt.publish(f"mchat/msg/req/{self.client_id}/{seq_id}", body, qos=1)
                if info.rc not in (
                    MQTTErrorCode.MQTT_ERR_SUCCESS,
                    MQTTErrorCode.MQTT_ERR_NO_CONN,
                ):
                    raise ConnectionFailed(mqtt.error_string(info.rc), action=action, seq_id=seq_id)
                # Not connected: paho keeps the QoS 1 publish and sends it after reconnecting.
            if not waiter.done.wait(timeout) or waiter.response is None:
                raise RequestTimeout(
                    f"no response to {action} within {timeout:g} s; retrying with seq_id={seq_id} is safe",
                    action=action,
                    seq_id=seq_id,
                )
            return waiter.response
        finally:
            self._unregister(seq_id, waiter)

    def request(
        self,
        action: str,
        *,
        seq_id: str | None = None,
        timeout: float | None = None,
        retries: int = 0,
        **fields: Any,
    ) -> dict:
        """Send a request and return its `data`; raise the typed error for a non-zero code.

        With `retries`, a timeout or a 429 is retried with the same seq_id (after
        `retry_after_ms` for 429): the server executes a request at most once.
        """
        seq_id = seq_id or uuid.uuid4().hex
        attempt = 0
        while True:
            try:
                response = self.call(action, seq_id=seq_id, timeout=timeout, **fields)
            except RequestTimeout:
                if attempt >= retries:
                    raise
                attempt += 1
                continue
            code = response.get("code")
            if code == 0:
                data = response.get("data")
                return data if data is not None else {}
            error = error_for(response, action=action)
            if isinstance(error, RateLimited) and attempt < retries:
                attempt += 1
                time.sleep(max(error.retry_after_ms, 50) / 1000)
                continue
            raise error

    async def arequest(self, action: str, **options: Any) -> dict:
        """`request` for asyncio code (runs in a worker thread)."""
        return await asyncio.to_thread(self.request, action, **options)

    def _register(self, seq_id: str) -> _Waiter:
        waiter = _Waiter()
        with self._lock:
            self._waiters.setdefault(seq_id, []).append(waiter)
            early = self._unclaimed.pop(seq_id, None)
        if early is not None:  # answered after an earlier attempt gave up: that is the answer
            waiter.response = early
            waiter.done.set()
        return waiter

    def _unregister(self, seq_id: str, waiter: _Waiter) -> None:
        with self._lock:
            waiters = self._waiters.get(seq_id, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._waiters.pop(seq_id, None)

    def _resolve(self, seq_id: str, response: dict) -> None:
        with self._lock:
            waiters = self._waiters.get(seq_id)
            if not waiters:
                self._unclaimed[seq_id] = response
                while len(self._unclaimed) > UNCLAIMED_RESPONSES:
                    self._unclaimed.popitem(last=False)
                return
            for waiter in waiters:
                waiter.response = response
                waiter.done.set()

    def _fail_waiters(self) -> None:
        with self._lock:
            waiters = [w for ws in self._waiters.values() for w in ws]
        for waiter in waiters:
            waiter.done.set()  # response stays None: RequestTimeout

    # --- paho callbacks (network thread: route, never work) ------------------------------------

    @property
    def _status_topic(self) -> str:
        return STATUS_PREFIX + self.employee_id

    def _status_payload(self, status: str) -> str:
        return json.dumps(
            {
                "status": status,
                "updated_at": utc_now(),
                "device": self.device,
                "client_id": self.client_id,
            },
            separators=(",", ":"),
        )

    def _set_will(self) -> None:
        # Read by paho at each (re)connect: refreshed after every disconnect so its time is recent.
        self._mqtt.will_set(self._status_topic, self._status_payload("offline"), qos=1, retain=True)

    def _base_topics(self) -> list[str]:
        return [
            f"{RESPONSE_PREFIX}{self.client_id}/+",
            INBOX_PREFIX + self.employee_id,
            PROFILE_PREFIX + "+",
            STATUS_PREFIX + "+",
            SYSTEM_TOPIC,
        ]

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._connack_failure = str(reason_code)
            logger.warning("%s: broker refused the connection: %s", self.client_id, reason_code)
            if not self._first_connect_done:
                self._connack.set()
            return
        topics = self._base_topics()
        with self._lock:
            topics += [GROUP_PREFIX + gid for gid in self.groups]
        # On the network thread: its SUBACK cannot be handled before this callback returns.
        _result, mid = client.subscribe([(t, SubscribeOptions(qos=1)) for t in topics])
        self._base_mid = mid
        client.publish(self._status_topic, self._status_payload("online"), qos=1, retain=True)
        self._connack_failure = None
        self._connected.set()
        self._connack.set()
        self._incoming.put(
            (
                "connection",
                {"state": "connected", "session_present": bool(flags.session_present)},
            )
        )

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        self._set_will()
        if not self._closing:
            logger.info("%s disconnected (%s); reconnecting", self.client_id, reason_code)
            self._incoming.put(("connection", {"state": "disconnected", "reason": str(reason_code)}))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        with self._suback_cond:
            group_ready = self._group_mids.pop(mid, None)
            if group_ready is not None:
                group_ready.set()
            else:  # claimed by _wait_subscribed, or by _join_group_topic after its subscribe()
                self._subacks[mid] = [int(code.value) for code in reason_codes]
                while len(self._subacks) > UNCLAIMED_SUBACKS:
                    self._subacks.popitem(last=False)
            self._suback_cond.notify_all()

    def _wait_subscribed(self, mid: int, timeout: float) -> bool:
        with self._suback_cond:
            done = self._suback_cond.wait_for(lambda: bool(self._subacks.get(mid)), timeout)
            self._subacks.pop(mid, None)
            return done

    def _on_message(self, client, userdata, message) -> None:
        topic = message.topic
        prefix = f"{RESPONSE_PREFIX}{self.client_id}/"
        if topic.startswith(prefix):
            try:
                response = json.loads(message.payload)
            except ValueError:
                logger.warning("%s: undecodable response on %s", self.client_id, topic)
                return
            if isinstance(response, dict):
                self._resolve(topic[len(prefix) :], response)
            return
        self._incoming.put(("delivery", topic, message.payload))


def _nodelay(client, userdata, sock) -> None:
    # Without TCP_NODELAY one request in flight waits ~40-90 ms for Nagle + delayed ACK.
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass
