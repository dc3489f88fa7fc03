"""Hundreds of real MQTT clients driven by one thread, for fan-out tests.

paho's external-loop API (loop_read / loop_write / loop_misc) over one selector: 500 clients
cost one OS thread instead of 500. Each client subscribes to `topics` as soon as it is
connected and records what it receives. Every wait is bounded.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


@dataclass(frozen=True)
class Member:
    username: str
    password: str
    client_id: str


class Crowd:
    def __init__(self, port: int, members: list[Member], topics: list[str]):
        self.port = port
        self.topics = topics
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Condition()
        self._clients: dict[str, mqtt.Client] = {}
        self._subscribed: set[str] = set()
        self._refused: dict[str, int] = {}
        self.received: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="crowd", daemon=True)
        for member in members:
            self._clients[member.client_id] = self._client(member)

    def _client(self, member: Member) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=member.client_id, protocol=mqtt.MQTTv5)
        client.username_pw_set(member.username, member.password)
        client.user_data_set(member.client_id)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    # --- callbacks (run on the crowd thread) -------------------------------------------------------

    def _on_connect(self, client, client_id, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            with self._lock:
                self._refused[client_id] = int(reason_code.value)
                self._lock.notify_all()
            return
        client.subscribe([(topic, 1) for topic in self.topics])

    def _on_subscribe(self, client, client_id, mid, reason_codes, properties) -> None:
        with self._lock:
            self._subscribed.add(client_id)
            self._lock.notify_all()

    def _on_message(self, client, client_id, message) -> None:
        with self._lock:
            self.received[client_id].append((message.topic, message.payload))
            self._lock.notify_all()

    # --- lifecycle --------------------------------------------------------------------------------

    def connect(self, timeout: float = 30.0) -> None:
        """Open every connection, then wait until each has subscribed (or raise)."""
        for client in self._clients.values():
            client.connect("127.0.0.1", self.port, keepalive=60)
            sock = client.socket()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._selector.register(sock, selectors.EVENT_READ, client)
        self._thread.start()
        with self._lock:
            done = self._lock.wait_for(
                lambda: len(self._subscribed) + len(self._refused) >= len(self._clients), timeout
            )
        if self._refused:
            raise ConnectionRefusedError(
                f"{len(self._refused)} refused, e.g. {next(iter(self._refused.items()))}"
            )
        if not done:
            raise TimeoutError(f"only {len(self._subscribed)} of {len(self._clients)} subscribed")

    def _run(self) -> None:
        last_misc = time.monotonic()
        while not self._stop.is_set():
            for key, _events in self._selector.select(timeout=0.02):
                key.data.loop_read(10)
            for client in self._clients.values():
                if client.want_write():
                    client.loop_write()
            if time.monotonic() - last_misc > 1.0:
                for client in self._clients.values():
                    client.loop_misc()
                last_misc = time.monotonic()

    def wait_for(self, predicate, timeout: float) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: predicate(self.received), timeout)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        for client in self._clients.values():
            try:
                self._selector.unregister(client.socket())
            except (KeyError, ValueError, TypeError):
                pass
            client.disconnect()
        self._selector.close()
