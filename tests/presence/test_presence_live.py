"""Presence end to end: real Mosquitto with the plugin and ACL, the real bridge, real devices."""

from __future__ import annotations

import json
import time

import pytest

from mchat.wire import status_topic
from org import presence
from org.models import DevicePresence, Employee
from tests.presence.conftest import go_silent, kill_socket, status_payload

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]

# 1.5 x keepalive (2 s) for the broker to notice a silent device, plus the bridge and a busy
# machine; the assertions about what happened are exact, only the waiting is generous.
DROP_WAIT = 10.0


def statuses(client, topic):
    return [json.loads(m.payload) for m in client.mqtt.messages_on(topic)]


def retained_status(live, employee, password, topic, device):
    """What a newcomer sees first on the topic: the retained message."""
    newcomer = live.connect(employee, password, device=device)
    newcomer.subscribe(topic)
    assert newcomer.wait_for(lambda msgs: any(m.topic == topic for m in msgs), 5), "nothing retained"
    first = newcomer.mqtt.messages_on(topic)[0]
    assert first.retain
    newcomer.close()
    return json.loads(first.payload)


def test_two_devices_drop_one_stays_online_drop_both_goes_offline(live, device_online, clear_retained_status):
    pat, pat_pw = live.issue("PresenceTwoDevices")
    watcher, watcher_pw = live.issue("PresenceWatcherOne")
    topic = status_topic(pat.employee_id)
    clear_retained_status.append(topic)
    observer = live.connect(watcher, watcher_pw, device="observer")
    observer.subscribe(topic)

    phone = device_online(pat, pat_pw, "phone")
    laptop = device_online(pat, pat_pw, "laptop")
    assert observer.wait_for_count(topic, 2, 5)
    assert live.bridge is not None
    assert _wait(lambda: presence.presence_of([pat.employee_id])[pat.employee_id]["online_devices"] == 2)

    # The phone's connection dies: its Will says offline, the bridge answers with the truth.
    kill_socket(phone)
    assert observer.wait_for(
        lambda msgs: any(json.loads(m.payload).get("source") == "server" for m in msgs if m.topic == topic),
        DROP_WAIT,
    ), statuses(observer, topic)
    seen = statuses(observer, topic)
    will_at = next(i for i, p in enumerate(seen) if p["status"] == "offline")
    assert seen[will_at]["client_id"] == f"{pat.employee_id}_phone"
    correction = seen[will_at + 1]
    assert correction["status"] == "online" and correction["source"] == "server"
    assert correction["online_devices"] == 1
    assert retained_status(live, watcher, watcher_pw, topic, "late")["status"] == "online"
    assert presence.presence_of([pat.employee_id])[pat.employee_id]["status"] == "online"
    assert Employee.objects.get(pk=pat.pk).last_seen_at is None

    # The laptop goes silent: dropped after 1.5 x keepalive, and now the employee is offline.
    count = len(seen)
    started = time.monotonic()
    go_silent(laptop)
    assert observer.wait_for_count(topic, count + 1, DROP_WAIT), statuses(observer, topic)
    assert time.monotonic() - started < DROP_WAIT
    last = statuses(observer, topic)[count]
    assert last == json.loads(status_payload("offline", f"{pat.employee_id}_laptop", "laptop"))
    assert _wait(lambda: presence.presence_of([pat.employee_id])[pat.employee_id]["status"] == "offline")
    # Nothing to correct: the Will was the truth, the bridge stays quiet.
    time.sleep(0.5)
    assert len(statuses(observer, topic)) == count + 1
    assert retained_status(live, watcher, watcher_pw, topic, "later")["status"] == "offline"
    pat.refresh_from_db()
    assert pat.last_seen_at is not None
    assert set(DevicePresence.objects.filter(employee=pat).values_list("client_id", "online")) == {
        (f"{pat.employee_id}_phone", False),
        (f"{pat.employee_id}_laptop", False),
    }


def test_a_forged_status_from_another_employee_is_never_delivered(live, device_online, clear_retained_status):
    victim, victim_pw = live.issue("PresenceVictim")
    mallory, mallory_pw = live.issue("PresenceMallory")
    watcher, watcher_pw = live.issue("PresenceWatcherTwo")
    topic = status_topic(victim.employee_id)
    clear_retained_status.append(topic)
    observer = live.connect(watcher, watcher_pw, device="observer")
    observer.subscribe(topic)

    forger = live.connect(mallory, mallory_pw, device="forge")
    forged = json.dumps(
        {"status": "online", "updated_at": "2025-02-03T10:00:00.000Z", "client_id": f"{victim.employee_id}_x"}
    ).encode()
    forger.mqtt.publish(topic, forged, qos=1, retain=True).wait_for_publish(3)
    forger.mqtt.publish(topic, b'{"status": "offline", "source": "server"}', qos=0, retain=True)

    # A control that proves the observer would have seen a message on that topic.
    device_online(victim, victim_pw, "own")
    assert observer.wait_for_count(topic, 1, 5)
    time.sleep(0.5)
    [only] = statuses(observer, topic)
    assert only["client_id"] == f"{victim.employee_id}_own"
    assert (
        retained_status(live, watcher, watcher_pw, topic, "late")["client_id"] == f"{victim.employee_id}_own"
    )
    assert set(DevicePresence.objects.values_list("client_id", flat=True)) == {f"{victim.employee_id}_own"}


def test_a_will_on_another_employees_topic_is_never_delivered(live, clear_retained_status):
    victim, _ = live.issue("PresenceWillVictim")
    mallory, mallory_pw = live.issue("PresenceWillForger")
    watcher, watcher_pw = live.issue("PresenceWatcherThree")
    topic = status_topic(victim.employee_id)
    clear_retained_status.append(topic)
    observer = live.connect(watcher, watcher_pw, device="observer")
    observer.subscribe(topic)

    will = (topic, b'{"status": "online", "client_id": "x"}', 1, True)
    try:
        forger = live.connect(mallory, mallory_pw, device="forge", keepalive=2, will=will)
    except ConnectionRefusedError:
        forger = None  # the broker refused the Will outright: nothing can be delivered
    if forger is not None:
        kill_socket(forger)
        assert forger.mqtt.disconnected.wait(5)
    time.sleep(1.0)
    assert observer.mqtt.messages_on(topic) == []
    assert not DevicePresence.objects.exists()


def _wait(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
