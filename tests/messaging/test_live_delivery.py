"""Deliveries through a real Mosquitto (with the mchat plugin) and a real bridge.

Group topic access follows membership; one group send reaches every online member exactly
once; concurrent senders get unique, gap-free, increasing seqs; offline members catch up.
"""

from __future__ import annotations

import json
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


def _wait_memberships_loaded(live, count: int, timeout: float = 5.0) -> None:
    """Until the plugin has (re)loaded the groups file with `count` memberships."""
    deadline = time.monotonic() + timeout
    needle = f"mchat_auth: loaded {count} group memberships"
    while time.monotonic() < deadline:
        log = live.broker.log_file.read_text(errors="replace")
        lines = [line for line in log.splitlines() if "group memberships" in line]
        if lines and needle in lines[-1]:
            return
        time.sleep(0.02)
    raise TimeoutError(f"the broker did not load {count} memberships")


def _group_messages(client, group_id: str) -> list[dict]:
    return client.messages(f"mchat/group/{group_id}")


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
    _wait_memberships_loaded(live, 491)

    topic = f"mchat/group/{group_id}"
    crowd = Crowd(
        live.port,
        [Member(e.employee_id, PASSWORD, f"{e.employee_id}_crowd") for e in members + outsiders],
        topics=[topic],
    )
    try:
        crowd.connect(timeout=60)
        sent = device.request("msg.send_group", group_id=group_id, content="全员通知：今晚发版")
        assert sent["code"] == 0
        online = [f"{m.employee_id}_crowd" for m in members[10:]]
        arrived = crowd.wait_for(lambda got: all(got.get(cid) for cid in online), timeout=30)
        assert arrived, f"{sum(1 for cid in online if not crowd.received.get(cid))} members got nothing"
        time.sleep(0.5)  # room for duplicates or leaks to show up
        with crowd._lock:
            received = {cid: list(msgs) for cid, msgs in crowd.received.items()}
    finally:
        crowd.close()

    for cid in online:
        assert len(received[cid]) == 1, (cid, received[cid])
        (only,) = received[cid]
        assert only[0] == topic
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
    carol_dev.subscribe(f"mchat/inbox/{carol.employee_id}")
    carol_dev.subscribe(topic)  # granted, but each delivery is checked against membership
    _wait_memberships_loaded(live, 2)

    first = owner.request("msg.send_group", group_id=group_id, content="before carol")
    assert bob_dev.wait_for_count(topic, 1)

    # A new member receives within one second of the add response, on its earlier subscription.
    added = owner.request("group.member_add", group_id=group_id, member_ids=[carol.employee_id])
    joined_at = time.monotonic()
    assert added["data"]["added_ids"] == [carol.employee_id]
    sent_at: dict[str, float] = {}
    while time.monotonic() - joined_at < 3 and not _group_messages(carol_dev, group_id):
        probe = owner.request("msg.send_group", group_id=group_id, content="probe")
        sent_at[probe["data"]["msg_id"]] = time.monotonic() - joined_at
        carol_dev.wait_for_count(topic, 1, timeout=0.05)
    first_seen = _group_messages(carol_dev, group_id)[0]
    assert first_seen["msg_id"] != first["data"]["msg_id"]
    assert sent_at[first_seen["msg_id"]] < 1.0

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
    time.sleep(0.3)
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
    marker = owner.request("msg.send_private", to_employee_id=carol.employee_id, content="marker")
    assert carol_dev.wait_for(
        lambda msgs: any(json.loads(m.payload).get("msg_id") == marker["data"]["msg_id"] for m in msgs),
        timeout=5,
    )
    time.sleep(0.3)
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


@pytest.mark.parametrize("bridges", [1, 2])
def test_concurrent_senders_get_unique_gap_free_increasing_seqs(live, bridges):
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
        _wait_memberships_loaded(live, 21)

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
        assert watching.wait_for_count(topic, total, timeout=60)
        time.sleep(0.3)
    finally:
        if extra is not None:
            stop.set()
            thread.join(10)

    assert all(r["code"] == 0 for rs in responses.values() for r in rs)
    answered = sorted(r["data"]["seq"] for rs in responses.values() for r in rs)
    assert answered == list(range(1, total + 1))
    delivered = [m["seq"] for m in _group_messages(watching, group_id)]
    assert sorted(delivered) == list(range(1, total + 1))  # each exactly once, no gaps
    if bridges == 1:
        # One bridge commits and publishes in turn: delivery order is seq order, and each
        # sender's messages are numbered in the order it sent them.
        assert delivered == list(range(1, total + 1))
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
    _wait_memberships_loaded(live, 2)
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

    assert sender.wait_for(lambda msgs: 12 in counts(), timeout=5)
    elapsed = time.monotonic() - started
    time.sleep(0.7)  # nothing more may follow
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
