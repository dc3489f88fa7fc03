"""Restart Mosquitto (persistence on) in the middle of a stream of msg.send_private requests.

Clients and the bridge reconnect by themselves to their persistent sessions; a request that
got no answer is retried with the same seq_id (what a client does; the idempotency record
makes it harmless). Every request ends up answered, executed once, and every acknowledged
message reaches the recipient (QoS 1: possibly twice, never not at all).
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from mchat.wire import inbox_topic
from messaging.models import Message
from tests.resilience.conftest import bridge_log, wait_serving

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

N = 150
PERSISTENT = {"clean_start": False, "session_expiry": 600, "reconnect": True}


def test_broker_restart_during_traffic_loses_no_acknowledged_message(own_broker, bridges):
    stack = own_broker
    alice, alice_pw = stack.issue("Alice")
    bob, bob_pw = stack.issue("Bob")
    stack.broker.reload()  # the new passwd lines are in force
    sender = stack.connect(alice, alice_pw, device="phone", **PERSISTENT)
    recipient = stack.connect(bob, bob_pw, device="pad", **PERSISTENT)
    for device in (sender, recipient):
        device.mqtt.reconnect_delay_set(min_delay=1, max_delay=2)
    inbox = inbox_topic(bob.employee_id)
    recipient.subscribe(inbox)
    bridge = bridges(stack, "restart")
    wait_serving(sender, bridge)

    def body(n: int) -> bytes:
        return json.dumps(
            {"action": "msg.send_private", "to_employee_id": bob.employee_id, "content": f"r{n}"}
        ).encode()

    def restart() -> None:
        time.sleep(0.5)
        stack.broker.stop()  # SIGTERM: Mosquitto saves sessions and queued messages
        time.sleep(1.5)
        stack.broker.start()

    restarter = threading.Thread(target=restart)
    restarter.start()
    # ~2 s of traffic at ~75/s; the broker is away for part of it. paho queues what is
    # published while disconnected and sends it after reconnecting.
    for n in range(N):
        sender.mqtt.publish(f"mchat/msg/req/{sender.client_id}/r{n}", body(n), qos=1)
        time.sleep(2.0 / N)
    restarter.join(30)
    assert stack.broker.is_running()
    # Everyone really lost the broker, and came back.
    assert sender.mqtt.disconnected.is_set() and recipient.mqtt.disconnected.is_set()
    assert sender.mqtt.connected.wait(15) and recipient.mqtt.connected.wait(15)

    answers: dict[int, dict] = {}
    retried = 0
    deadline = time.monotonic() + 60
    while len(answers) < N and time.monotonic() < deadline:
        for n in range(N):
            if n in answers:
                continue
            received = sender.mqtt.messages_on(f"mchat/msg/resp/{sender.client_id}/r{n}")
            if received:
                answers[n] = json.loads(received[0].payload)
        if len(answers) < N:
            time.sleep(2.0)
            for n in set(range(N)) - set(answers):  # the client's retry: same seq_id
                retried += 1
                sender.mqtt.publish(f"mchat/msg/req/{sender.client_id}/r{n}", body(n), qos=1)
    missing = sorted(set(range(N)) - set(answers))
    assert not missing, f"never answered: {missing[:10]}{bridge_log(bridge)}"
    assert bridge.alive(), bridge_log(bridge)
    assert "reconnecting" in bridge.log_tail(20000), "the bridge never lost the broker"
    assert {a["code"] for a in answers.values()} == {0}

    # Executed once each.
    stored = Message.objects.filter(sender=alice)
    assert stored.count() == N
    assert sorted(stored.values_list("seq", flat=True)) == list(range(1, N + 1))
    acknowledged = {a["data"]["msg_id"] for a in answers.values()}
    assert acknowledged == set(stored.values_list("msg_id", flat=True))

    # Every acknowledged message reaches the recipient.
    def received_ids(messages) -> set[str]:
        return {json.loads(m.payload).get("msg_id") for m in messages if m.topic == inbox}

    recipient.wait_for(lambda msgs: acknowledged <= received_ids(msgs), timeout=30)
    lost = acknowledged - received_ids(recipient.mqtt.messages)
    assert not lost, f"{len(lost)} acknowledged messages never delivered"
    duplicates = sum(m.topic == inbox for m in recipient.mqtt.messages) - len(acknowledged)
    print(
        f"restart during traffic: {N} answered ({retried} retries), 0 lost, "
        f"{duplicates} QoS 1 duplicate deliveries"
    )
