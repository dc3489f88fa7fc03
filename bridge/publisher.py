"""Where responses and deliveries go: one Publisher per process.

The bridge installs its own paho client; other server processes (web admin, Celery workers)
get a lazily connected client with the bridge's credential; tests install MemoryPublisher.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.db import transaction

from bridge.protocol import encode


class Publisher(Protocol):
    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None: ...


@dataclass(frozen=True)
class Published:
    topic: str
    payload: Any  # decoded JSON: proves every payload round-trips
    qos: int
    retain: bool


@dataclass
class MemoryPublisher:
    messages: list[Published] = field(default_factory=list)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        self.messages.append(Published(topic, json.loads(payload), qos, retain))

    def to(self, topic: str) -> list[Any]:
        return [m.payload for m in self.messages if m.topic == topic]

    def clear(self) -> None:
        self.messages.clear()


class PahoPublisher:
    def __init__(self, client) -> None:
        self._client = client

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        self._client.publish(topic, payload, qos=qos, retain=retain)


_installed: Publisher | None = None
_install_lock = threading.Lock()


def install(publisher: Publisher | None) -> None:
    global _installed
    _installed = publisher


def current() -> Publisher:
    global _installed
    if _installed is None:
        with _install_lock:
            if _installed is None:
                from bridge.client import server_publisher_client

                _installed = PahoPublisher(server_publisher_client())
    return _installed


def publish_json_rollback_unsafe(topic: str, payload: Any, *, qos: int = 1, retain: bool = False) -> None:
    """Publish now, whatever becomes of the surrounding transaction."""
    current().publish(topic, encode(payload), qos=qos, retain=retain)


def publish_json_on_commit(
    topic: str | list[str], payload: Any, *, qos: int = 1, retain: bool = False
) -> None:
    """Publish once the current transaction commits (at once outside a transaction); a list
    of topics gets the same payload, encoded once, in that order."""
    data = encode(payload)
    for each in [topic] if isinstance(topic, str) else topic:
        transaction.on_commit(lambda each=each: current().publish(each, data, qos=qos, retain=retain))
