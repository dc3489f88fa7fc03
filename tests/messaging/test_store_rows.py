"""The message store writes the same rows on PostgreSQL (store_postgresql: one statement, checked
or not) and on SQLite (store_sqlite: three statements). The suite runs on both databases (CI:
`.ci/with-services`), and these tests pin the rows every path must leave: gap-free seq per
conversation in send order, a message's sent_at equal to its conversation's last activity when
it is the last one, and each sender's read position moved past its own messages; through the
dispatcher, and through the one front door (services.message_send_private) with one send, many,
repeated requests and refusals mixed in. No statement fails on the way (a repeat is left out,
not caught as a constraint violation)."""

from __future__ import annotations

import pytest
from django.db import connection

from mchat.errors import MChatError
from mchat.wire import encode
from messaging import services
from messaging.models import Conversation, Message, ReadPosition

pytestmark = pytest.mark.django_db


def _send(sender, seq_id, to, content):
    topic = f"mchat/msg/req/{sender.employee_id}_dev1/{seq_id}"
    return topic, encode({"action": "msg.send_private", "to_employee_id": to.employee_id, "content": content})


def _pair(conversation) -> tuple[str, str]:
    return (conversation.employee_low.employee_id, conversation.employee_high.employee_id)


def _rows():
    """What the store wrote, without ids, timestamps or random msg_ids."""
    messages = [
        (*_pair(m.conversation), m.seq, m.sender.employee_id, m.content, m.seq_id)
        for m in Message.objects.select_related(
            "conversation__employee_low", "conversation__employee_high", "sender"
        ).order_by(
            "conversation__employee_low__employee_id", "conversation__employee_high__employee_id", "seq"
        )
    ]
    positions = sorted(
        (*_pair(p.conversation), p.employee.employee_id, p.last_read_seq)
        for p in ReadPosition.objects.select_related(
            "conversation__employee_low", "conversation__employee_high", "employee"
        )
    )
    last_seqs = sorted(
        (c.employee_low.employee_id, c.employee_high.employee_id, c.last_seq)
        for c in Conversation.objects.select_related("employee_low", "employee_high")
    )
    return messages, positions, last_seqs


def _assert_activity_follows_seq():
    for conversation in Conversation.objects.all():
        stored = list(conversation.messages.order_by("seq"))
        # sent_at never goes back as seq goes up, and the last one is the conversation's activity.
        assert [m.sent_at for m in stored] == sorted(m.sent_at for m in stored)
        assert stored[-1].sent_at == conversation.last_activity_at, connection.vendor


def test_every_store_path_leaves_the_same_rows(
    dispatcher, django_capture_on_commit_callbacks, failed_statements, alice, bob, carol
):
    batches = [
        # New pairs: looked up, conversations created (the usual way on both databases).
        [_send(alice, "a1", bob, "一"), _send(alice, "a2", carol, "二"), _send(bob, "b1", alice, "三")],
        # Known pairs: PostgreSQL's one checked statement; SQLite's usual way.
        [_send(alice, "a3", bob, "四"), _send(bob, "b2", alice, "五"), _send(alice, "a4", bob, "六")],
        # One request alone.
        [_send(carol, "c1", alice, "七")],
    ]
    for batch in batches:
        with django_capture_on_commit_callbacks(execute=True):
            outcomes = dispatcher.handle_batch(batch)
        assert [o.response["code"] for o in outcomes] == [0] * len(batch)
    # A repeat: the message is its own idempotency record (no answer was recorded for it).
    with django_capture_on_commit_callbacks(execute=True):
        (again,) = dispatcher.handle_batch([_send(alice, "a3", bob, "四")])
    assert again.response["code"] == 0 and again.response["data"]["seq"] == 3
    assert failed_statements == []

    messages, positions, last_seqs = _rows()
    assert messages == [
        ("emp_alice_001", "emp_bob_002", 1, "emp_alice_001", "一", "a1"),
        ("emp_alice_001", "emp_bob_002", 2, "emp_bob_002", "三", "b1"),
        ("emp_alice_001", "emp_bob_002", 3, "emp_alice_001", "四", "a3"),
        ("emp_alice_001", "emp_bob_002", 4, "emp_bob_002", "五", "b2"),
        ("emp_alice_001", "emp_bob_002", 5, "emp_alice_001", "六", "a4"),
        ("emp_alice_001", "emp_carol_003", 1, "emp_alice_001", "二", "a2"),
        ("emp_alice_001", "emp_carol_003", 2, "emp_carol_003", "七", "c1"),
    ]
    assert positions == [
        ("emp_alice_001", "emp_bob_002", "emp_alice_001", 5),
        ("emp_alice_001", "emp_bob_002", "emp_bob_002", 4),
        ("emp_alice_001", "emp_carol_003", "emp_alice_001", 1),
        ("emp_alice_001", "emp_carol_003", "emp_carol_003", 2),
    ]
    assert last_seqs == [("emp_alice_001", "emp_bob_002", 5), ("emp_alice_001", "emp_carol_003", 2)]
    _assert_activity_follows_seq()


def _codes(outcomes):
    return [o.code if isinstance(o, MChatError) else 0 for o in outcomes]


def test_the_front_door_leaves_the_same_rows_for_one_send_many_repeats_and_refusals(
    published, django_capture_on_commit_callbacks, failed_statements, alice, bob, carol
):
    def send(sender, to, content, seq_id):
        client_id = f"{sender if isinstance(sender, str) else sender.employee_id}_dev1"
        to_id = to if isinstance(to, str) else to.employee_id
        return services.PrivateSend(sender, to_id, content, client_id, seq_id)

    def serve(sends, **options):
        with django_capture_on_commit_callbacks(execute=True):
            return services.message_send_private(sends=sends, **options)

    # One send.
    (first,) = serve([send(alice, bob, "一", "f1")])
    # Many, with refusals, a repeat of an earlier request and one request given twice.
    many = serve(
        [
            send(alice, bob, "二", "f2"),
            send(alice, "emp_nobody_404", "x", "f3"),  # unknown recipient
            send(alice, carol, {"type": "text"}, "f4"),  # invalid content
            send(bob, alice, "三", "f5"),
            send(alice, bob, "一", "f1"),  # repeat: the first message again
            send(alice, carol, "四", "f6"),
            send(alice, carol, "四", "f6"),  # the same request twice in one call
        ]
    )
    # A seq_id of this device that made a message in another conversation: refused.
    (reused,) = serve([send(alice, carol, "一", "f1")])
    # Senders by employee_id (before anyone is looked up): PostgreSQL's one checked
    # statement between pairs seen before; elsewhere None, and the usual way serves them.
    by_id = [
        send(alice.employee_id, bob.employee_id, "五", "f7"),
        send(carol.employee_id, alice.employee_id, "六", "f8"),
    ]
    known = serve(by_id)
    if connection.vendor == "postgresql":
        assert known is not None and [s.message.seq for s in known] == [4, 2]
    else:
        assert known is None
        looked_up = serve([send(alice, bob, "五", "f7"), send(carol, alice, "六", "f8")])
        assert [s.message.seq for s in looked_up] == [4, 2]
    # A repeat of it: the one statement checks for that and stores nothing (None); the
    # usual way answers with the same message.
    assert serve([send(alice.employee_id, bob.employee_id, "五", "f7")]) is None
    (repeat,) = serve([send(alice, bob, "五", "f7")])
    assert failed_statements == []

    assert first.message.seq == 1 and first.data["to_employee_id"] == bob.employee_id
    assert _codes(many) == [0, 404, 400, 0, 0, 0, 0]
    assert [many[i].message.seq for i in (0, 3, 4, 5, 6)] == [2, 3, 1, 1, 1]
    assert many[4].message.msg_id == first.message.msg_id
    assert many[5].message.msg_id == many[6].message.msg_id
    assert reused.code == 400 and "seq_id" in str(reused.message)
    assert repeat.message.seq == 4 and not repeat.waits

    messages, positions, last_seqs = _rows()
    assert messages == [
        ("emp_alice_001", "emp_bob_002", 1, "emp_alice_001", "一", "f1"),
        ("emp_alice_001", "emp_bob_002", 2, "emp_alice_001", "二", "f2"),
        ("emp_alice_001", "emp_bob_002", 3, "emp_bob_002", "三", "f5"),
        ("emp_alice_001", "emp_bob_002", 4, "emp_alice_001", "五", "f7"),
        ("emp_alice_001", "emp_carol_003", 1, "emp_alice_001", "四", "f6"),
        ("emp_alice_001", "emp_carol_003", 2, "emp_carol_003", "六", "f8"),
    ]
    assert positions == [
        ("emp_alice_001", "emp_bob_002", "emp_alice_001", 4),
        ("emp_alice_001", "emp_bob_002", "emp_bob_002", 3),
        ("emp_alice_001", "emp_carol_003", "emp_alice_001", 1),
        ("emp_alice_001", "emp_carol_003", "emp_carol_003", 2),
    ]
    assert last_seqs == [("emp_alice_001", "emp_bob_002", 4), ("emp_alice_001", "emp_carol_003", 2)]
    _assert_activity_follows_seq()
    # Each message delivered once to each side; repeats delivered nothing again.
    assert [m["content"] for m in published.to(f"mchat/inbox/{bob.employee_id}")] == ["一", "二", "三", "五"]
    assert [m["content"] for m in published.to(f"mchat/inbox/{carol.employee_id}")] == ["四", "六"]


def _group_send(sender, seq_id, group_id, content):
    topic = f"mchat/msg/req/{sender.employee_id}_dev1/{seq_id}"
    return topic, encode({"action": "msg.send_group", "group_id": group_id, "content": content})


def test_every_group_send_path_leaves_the_same_rows(
    dispatcher, django_capture_on_commit_callbacks, failed_statements, make_group, alice, bob, carol
):
    group = make_group(alice, alice, bob, carol)
    batches = [
        # First sends of each member: the usual way on both databases (the process learns them).
        [_group_send(alice, "g1", group.group_id, "一")],
        [_group_send(bob, "g2", group.group_id, "二")],
        # Lone sends of members seen before: PostgreSQL's one checked statement; SQLite's usual way.
        [_group_send(alice, "g3", group.group_id, "三")],
        [_group_send(bob, "g4", group.group_id, "四")],
        # Several at once: one by one, the usual way.
        [_group_send(alice, "g5", group.group_id, "五"), _group_send(carol, "g6", group.group_id, "六")],
        [_group_send(carol, "g7", group.group_id, "七")],
    ]
    for batch in batches:
        with django_capture_on_commit_callbacks(execute=True):
            outcomes = dispatcher.handle_batch(batch)
        assert [o.response["code"] for o in outcomes] == [0] * len(batch)
    # A repeat of a send the one statement stored (on PostgreSQL, no answer was recorded for it).
    with django_capture_on_commit_callbacks(execute=True):
        (again,) = dispatcher.handle_batch([_group_send(bob, "g4", group.group_id, "四")])
    assert again.response["code"] == 0 and again.response["data"]["seq"] == 4
    assert failed_statements == []

    stored = list(
        Message.objects.filter(conversation__group=group)
        .order_by("seq")
        .values_list("seq", "sender__employee_id", "content", "seq_id")
    )
    assert stored == [
        (1, "emp_alice_001", "一", "g1"),
        (2, "emp_bob_002", "二", "g2"),
        (3, "emp_alice_001", "三", "g3"),
        (4, "emp_bob_002", "四", "g4"),
        (5, "emp_alice_001", "五", "g5"),
        (6, "emp_carol_003", "六", "g6"),
        (7, "emp_carol_003", "七", "g7"),
    ]
    positions = sorted(
        ReadPosition.objects.filter(conversation__group=group).values_list(
            "employee__employee_id", "last_read_seq"
        )
    )
    assert positions == [("emp_alice_001", 5), ("emp_bob_002", 4), ("emp_carol_003", 7)]
    assert Conversation.objects.get(group=group).last_seq == 7
    _assert_activity_follows_seq()
