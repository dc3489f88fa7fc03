"""msg.read_ack (spec 3.13): read positions, private receipts, coalesced group counts."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from messaging import tasks
from messaging.models import Conversation, ReadPosition, ReceiptTally
from tests.factories import EmployeeFactory

pytestmark = pytest.mark.django_db


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 2, 3, 10, 0, 0, tzinfo=UTC)

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch):
    """Django's clock, frozen until advanced: the coalescing window becomes deterministic."""
    frozen = Clock()
    monkeypatch.setattr(timezone, "now", lambda: frozen.now)
    return frozen


def _receipts(published, employee, *, kind="read_receipt"):
    return [p for p in published.to(f"mchat/inbox/{employee.employee_id}") if p.get("type") == kind]


def _group(call, owner, *members) -> str:
    return call(owner, "group.create", name="g", member_ids=[m.employee_id for m in members])["data"][
        "group_id"
    ]


# --- private -------------------------------------------------------------------------------------


def test_private_ack_moves_the_position_and_tells_the_sender(call, published, alice, bob):
    msg = call(alice, "msg.send_private", to_employee_id=bob.employee_id, content="hi")["data"]
    response = call(
        bob,
        "msg.read_ack",
        seq_id="read_ack_seq_001",
        msg_id=msg["msg_id"],
        conversation_type="private",
        peer_employee_id=alice.employee_id,
    )
    assert response["code"] == 0
    data = response["data"]
    assert (
        data["msg_id"] == msg["msg_id"]
        and data["last_read_seq"] == 1
        and data["conversation_type"] == "private"
    )
    assert _receipts(published, alice) == [
        {
            "type": "read_receipt",
            "conversation_type": "private",
            "reader_id": bob.employee_id,
            "msg_id": msg["msg_id"],
            "seq": 1,
            "read_at": data["read_at"],
        }
    ]
    # Bob's other devices learn where he is.
    assert _receipts(published, bob, kind="read_position") == [
        {
            "type": "read_position",
            "conversation_type": "private",
            "peer_employee_id": alice.employee_id,
            "last_read_seq": 1,
            "read_at": data["read_at"],
        }
    ]


def test_each_private_ack_that_moves_tells_once_and_never_goes_back(call, published, alice, bob):
    first = call(alice, "msg.send_private", to_employee_id=bob.employee_id, content="1")["data"]["msg_id"]
    second = call(alice, "msg.send_private", to_employee_id=bob.employee_id, content="2")["data"]["msg_id"]
    call(bob, "msg.read_ack", msg_id=second, conversation_type="private", peer_employee_id=alice.employee_id)
    older = call(
        bob, "msg.read_ack", msg_id=first, conversation_type="private", peer_employee_id=alice.employee_id
    )
    again = call(bob, "msg.read_ack", msg_id=second)
    assert older["data"]["last_read_seq"] == 2 and again["data"]["last_read_seq"] == 2
    assert [r["seq"] for r in _receipts(published, alice)] == [2]
    conversation = Conversation.objects.get(kind="private")
    assert ReadPosition.objects.get(conversation=conversation, employee=bob).last_read_seq == 2


@pytest.mark.parametrize(
    ("fields", "code", "message"),
    [
        ({}, 400, "msg_id 不能为空"),
        ({"msg_id": "msg_nope"}, 404, "消息不存在：msg_nope"),
        ({"conversation_type": "group", "group_id": "grp_x"}, 404, None),
        ({"conversation_type": "private", "peer_employee_id": "emp_carol_003"}, 404, None),
        ({"conversation_type": "chat"}, 400, "conversation_type “chat” 不是合法选项。"),
    ],
)
def test_read_ack_refusals(call, alice, bob, carol, fields, code, message):
    msg_id = call(alice, "msg.send_private", to_employee_id=bob.employee_id, content="1")["data"]["msg_id"]
    fields = {"msg_id": msg_id, **fields} if fields else {}
    response = call(bob, "msg.read_ack", **fields)
    assert response["code"] == code
    assert response["message"] == (message or f"消息不存在：{msg_id}")


def test_outsiders_cannot_ack_or_see_a_message(call, published, alice, bob, carol):
    msg_id = call(alice, "msg.send_private", to_employee_id=bob.employee_id, content="1")["data"]["msg_id"]
    assert call(carol, "msg.read_ack", msg_id=msg_id)["code"] == 404
    assert _receipts(published, alice) == []


# --- group: counts -------------------------------------------------------------------------------


def test_group_receipt_counts_readers_among_members_at_send_time(
    call, published, clock, alice, bob, carol, dave
):
    group_id = _group(call, alice, bob, carol)
    msg = call(alice, "msg.send_group", group_id=group_id, content="hi")["data"]
    clock.advance(5)
    call(alice, "group.member_add", group_id=group_id, member_ids=[dave.employee_id])  # joined later
    response = call(bob, "msg.read_ack", msg_id=msg["msg_id"], conversation_type="group", group_id=group_id)
    assert response["data"]["last_read_seq"] == 1
    assert _receipts(published, alice) == [
        {
            "type": "read_receipt",
            "conversation_type": "group",
            "group_id": group_id,
            "msg_id": msg["msg_id"],
            "seq": 1,
            "read_count": 1,
            "member_count": 2,  # bob and carol; not alice (the sender) nor dave (joined later)
        }
    ]
    assert _receipts(published, bob, kind="read_position")[0]["group_id"] == group_id


def test_one_ack_covers_every_newly_read_message_of_each_sender(call, published, alice, bob, carol):
    group_id = _group(call, alice, bob, carol)
    a1 = call(alice, "msg.send_group", group_id=group_id, content="a1")["data"]["msg_id"]
    b1 = call(bob, "msg.send_group", group_id=group_id, content="b1")["data"]["msg_id"]
    a2 = call(alice, "msg.send_group", group_id=group_id, content="a2")["data"]["msg_id"]
    call(carol, "msg.read_ack", msg_id=a2)
    assert sorted(r["msg_id"] for r in _receipts(published, alice)) == sorted([a1, a2])
    # Writing is reading: bob read a1 when he wrote b1, alice read b1 when she wrote a2.
    assert {r["msg_id"]: r["read_count"] for r in _receipts(published, alice)} == {a1: 2, a2: 1}
    assert [(r["msg_id"], r["read_count"]) for r in _receipts(published, bob)] == [(b1, 2)]


def test_removed_members_stop_counting(call, published, clock, alice, bob, carol):
    group_id = _group(call, alice, bob, carol)
    msg_id = call(alice, "msg.send_group", group_id=group_id, content="hi")["data"]["msg_id"]
    call(bob, "msg.read_ack", msg_id=msg_id)
    call(alice, "group.member_remove", group_id=group_id, member_ids=[bob.employee_id])
    clock.advance(2)
    call(carol, "msg.read_ack", msg_id=msg_id)
    assert [(r["read_count"], r["member_count"]) for r in _receipts(published, alice)] == [(1, 2), (1, 1)]


# --- group: coalescing ---------------------------------------------------------------------------


def test_a_burst_of_acks_gives_one_event_now_and_one_after_the_interval(
    call, published, clock, receipt_wakeups, alice, django_capture_on_commit_callbacks
):
    def flush(pk):
        with django_capture_on_commit_callbacks(execute=True):
            tasks.group_receipts_flush.delay(pk)

    members = EmployeeFactory.create_batch(50)
    group_id = _group(call, alice, *members)
    msg_id = call(alice, "msg.send_group", group_id=group_id, content="请大家确认")["data"]["msg_id"]
    for member in members:
        assert (
            call(member, "msg.read_ack", msg_id=msg_id, conversation_type="group", group_id=group_id)["code"]
            == 0
        )
    # Never one event per member: within one interval, one event.
    assert [(r["read_count"], r["member_count"]) for r in _receipts(published, alice)] == [(1, 50)]
    conversation_pk = Conversation.objects.get(group__group_id=group_id).pk
    # Exactly one delayed flush was asked for, due when the interval has passed.
    assert receipt_wakeups == [(conversation_pk, 1.0)]
    assert ReceiptTally.objects.get(message__msg_id=msg_id).pending

    clock.advance(0.5)
    flush(conversation_pk)  # early: nothing is due yet
    assert len(_receipts(published, alice)) == 1

    clock.advance(0.5)
    flush(conversation_pk)  # the delayed flush
    assert [(r["read_count"], r["member_count"]) for r in _receipts(published, alice)] == [(1, 50), (50, 50)]
    flush(conversation_pk)
    assert len(_receipts(published, alice)) == 2
    assert not ReceiptTally.objects.get(message__msg_id=msg_id).pending


def test_the_rate_bound_holds_over_many_intervals(call, published, clock, alice):
    """Acks every 0.25 s for 5 s: at most one event per message per second."""
    members = EmployeeFactory.create_batch(20)
    group_id = _group(call, alice, *members)
    msg_id = call(alice, "msg.send_group", group_id=group_id, content="x")["data"]["msg_id"]
    start = clock.now
    event_times = []
    for member in members:
        before = len(_receipts(published, alice))
        call(member, "msg.read_ack", msg_id=msg_id)
        if len(_receipts(published, alice)) > before:
            event_times.append((clock.now - start).total_seconds())
        clock.advance(0.25)
    assert all(later - earlier >= 1.0 for earlier, later in itertools.pairwise(event_times))
    assert event_times == [0.0, 1.0, 2.0, 3.0, 4.0]  # the first ack after each window emits
    counts = [r["read_count"] for r in _receipts(published, alice)]
    assert counts == [1, 5, 9, 13, 17]


def test_with_a_worker_the_later_flush_is_a_countdown_task(
    call, published, clock, monkeypatch, alice, bob, carol
):
    scheduled = []
    monkeypatch.setattr(tasks, "runs_eagerly", lambda: False)
    monkeypatch.setattr(tasks.group_receipts_flush, "delay", lambda pk: tasks.group_receipts_flush(pk))
    monkeypatch.setattr(
        tasks.group_receipts_flush, "apply_async", lambda args, countdown: scheduled.append((args, countdown))
    )
    group_id = _group(call, alice, bob, carol)
    msg_id = call(alice, "msg.send_group", group_id=group_id, content="x")["data"]["msg_id"]
    call(bob, "msg.read_ack", msg_id=msg_id)
    clock.advance(0.4)
    call(carol, "msg.read_ack", msg_id=msg_id)
    conversation_pk = Conversation.objects.get(group__group_id=group_id).pk
    assert scheduled == [([conversation_pk], pytest.approx(0.6))]
    assert len(_receipts(published, alice)) == 1


def test_a_lost_delayed_flush_is_replaced_by_the_next_ack(call, published, clock, receipt_wakeups, alice):
    members = EmployeeFactory.create_batch(3)
    group_id = _group(call, alice, *members)
    msg_id = call(alice, "msg.send_group", group_id=group_id, content="x")["data"]["msg_id"]
    call(members[0], "msg.read_ack", msg_id=msg_id)
    call(members[1], "msg.read_ack", msg_id=msg_id)
    assert len(receipt_wakeups) == 1  # and it never runs (its process died)
    clock.advance(3)
    call(members[2], "msg.read_ack", msg_id=msg_id)
    assert [r["read_count"] for r in _receipts(published, alice)] == [1, 3]
