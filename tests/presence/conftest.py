"""Presence over a real broker: devices that announce themselves like the SDK does, and a clean
slate of retained status messages (the test broker lives for the whole session)."""

from __future__ import annotations

import json
import socket

import pytest

from mchat.wire import status_topic


def status_payload(status: str, client_id: str, device: str = "test") -> bytes:
    return json.dumps(
        {"status": status, "updated_at": "2025-02-03T10:00:00.000Z", "device": device, "client_id": client_id}
    ).encode()


@pytest.fixture
def device_online(live):
    """Connect a device the way a client must (spec 3.17): a Will `offline` with its client_id,
    then a retained `online`. Short keepalive, so a silent device is dropped within ~3 s."""

    def connect(employee, password, device: str, *, keepalive: int = 2):
        client_id = f"{employee.employee_id}_{device}"
        topic = status_topic(employee.employee_id)
        client = live.connect(
            employee,
            password,
            device=device,
            keepalive=keepalive,
            will=(topic, status_payload("offline", client_id, device), 1, True),
        )
        client.mqtt.publish_and_wait(topic, status_payload("online", client_id, device), retain=True)
        return client

    return connect


def kill_socket(client) -> None:
    """The network goes away under the client: no DISCONNECT, so the broker sends the Will."""
    client.mqtt.socket().shutdown(socket.SHUT_RDWR)


def go_silent(client) -> None:
    """The client stops talking (no PINGREQ) with its socket left open: the broker drops it
    after 1.5 x keepalive and sends the Will."""
    client.mqtt.loop_stop()


@pytest.fixture
def clear_retained_status(live):
    """Topics whose retained message is cleared after the test: the test broker lives for the
    whole session, and a retained status would reach the next test's bridge."""
    topics: list[str] = []
    yield topics
    if live.bridge is None:
        return
    for topic in topics:
        live.bridge.publish(topic, b"", qos=1, retain=True).result(3).wait_for_publish(3)
