"""The message store writes the same rows on PostgreSQL (store_postgresql: one statement, checked
or not) and on SQLite (store_sqlite: three statements). The suite runs on both databases (CI:
`.ci/with-services`), and this test pins the rows every path must leave: gap-free seq per
conversation in send order, a message's sent_at equal to its conversation's last activity when
it is the last one, and each sender's read position moved past its own messages."""

from __future__ import annotations

import pytest
from django.db import connection

from mchat.wire import encode
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


def test_every_store_path_leaves_the_same_rows(
    dispatcher, django_capture_on_commit_callbacks, alice, bob, carol
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
    for conversation in Conversation.objects.all():
        stored = list(conversation.messages.order_by("seq"))
        # sent_at never goes back as seq goes up, and the last one is the conversation's activity.
        assert [m.sent_at for m in stored] == sorted(m.sent_at for m in stored)
        assert stored[-1].sent_at == conversation.last_activity_at, connection.vendor
