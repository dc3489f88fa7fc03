"""The publishing port: where answers and deliveries go, one Publisher per process.

The domain (org, messaging) publishes with `publish_json_on_commit` and never names MQTT.
Which Publisher runs is installed from outside: the bridge installs its paho client at
start-up; any other server process (web admin, Celery workers) gets the one named by the
setting MCHAT_PUBLISHER ("module:function" returning a Publisher), created on first use;
tests install MemoryPublisher.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.db import transaction

from mchat.targets import Port
from mchat.wire import encode


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
    """A Publisher that keeps what it was given (tests)."""

    messages: list[Published] = field(default_factory=list)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        self.messages.append(Published(topic, json.loads(payload), qos, retain))

    def to(self, topic: str) -> list[Any]:
        return [m.payload for m in self.messages if m.topic == topic]

    def clear(self) -> None:
        self.messages.clear()


_port: Port[Publisher] = Port("MCHAT_PUBLISHER")
install = _port.install
current = _port.current


def publish_json_on_commit(
    topic: str | list[str], payload: Any, *, qos: int = 1, retain: bool = False
) -> None:
    """Publish once the current transaction commits (at once outside a transaction); a list
    of topics gets the same payload, encoded once, in that order."""
    data = encode(payload)
    topics = [topic] if isinstance(topic, str) else topic
    connection = transaction.get_connection()
    if connection.in_atomic_block or not connection.get_autocommit():
        # Inside a transaction: Django keeps the callbacks until COMMIT (and drops them on a
        # rollback); manual transaction management raises there as before.
        for each in topics:
            connection.on_commit(lambda each=each: current().publish(each, data, qos=qos, retain=retain))
        return
    # Autocommit, no transaction open: the statement that wrote the data has committed. This is
    # what on_commit does here too, without its per-topic closure and bookkeeping.
    publisher = current()
    for each in topics:
        publisher.publish(each, data, qos=qos, retain=retain)
