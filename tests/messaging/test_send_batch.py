"""msg.send_private requests that reach the bridge together: served by the many-handler in a
fixed number of statements, with the answers each would get alone."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bridge.models import ProcessedRequest
from mchat.wire import encode
from messaging.models import Conversation, Message, ReadPosition
from tests.factories import EmployeeFactory


def _send(sender, seq_id, *, device="dev1", **fields):
    topic = f"mchat/msg/req/{sender.employee_id}_{device}/{seq_id}"
    return topic, encode({"action": "msg.send_private", **fields})


@pytest.fixture
def batch(dispatcher, django_capture_on_commit_callbacks):
    def run(messages):
        with django_capture_on_commit_callbacks(execute=True):
            return [o.response for o in dispatcher.handle_batch(messages)]

    return run


def test_a_batch_numbers_each_conversation_in_arrival_order(batch, published, alice, bob, carol):
    messages = [
        _send(alice, "a1", to_employee_id=bob.employee_id, content="甲1"),
        _send(carol, "c1", to_employee_id=bob.employee_id, content="丙1"),
        _send(bob, "b1", to_employee_id=alice.employee_id, content="乙1"),
        _send(alice, "a2", to_employee_id=bob.employee_id, content="甲2"),
        _send(alice, "a3", to_employee_id=alice.employee_id, content="自己"),
    ]
    responses = batch(messages)
    assert [r["code"] for r in responses] == [0] * 5
    assert [r["data"]["seq"] for r in responses] == [1, 1, 2, 3, 1]
    alice_bob = Conversation.objects.get(employee_low=alice, employee_high=bob)
    assert list(alice_bob.messages.order_by("seq").values_list("content", flat=True)) == ["甲1", "乙1", "甲2"]
    assert alice_bob.last_seq == 3
    # Senders have read their own messages; bob's read position is his own message, not alice's last.
    positions = dict(
        ReadPosition.objects.filter(conversation=alice_bob).values_list(
            "employee__employee_id", "last_read_seq"
        )
    )
    assert positions == {alice.employee_id: 3, bob.employee_id: 2}
    # Deliveries follow the order of the numbers, each recipient once.
    bob_inbox = published.to(f"mchat/inbox/{bob.employee_id}")
    assert [m["content"] for m in bob_inbox] == ["甲1", "丙1", "乙1", "甲2"]
    assert [m["content"] for m in published.to(f"mchat/inbox/{alice.employee_id}")] == [
        "甲1",
        "乙1",
        "甲2",
        "自己",
    ]
    # Each message is its own idempotency record: the batch wrote no answers.
    assert ProcessedRequest.objects.count() == 0
    assert batch([messages[3]])[0] == responses[3]  # a repeat: the same answer
    assert Message.objects.count() == 5


def test_refusals_in_a_batch_write_nothing_and_leave_no_gap(batch, published, alice, bob):
    former = EmployeeFactory(employee_id="emp_gone_009", is_active=False)
    responses = batch(
        [
            _send(alice, "ok1", to_employee_id=bob.employee_id, content="一"),
            _send(alice, "bad-content", to_employee_id=bob.employee_id, content={"type": "text"}),
            _send(alice, "ghost", to_employee_id="emp_nobody_404", content="x"),
            _send(alice, "former", to_employee_id=former.employee_id, content="x"),
            _send(alice, "no-fields", content="x"),
            _send(alice, "ok2", to_employee_id=bob.employee_id, content="二"),
        ]
    )
    assert [r["code"] for r in responses] == [0, 400, 404, 404, 400, 0]
    assert [responses[0]["data"]["seq"], responses[5]["data"]["seq"]] == [1, 2]
    assert "emp_nobody_404" in responses[2]["message"]
    assert Message.objects.count() == 2
    # Refusals are answers too: recorded, so a retry gets the same one.
    assert ProcessedRequest.objects.filter(response__code__gt=0).count() == 4
    assert batch([_send(alice, "ghost", to_employee_id="emp_nobody_404", content="x")]) == [responses[2]]


def test_a_batch_uses_a_fixed_number_of_statements(batch, alice, bob, carol):
    batch([_send(alice, "warm-1", to_employee_id=bob.employee_id, content="0")])
    batch([_send(alice, "warm-2", to_employee_id=carol.employee_id, content="0")])
    peers = [bob, carol]
    with CaptureQueriesContext(connection) as few:
        batch([_send(alice, "few-0", to_employee_id=bob.employee_id, content="x")])
    with CaptureQueriesContext(connection) as many:
        batch(
            [
                _send(alice, f"many-{n}", to_employee_id=peers[n % 2].employee_id, content=str(n))
                for n in range(40)
            ]
        )
    assert len(many) == len(few)
    assert Message.objects.filter(seq_id__startswith="many-").count() == 40

    # No savepoint per request: as many for 40 as for one (the batch's, inside the test's
    # transaction, and on SQLite the store's own).
    def savepoints(queries):
        return sum(q["sql"].startswith("SAVEPOINT") for q in queries.captured_queries)

    assert savepoints(many) == savepoints(few) <= 2
    assert not any(
        q["sql"].startswith('INSERT INTO "bridge_processedrequest"') for q in many.captured_queries
    )


def test_a_repeat_in_a_batch_returns_the_first_message_without_a_failed_statement(
    batch, published, failed_statements, alice, bob
):
    (first,) = batch([_send(alice, "r1", to_employee_id=bob.employee_id, content="一次")])
    ProcessedRequest.objects.all().delete()
    published.clear()
    responses = batch(
        [
            _send(alice, "r2", to_employee_id=bob.employee_id, content="二"),
            _send(alice, "r1", to_employee_id=bob.employee_id, content="一次"),
            _send(alice, "r3", to_employee_id=bob.employee_id, content="三"),
        ]
    )
    # The store leaves the repeat out (no clash, no number taken): it gets its first message
    # back and the others still number without a gap.
    assert responses[1]["data"] == first["data"]
    assert [responses[0]["data"]["seq"], responses[2]["data"]["seq"]] == [2, 3]
    assert Message.objects.count() == 3
    assert [m["content"] for m in published.to(f"mchat/inbox/{bob.employee_id}")] == ["二", "三"]
    assert failed_statements == []


def test_other_actions_in_a_batch_keep_their_place(batch, alice, bob):
    responses = batch(
        [
            _send(alice, "p1", to_employee_id=bob.employee_id, content="先"),
            (
                "mchat/msg/req/emp_alice_001_dev1/h1",
                encode(
                    {
                        "action": "msg.history",
                        "conversation_type": "private",
                        "peer_employee_id": bob.employee_id,
                    }
                ),
            ),
            _send(alice, "p2", to_employee_id=bob.employee_id, content="后"),
        ]
    )
    assert [r["code"] for r in responses] == [0, 0, 0]
    # history ran after the first send and before the second.
    assert [m["content"] for m in responses[1]["data"]["messages"]] == ["先"]
    assert responses[2]["data"]["seq"] == 2


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_a_batch_opens_none_and_a_repeat_is_answered_in_it(
    dispatcher, published, failed_statements
):
    # As in the bridge: no test transaction around the dispatcher.
    alice = EmployeeFactory(employee_id="emp_alice_001")
    bob = EmployeeFactory(employee_id="emp_bob_002")
    (first,) = [
        o.response
        for o in dispatcher.handle_batch([_send(alice, "t1", to_employee_id=bob.employee_id, content="一")])
    ]
    published.clear()
    outcomes = dispatcher.handle_batch(
        [
            _send(alice, "t2", to_employee_id=bob.employee_id, content="二"),
            _send(alice, "t1", to_employee_id=bob.employee_id, content="一"),  # a repeat
            _send(alice, "t3", to_employee_id=bob.employee_id, content="三"),
        ]
    )
    responses = [o.response for o in outcomes]
    assert responses[1] == first
    assert [responses[0]["data"]["seq"], responses[2]["data"]["seq"]] == [2, 3]
    assert [m["content"] for m in published.to(f"mchat/inbox/{bob.employee_id}")] == ["二", "三"]
    assert Message.objects.count() == 3
    assert not connection.in_atomic_block
    assert failed_statements == []

    published.clear()
    with CaptureQueriesContext(connection) as queries:
        dispatcher.handle_batch(
            [_send(alice, f"u{n}", to_employee_id=bob.employee_id, content=str(n)) for n in range(5)]
        )
    statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    assert "SAVEPOINT" not in statements
    assert not any(
        '"bridge_processedrequest"' in q["sql"] and q["sql"].startswith("INSERT")
        for q in queries.captured_queries
    )
    if connection.vendor == "postgresql":
        # The pair was seen before: one statement stores the batch and checks the sender, the
        # recipient, their conversation and that no answer is recorded (services.message_send_private).
        # No BEGIN or COMMIT either (CaptureQueriesContext would not show them).
        assert statements == ["WITH"]
    assert len(published.to(f"mchat/inbox/{bob.employee_id}")) == 5


def _statements(dispatcher, messages):
    with CaptureQueriesContext(connection) as queries:
        outcomes = dispatcher.handle_batch(messages)
    return [o.response for o in outcomes], [q["sql"] for q in queries.captured_queries]


def test_recipients_come_with_the_senders_and_known_pairs_need_no_lookup(dispatcher, alice, bob, carol):
    carol.is_active = False
    carol.save()
    first, statements = _statements(
        dispatcher, [_send(alice, "k1", to_employee_id=bob.employee_id, content="1")]
    )
    assert first[0]["code"] == 0
    looked_up = [sql for sql in statements if "pair_conversation" in sql]
    assert len(looked_up) == 1  # a pair not seen before: its conversation is looked up (and made)

    responses, statements = _statements(
        dispatcher,
        [
            _send(alice, "k2", to_employee_id=bob.employee_id, content="2"),
            _send(alice, "k3", to_employee_id=carol.employee_id, content="3"),  # no longer active
            _send(alice, "k4", to_employee_id="emp_nobody_999", content="4"),
        ],
    )
    assert [r["code"] for r in responses] == [0, 404, 404]
    assert responses[0]["data"]["seq"] == 2
    # Neither the recipients nor the known pair's conversation cost a query of their own.
    assert not any("pair_conversation" in sql for sql in statements)
    assert sum('"org_employee" AS e' in sql for sql in statements) == 1


def test_a_remembered_conversation_that_is_gone_costs_a_retry_not_a_message(
    batch, published, failed_statements, alice, bob
):
    (sent,) = batch([_send(alice, "g1", to_employee_id=bob.employee_id, content="1")])
    assert sent["code"] == 0
    Conversation.objects.filter(kind=Conversation.Kind.PRIVATE).delete()  # its messages with it
    published.clear()

    (again,) = batch([_send(alice, "g2", to_employee_id=bob.employee_id, content="2")])
    assert again["code"] == 0 and again["data"]["seq"] == 1  # a new conversation
    assert [m["content"] for m in published.to(f"mchat/inbox/{bob.employee_id}")] == ["2"]
    (conversation,) = Conversation.objects.filter(kind=Conversation.Kind.PRIVATE)
    assert list(conversation.messages.values_list("seq_id", flat=True)) == ["g2"]
    assert failed_statements == []  # the store's pair check says so; no statement fails


def test_a_remembered_conversation_of_another_pair_is_never_written_to(
    batch, failed_statements, alice, bob, carol
):
    from messaging.participants import Participant
    from messaging.services import pair_cache

    batch([_send(alice, "p1", to_employee_id=carol.employee_id, content="给丙")])
    theirs = Conversation.objects.get(kind=Conversation.Kind.PRIVATE)
    # As if an id had been reused for another pair (SQLite may, after a rollback).
    key = (min(alice.pk, bob.pk), max(alice.pk, bob.pk))
    pair_cache.PRIVATE_CONVERSATION_IDS.remember([(theirs.pk, Participant.of(alice), Participant.of(bob))])

    (response,) = batch([_send(alice, "p2", to_employee_id=bob.employee_id, content="给乙")])
    assert response["code"] == 0 and response["data"]["seq"] == 1
    assert list(theirs.messages.values_list("seq_id", flat=True)) == ["p1"]
    assert Message.objects.get(seq_id="p2").conversation_id != theirs.pk
    assert pair_cache.PRIVATE_CONVERSATION_IDS.get(key) != theirs.pk
    assert failed_statements == []
