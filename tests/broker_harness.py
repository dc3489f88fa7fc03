"""A private Mosquitto (with the MChat plugin) and real MQTT clients, for integration tests.

No Django here. Typical use:

    with BrokerHarness(tmp_path, users={"emp_a": "pw-a"}, acl=ACL) as broker:
        client = mqtt_client(broker.port, "emp_a", "pw-a", "emp_a_dev1")
        client.subscribe("mchat/inbox/emp_a", qos=1)
        ...
        assert client.wait_for(lambda msgs: any(m.topic == "..." for m in msgs), timeout=2)

Every wait is bounded; `BrokerHarness.stop()` stops the broker by its pid.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.broker import (
    DEFAULT_BRIDGE_USER,
    BrokerPaths,
    MosquittoProcess,
    build_plugin,
    free_port,
    password_line,
    render_config,
    request_kick,
    write_atomically,
)
from org.credentials import hash_password

CONNECT_TIMEOUT = 5.0


class BrokerHarness:
    """Builds the plugin, writes passwd/acl/groups into `directory`, runs Mosquitto on a free port."""

    def __init__(
        self,
        directory: Path,
        *,
        users: Mapping[str, str] | None = None,
        acl: str = "",
        groups: Iterable[tuple[str, str]] = (),
        bridge_user: str = DEFAULT_BRIDGE_USER,
        start: bool = True,
    ) -> None:
        build_plugin()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.paths = BrokerPaths(self.directory.resolve())
        self.bridge_user = bridge_user
        self.port = 0
        self.process: MosquittoProcess | None = None
        self.write_passwd(users or {})
        self.write_acl(acl)
        self.write_groups(groups)
        if start:
            self.start()

    def start(self) -> None:
        # free_port() can race with another process taking the port: try a few.
        for attempt in range(3):
            self.port = free_port()
            conf = render_config(port=self.port, directory=self.directory, bridge_user=self.bridge_user)
            self.process = MosquittoProcess(conf)
            try:
                self.process.start()
                return
            except RuntimeError:
                if attempt == 2:
                    raise

    def write_passwd(self, users: Mapping[str, str]) -> None:
        """Replace the password file: username -> plain password."""
        lines = [password_line(name, hash_password(pw)) for name, pw in users.items()]
        write_atomically(self.paths.passwd, "".join(f"{line}\n" for line in lines))

    def write_acl(self, text: str) -> None:
        write_atomically(self.paths.acl, text)

    def write_groups(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Replace the membership file: (group_id, employee_id) pairs."""
        write_atomically(self.paths.groups, "".join(f"{gid} {eid}\n" for gid, eid in pairs))

    def request_kick(self, usernames: Iterable[str]) -> None:
        """Disconnect these users' live sessions at the next reload."""
        request_kick(self.paths.kick, usernames)

    def reload(self) -> None:
        """SIGHUP; returns once the broker has applied the files."""
        assert self.process is not None
        self.process.reload()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def log(self) -> str:
        try:
            return self.paths.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class TestClient(mqtt.Client):
    """A paho client that records what it receives and how it was disconnected."""

    __test__ = False  # not a pytest test class

    def __init__(self, client_id: str, *, reconnect: bool) -> None:
        super().__init__(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
        )
        self._cond = threading.Condition()
        self._received: list[Received] = []
        self.connack: int | None = None
        self.disconnect_reason: int | None = None
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.on_socket_open = _set_nodelay
        self.on_connect = self._record_connect
        self.on_disconnect = self._record_disconnect
        self.on_message = self._record_message
        self.on_subscribe = self._record_suback
        self._subacks: dict[int, int] = {}
        self._reconnect = reconnect

    @property
    def messages(self) -> list[Received]:
        with self._cond:
            return list(self._received)

    def messages_on(self, topic: str) -> list[Received]:
        return [m for m in self.messages if m.topic == topic]

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 2.0) -> bool:
        """Wait until predicate(messages so far) is true; False after `timeout` seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(list(self._received)), timeout)

    def wait_for_topic(self, topic: str, timeout: float = 2.0) -> Received | None:
        if self.wait_for(lambda msgs: any(m.topic == topic for m in msgs), timeout):
            return self.messages_on(topic)[0]
        return None

    def subscribe_and_wait(self, topic: str, qos: int = 1, timeout: float = 2.0) -> int:
        """Subscribe and return the SUBACK reason code once the broker has answered."""
        result, mid = self.subscribe(topic, qos=qos)
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"subscribe {topic!r} failed: {result}")
        with self._cond:
            if not self._cond.wait_for(lambda: mid in self._subacks, timeout):
                raise TimeoutError(f"no SUBACK for {topic!r}")
            return self._subacks.pop(mid)

    def publish_and_wait(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout: float = 2.0,
    ) -> None:
        """Publish and wait until the broker has acknowledged it (QoS 1/2) or it was sent (QoS 0)."""
        info = self.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise TimeoutError(f"publish to {topic!r} not acknowledged within {timeout} s")

    def close(self) -> None:
        try:
            self.disconnect()
        finally:
            self.loop_stop()

    def _record_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, props: Any) -> None:
        self.connack = int(reason_code.value)
        if not reason_code.is_failure:
            self.connected.set()
        else:
            self.disconnected.set()

    def _record_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, props: Any
    ) -> None:
        self.disconnect_reason = int(reason_code.value)
        self.disconnected.set()
        if not self._reconnect:
            self.loop_stop()  # from the loop's own thread: ends it after this callback

    def _record_suback(self, client: Any, userdata: Any, mid: int, reason_codes: Any, props: Any) -> None:
        with self._cond:
            self._subacks[mid] = int(reason_codes[0].value)
            self._cond.notify_all()

    def _record_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self._received.append(Received(message.topic, message.payload, message.qos, bool(message.retain)))
            self._cond.notify_all()


def wait_until(predicate: Callable[[], bool], timeout: float = 2.0, interval: float = 0.01) -> bool:
    """Poll `predicate` until it is true; False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def _set_nodelay(client: Any, userdata: Any, sock: Any) -> None:
    # Without TCP_NODELAY on both ends a request waits ~40-90 ms for Nagle + delayed ACK.
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _new_client(
    port: int,
    username: str | None,
    password: str | None,
    client_id: str,
    *,
    clean_start: bool,
    session_expiry: int | None,
    keepalive: int,
    will: tuple[str, bytes, int, bool] | None,
    reconnect: bool,
) -> TestClient:
    client = TestClient(client_id, reconnect=reconnect)
    if username is not None:
        client.username_pw_set(username, password)
    if will is not None:
        topic, payload, qos, retain = will
        client.will_set(topic, payload, qos=qos, retain=retain)
    props = None
    if session_expiry is not None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry
    client.connect(
        "127.0.0.1",
        port,
        keepalive=keepalive,
        clean_start=clean_start,
        properties=props,
    )
    client.loop_start()
    return client


def mqtt_client(
    port: int,
    username: str | None,
    password: str | None,
    client_id: str,
    *,
    clean_start: bool = True,
    session_expiry: int | None = None,
    keepalive: int = 30,
    will: tuple[str, bytes, int, bool] | None = None,
    reconnect: bool = False,
    timeout: float = CONNECT_TIMEOUT,
) -> TestClient:
    """A connected MQTT 5 client (network loop running in a thread).

    `will` is (topic, payload, qos, retain). Without `reconnect`, a client the broker
    disconnects stays disconnected (paho would otherwise retry in the background).
    Raises ConnectionRefusedError on a refused CONNACK.
    """
    client = _new_client(
        port,
        username,
        password,
        client_id,
        clean_start=clean_start,
        session_expiry=session_expiry,
        keepalive=keepalive,
        will=will,
        reconnect=reconnect,
    )
    deadline = time.monotonic() + timeout
    while not client.connected.wait(0.01):
        if client.disconnected.is_set() or time.monotonic() > deadline:
            client.close()
            raise ConnectionRefusedError(f"{client_id}: CONNACK {client.connack}")
    return client


def try_connect(
    port: int,
    username: str | None,
    password: str | None,
    client_id: str,
    *,
    timeout: float = CONNECT_TIMEOUT,
) -> int:
    """The CONNACK reason code for this CONNECT (0 = accepted); disconnects at once.

    Raises TimeoutError if the broker neither answers nor closes within `timeout`.
    """
    client = _new_client(
        port,
        username,
        password,
        client_id,
        clean_start=True,
        session_expiry=None,
        keepalive=30,
        will=None,
        reconnect=False,
    )
    try:
        deadline = time.monotonic() + timeout
        while client.connack is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{client_id}: no CONNACK within {timeout} s")
            if client.disconnected.is_set() and client.connack is None:
                raise ConnectionError(f"{client_id}: connection closed without CONNACK")
            time.sleep(0.005)
        return client.connack
    finally:
        client.close()
