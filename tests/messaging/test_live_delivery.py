"""Deliveries through a real Mosquitto (with the mchat plugin) and a real bridge.

Group topic access follows membership; one group send reaches every online member exactly
once; concurrent senders get unique, gap-free, increasing seqs; offline members catch up.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from django.db import connection

from bridge import acl
from bridge.client import BridgeClient
from mchat.outbox import current as current_publisher
from mchat.wire import encode
from org.credentials import hash_password
from org.models import Employee
from tests.messaging.crowd import Crowd, Member

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]

PASSWORD = "crowd-secret-1"


def _bulk_employees(prefix: str, count: int) -> list[Employee]:
    """Many employees at once (one shared password hash), then the broker files re-rendered."""
    hashed = hash_password(PASSWORD)
    return Employee.objects.bulk_create(
        [
            Employee(employee_id=f"emp_{prefix}_{n:04d}", name=f"{prefix}{n}", mqtt_password_hash=hashed)
            for n in range(count)
        ]
    )


def _sync_broker(live) -> None:
    acl.sync()
    live.broker.reload()  # waits until the broker has applied passwd/acl


def _group_messages(client, group_id: str) -> list[dict]:
    return client.messages(f"mchat/group/{group_id}")


# Marker messages: published by the bridge after what a test waits for, on a topic every
# employee may read. Deliveries to one client keep the order the bridge published them in, so
# once a client has the marker, anything published before it would have arrived already.
MARKER_TOPIC = "mchat/system/notify"


def _marker(name: str) -> bytes:
    return encode({"type": "test_marker", "name": name})


def _publish_marker(name: str) -> None:
    current_publisher().publish(MARKER_TOPIC, _marker(name), qos=1)


def _has_marker(client, name: str) -> bool:
    return client.wait_for(
        lambda msgs: any(m.topic == MARKER_TOPIC and m.payload == _marker(name) for m in msgs)
    )


def test_one_send_reaches_each_online_member_of_a_500_member_group_exactly_once(live):
    owner, owner_password = live.issue("群主")
    members = _bulk_employees("crowd", 500)
    outsiders = _bulk_employees("outsider", 20)
    _sync_broker(live)
    device = live.connect(owner, owner_password)
    created = device.request(
        "group.create", name="五百人大群", member_ids=[m.employee_id for m in members], timeout=30
    )
    assert created["code"] == 0, created
    group_id = created["data"]["group_id"]
    removed = members[:10]
    gone = device.request(
        "group.member_remove", group_id=group_id, member_ids=[m.employee_id for m in removed], timeout=30
    )
    assert gone["data"]["current_member_count"] == 491
    live.wait_memberships_loaded(491)

    topic = f"mchat/group/{group_id}"
    everyone = [f"{e.employee_id}_crowd" for e in members + outsiders]
    crowd = Crowd(
        live.port,
        [Member(e.employee_id, PASSWORD, f"{e.employee_id}_crowd") for e in members + outsiders],
        topics=[topic, MARKER_TOPIC],
    )
    try:
        crowd.connect(timeout=60)
        sent = device.request("msg.send_group", group_id=group_id, content="全员通知：今晚发版")
        assert sent["code"] == 0
        # The marker leaves the bridge after the group message: once every client has it, a
        # duplicate or a leak of the group message would have arrived before it.
        _publish_marker("after-the-send")
        arrived = crowd.wait_for(
            lambda got: all(
                (MARKER_TOPIC, _marker("after-the-send")) in got.get(cid, ()) for cid in everyone
            ),
            timeout=60,
        )
        assert arrived, "the marker did not reach every client"
        with crowd._lock:
            received = {cid: [m for m in msgs if m[0] == topic] for cid, msgs in crowd.received.items()}
    finally:
        crowd.close()

    for cid in [f"{m.employee_id}_crowd" for m in members[10:]]:
        assert len(received[cid]) == 1, (cid, received[cid])
        (only,) = received[cid]
        assert json.loads(only[1])["msg_id"] == sent["data"]["msg_id"]
    for employee in removed + outsiders:
        assert received.get(f"{employee.employee_id}_crowd", []) == []


def test_group_topic_access_follows_membership(live):
    alice, alice_pw = live.issue("Alice")
    bob, bob_pw = live.issue("Bob")
    carol, carol_pw = live.issue("Carol")
    owner = live.connect(alice, alice_pw)
    group_id = owner.request("group.create", name="g", member_ids=[bob.employee_id])["data"]["group_id"]
    topic = f"mchat/group/{group_id}"
    bob_dev = live.connect(bob, bob_pw)
    carol_dev = live.connect(carol, carol_pw)
    bob_dev.subscribe(topic)
    bob_dev.subscribe(f"mchat/inbox/{bob.employee_id}")
    bob_dev.subscribe(MARKER_TOPIC)
    carol_dev.subscribe(f"mchat/inbox/{carol.employee_id}")
    carol_dev.subscribe(topic)  # granted, but each delivery is checked against membership
    live.wait_memberships_loaded(2)

    owner.request("msg.send_group", group_id=group_id, content="before carol")
    assert bob_dev.wait_for_count(topic, 1)

    # A new member receives on its earlier subscription once the broker has loaded the new
    # membership (how soon after the add answer is the benchmark's question, not this test's).
    added = owner.request("group.member_add", group_id=group_id, member_ids=[carol.employee_id])
    assert added["data"]["added_ids"] == [carol.employee_id]
    live.wait_memberships_loaded(3)
    welcome = owner.request("msg.send_group", group_id=group_id, content="welcome carol")
    assert carol_dev.wait_for_count(topic, 1)
    assert [m["msg_id"] for m in _group_messages(carol_dev, group_id)] == [welcome["data"]["msg_id"]]

    # A removed member receives nothing sent after the remove response.
    removed = owner.request("group.member_remove", group_id=group_id, member_ids=[bob.employee_id])
    assert removed["code"] == 0
    before = len(_group_messages(bob_dev, group_id))
    after_removal = [
        owner.request("msg.send_group", group_id=group_id, content=f"after {n}") for n in range(5)
    ]
    assert carol_dev.wait_for(
        lambda msgs: (
            after_removal[-1]["data"]["msg_id"] in {json.loads(m.payload).get("msg_id") for m in msgs}
        ),
        timeout=5,
    )
    _publish_marker("after-removal")  # published after the five: bob would have them first
    assert _has_marker(bob_dev, "after-removal")
    assert len(_group_messages(bob_dev, group_id)) == before
    (told,) = [
        m for m in bob_dev.messages(f"mchat/inbox/{bob.employee_id}") if m.get("type") == "member_removed"
    ]
    assert told["body"]["member_ids"] == [bob.employee_id]

    # After dismissal nobody receives the topic, even if something were published on it.
    challenge = owner.request("auth.challenge")["data"]
    dismissed = owner.request(
        "group.dismiss", group_id=group_id, challenge_id=challenge["challenge_id"], token=challenge["token"]
    )
    assert dismissed["code"] == 0
    seen = len(_group_messages(carol_dev, group_id))
    current_publisher().publish(topic, encode({"msg_id": "msg_forged", "content": "late"}), qos=1)
    # The marker is published by the bridge after the forged message: carol would have that first.
    marker = owner.request("msg.send_private", to_employee_id=carol.employee_id, content="marker")
    assert carol_dev.wait_for(
        lambda msgs: any(json.loads(m.payload).get("msg_id") == marker["data"]["msg_id"] for m in msgs),
        timeout=5,
    )
    assert len(_group_messages(carol_dev, group_id)) == seen


def test_system_notifications_reach_inboxes(live):
    alice, alice_pw = live.issue("Alice")
    bob, bob_pw = live.issue("Bob")
    bob_dev = live.connect(bob, bob_pw)
    bob_dev.subscribe(f"mchat/inbox/{bob.employee_id}")
    owner = live.connect(alice, alice_pw)
    group_id = owner.request("group.create", name="旧名", member_ids=[bob.employee_id])["data"]["group_id"]
    owner.request("group.update", group_id=group_id, updates={"name": "新名"})
    owner.request("group.member_remove", group_id=group_id, member_ids=[bob.employee_id])
    inbox = f"mchat/inbox/{bob.employee_id}"
    assert bob_dev.wait_for_count(inbox, 3)
    kinds = [(m["type"], m["title"], m["body"]["group_name"]) for m in bob_dev.messages(inbox)]
    assert kinds == [
        ("member_joined", "入群通知", "旧名"),
        ("group_renamed", "群名称变更通知", "新名"),
        ("member_removed", "移出群聊通知", "新名"),
    ]


def test_private_message_reaches_every_device_of_both_sides(live):
    alice, alice_pw = live.issue("Alice")
    bob, bob_pw = live.issue("Bob")
    alice_laptop = live.connect(alice, alice_pw, device="laptop")
    alice_phone = live.connect(alice, alice_pw, device="phone")
    bob_phone = live.connect(bob, bob_pw, device="phone")
    bob_pad = live.connect(bob, bob_pw, device="pad")
    for device, owner in ((alice_phone, alice), (bob_phone, bob), (bob_pad, bob)):
        device.subscribe(f"mchat/inbox/{owner.employee_id}")
    sent = alice_laptop.request("msg.send_private", to_employee_id=bob.employee_id, content="你好")
    for device, owner in ((alice_phone, alice), (bob_phone, bob), (bob_pad, bob)):
        inbox = f"mchat/inbox/{owner.employee_id}"
        assert device.wait_for_count(inbox, 1)
        (delivered,) = device.messages(inbox)
        assert delivered["msg_id"] == sent["data"]["msg_id"] and delivered["seq"] == 1
        assert delivered["to_employee_id"] == bob.employee_id

    ack = bob_pad.request(
        "msg.read_ack",
        msg_id=sent["data"]["msg_id"],
        conversation_type="private",
        peer_employee_id=alice.employee_id,
    )
    assert ack["code"] == 0
    assert alice_phone.wait_for_count(f"mchat/inbox/{alice.employee_id}", 2)
    receipt = alice_phone.messages(f"mchat/inbox/{alice.employee_id}")[1]
    assert receipt["type"] == "read_receipt" and receipt["reader_id"] == bob.employee_id


def _undelivered(live, watching, topic: str, expected: list[int], log_mark: int, caplog) -> str:
    """Empty when the watcher has every seq of `expected`; else what tells a late delivery (an
    ordering fault) from a lost one, and a denied one (the plugin reloading its membership
    table) from a dropped one (the broker's queues) or one a bridge never sent (a reconnect, a
    warning)."""

    def seqs(msgs) -> set[int]:
        return {json.loads(m.payload).get("seq") for m in msgs if m.topic == topic}

    missing = sorted(set(expected) - seqs(watching.mqtt.messages))
    if not missing:
        return ""
    late = watching.wait_for(lambda msgs: set(missing) <= seqs(msgs), timeout=10)
    broker = live.broker_log_since(
        log_mark, ("mchat_auth", "dropped", "mchat-bridge", "Reused message ID", watching.client_id)
    )
    warnings = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]
    return "\n".join(
        [
            f"missing at the watcher after the marker: {missing}",
            f"arrived within 10 s after the marker (late, not lost): {late}",
            "broker log since the burst began:",
            *broker,
            "warnings logged meanwhile:",
            *warnings,
        ]
    )


@pytest.mark.parametrize("bridges", [1, 2])
def test_concurrent_senders_get_unique_gap_free_increasing_seqs(live, bridges, caplog):
    caplog.set_level(logging.WARNING)
    senders = _bulk_employees("sender", 20)
    (watcher,) = _bulk_employees("watcher", 1)
    _sync_broker(live)
    extra = None
    if bridges == 2:
        live.stop_bridge()
        live.start_bridge(instance="seq1", shared=True)
        extra = BridgeClient(instance="seq2", shared=True, keep_session=False)
        stop = threading.Event()

        def serve() -> None:
            try:
                extra.run(stop)
            finally:
                connection.close()  # this thread's own database connection

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        assert extra.connected.wait(10)
    try:
        devices = [live.connect(e, PASSWORD) for e in senders]
        group_id = devices[0].request(
            "group.create", name="并发群", member_ids=[e.employee_id for e in [*senders, watcher]]
        )["data"]["group_id"]
        topic = f"mchat/group/{group_id}"
        watching = live.connect(watcher, PASSWORD)
        watching.subscribe(topic)
        live.wait_memberships_loaded(21)
        log_mark = live.broker_log_mark()

        per_sender = 10
        start = threading.Barrier(len(devices))

        def burst(device) -> None:
            start.wait(10)
            for n in range(per_sender):
                device.publish_request(
                    f"burst-{n}",
                    json.dumps(
                        {
                            "action": "msg.send_group",
                            "group_id": group_id,
                            "content": f"{device.client_id} #{n}",
                        }
                    ).encode(),
                )

        threads = [threading.Thread(target=burst, args=(d,)) for d in devices]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        total = per_sender * len(devices)
        responses = {
            d.client_id: [d.response(f"burst-{n}", timeout=60) for n in range(per_sender)] for d in devices
        }
        # Every answer is in, so every delivery has left a bridge: a marker sent now reaches the
        # watcher after all of them, and after any duplicate.
        marker = devices[0].request("msg.send_group", group_id=group_id, content="marker")
        assert marker["code"] == 0 and marker["data"]["seq"] == total + 1
        assert watching.wait_for(
            lambda msgs: any(json.loads(m.payload).get("seq") == total + 1 for m in msgs), timeout=60
        )
        # Once, under load, 25 consecutive seqs were missing here and the cause was not found:
        # should it happen again, the failure says what happened (both bridges still running).
        undelivered = _undelivered(live, watching, topic, list(range(1, total + 2)), log_mark, caplog)
    finally:
        if extra is not None:
            stop.set()
            thread.join(10)

    assert all(r["code"] == 0 for rs in responses.values() for r in rs)
    answered = sorted(r["data"]["seq"] for rs in responses.values() for r in rs)
    assert answered == list(range(1, total + 1))
    if undelivered:
        pytest.fail(undelivered)
    delivered = [m["seq"] for m in _group_messages(watching, group_id)]
    assert sorted(delivered) == list(range(1, total + 2))  # each exactly once, no gaps; the marker last
    if bridges == 1:
        # One bridge commits and publishes in turn: delivery order is seq order, and each
        # sender's messages are numbered in the order it sent them.
        assert delivered == list(range(1, total + 2))
        for rs in responses.values():
            seqs = [r["data"]["seq"] for r in rs]
            assert seqs == sorted(seqs)


def test_an_offline_member_gets_queued_messages_and_fills_gaps_from_history(live):
    alice, alice_pw = live.issue("Alice")
    bob, bob_pw = live.issue("Bob")
    owner = live.connect(alice, alice_pw)
    group_id = owner.request("group.create", name="g", member_ids=[bob.employee_id])["data"]["group_id"]
    topic = f"mchat/group/{group_id}"
    session = {"clean_start": False, "session_expiry": 3600}
    phone = live.connect(bob, bob_pw, device="phone", **session)
    phone.subscribe(topic)
    live.wait_memberships_loaded(2)
    owner.request("msg.send_group", group_id=group_id, content="m1")
    assert phone.wait_for_count(topic, 1)
    phone.close()

    for n in (2, 3, 4):
        owner.request("msg.send_group", group_id=group_id, content=f"m{n}")
    back = live.connect(bob, bob_pw, device="phone", **session)  # no new SUBSCRIBE
    assert back.wait_for_count(topic, 3, timeout=10)
    assert [m["seq"] for m in _group_messages(back, group_id)] == [2, 3, 4]

    # A device that missed seqs (here a new one, seen nothing) asks history for what follows.
    history = back.request("msg.history", conversation_type="group", group_id=group_id, after_seq=1)
    assert [m["content"] for m in history["data"]["messages"]] == ["m2", "m3", "m4"]
    assert history["data"]["has_more"] is False and history["data"]["last_seq"] == 4


def test_group_read_receipts_are_coalesced_and_the_last_count_arrives(live, real_receipt_timer, settings):
    """Eager Celery (no worker): the first ack is told at once, the rest of the burst once the
    interval has passed, by the in-process timer; never one event per member."""
    settings.MCHAT_RECEIPT_INTERVAL_SECONDS = 0.5
    alice, alice_pw = live.issue("Alice")
    readers = _bulk_employees("reader", 12)
    _sync_broker(live)
    sender = live.connect(alice, alice_pw)
    inbox = f"mchat/inbox/{alice.employee_id}"
    sender.subscribe(inbox)
    sender.subscribe(MARKER_TOPIC)
    group_id = sender.request("group.create", name="回执", member_ids=[r.employee_id for r in readers])[
        "data"
    ]["group_id"]
    msg_id = sender.request("msg.send_group", group_id=group_id, content="请确认")["data"]["msg_id"]
    devices = [live.connect(r, PASSWORD) for r in readers]
    started = time.monotonic()
    for device in devices:
        device.publish_request("ack", json.dumps({"action": "msg.read_ack", "msg_id": msg_id}).encode())
    for device in devices:
        assert device.response("ack")["code"] == 0

    def counts():
        return [m["read_count"] for m in sender.messages(inbox) if m.get("type") == "read_receipt"]

    assert sender.wait_for(lambda msgs: 12 in counts(), timeout=30)
    # Nothing more may follow: every flush the timers scheduled has run, and a marker the
    # bridge publishes after them reaches the sender after anything they published.
    assert real_receipt_timer.wait_idle()
    _publish_marker("after-the-flushes")
    assert _has_marker(sender, "after-the-flushes")
    elapsed = time.monotonic() - started
    seen = counts()
    assert seen[0] >= 1 and seen[-1] == 12 and seen == sorted(seen)
    assert len(seen) <= 1 + elapsed / 0.5 + 1
    receipt = [m for m in sender.messages(inbox) if m.get("type") == "read_receipt"][-1]
    assert receipt == {
        "type": "read_receipt",
        "conversation_type": "group",
        "group_id": group_id,
        "msg_id": msg_id,
        "seq": 1,
        "read_count": 12,
        "member_count": 12,
    }
