"""msg.send_group from a member the bridge process has served in that group before: one
statement stores the message and checks all the usual way checks (Dispatcher._serve_optimistically,
services.message_send_group); whenever something no longer holds, nothing is stored and the
request gets the answer the usual way gives. The one-statement path is PostgreSQL's: on
SQLite every send goes the usual way, and these tests check the same answers there."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bridge.models import ProcessedRequest
from mchat.wire import encode
from messaging import services
from messaging.models import Conversation, Message, ReadPosition
from messaging.services.group_cache import KNOWN_GROUP_SENDS

POSTGRESQL = connection.vendor == "postgresql"


def _send(sender, seq_id, group_id, content="大家好"):
    topic = f"mchat/msg/req/{sender.employee_id}_dev1/{seq_id}"
    return topic, encode({"action": "msg.send_group", "group_id": group_id, "content": content})


@pytest.fixture
def serve(dispatcher, django_capture_on_commit_callbacks):
    """Serve one batch; (responses, SQL statements run)."""

    def run(messages):
        with django_capture_on_commit_callbacks(execute=True), CaptureQueriesContext(connection) as queries:
            outcomes = dispatcher.handle_batch(messages)
        return [o.response for o in outcomes], [q["sql"] for q in queries.captured_queries]

    return run


@pytest.fixture
def group_id(make_group, alice, bob, carol):
    return make_group(alice, alice, bob, carol).group_id


def _one_statement(statements) -> bool:
    # Savepoints aside (the test's transaction is around the dispatcher, as it is not in the bridge).
    run = [sql for sql in statements if "SAVEPOINT" not in sql]
    return len(run) == 1 and "verified AS" in run[0]


def _read_position(employee, group_id) -> int:
    return ReadPosition.objects.get(conversation__group__group_id=group_id, employee=employee).last_read_seq


def test_a_known_sender_is_served_by_one_checked_statement_with_the_usual_answer(
    serve, published, group_id, alice, bob
):
    (first,), _ = serve([_send(bob, "g1", group_id, "一")])
    published.clear()
    (second,), statements = serve([_send(bob, "g2", group_id, "二")])
    assert [r["code"] for r in (first, second)] == [0, 0]
    assert set(second["data"]) == set(first["data"]) == {"msg_id", "group_id", "sent_at", "seq"}
    assert second["data"]["group_id"] == group_id and second["data"]["seq"] == 2
    assert _one_statement(statements) == POSTGRESQL
    # One publish to the group topic, the same delivery the usual way makes.
    deliveries = [m for m in published.messages if not m.topic.startswith("mchat/msg/resp/")]
    assert [(m.topic, m.qos) for m in deliveries] == [(f"mchat/group/{group_id}", 1)]
    assert deliveries[0].payload == {
        "msg_id": second["data"]["msg_id"],
        "group_id": group_id,
        "from_employee_id": bob.employee_id,
        "content": "二",
        "sent_at": second["data"]["sent_at"],
        "type": "group",
        "seq": 2,
    }
    # The message is its own record: the known way records no answer.
    assert ProcessedRequest.objects.filter(seq_id="g2").exists() != POSTGRESQL
    assert _read_position(bob, group_id) == 2 and _read_position(alice, group_id) == 0
    conversation = Conversation.objects.get(group__group_id=group_id)
    assert conversation.last_seq == 2
    assert Message.objects.get(seq_id="g2").sent_at == conversation.last_activity_at


@pytest.mark.parametrize("change", ["removed from the group", "left the company", "group dismissed"])
def test_what_no_longer_holds_gets_the_usual_answer_and_nothing_stored(
    serve, published, group_id, alice, bob, change
):
    serve([_send(bob, "c1", group_id)])
    if change == "removed from the group":
        services.group_member_remove(actor=None, group_id=group_id, member_ids=[bob.employee_id])
    elif change == "left the company":
        bob.is_active = False
        bob.save()
    else:
        services.group_dismiss(actor=None, group_id=group_id)
    published.clear()
    (response,), statements = serve([_send(bob, "c2", group_id)])
    expected = {"removed from the group": 403, "left the company": 401, "group dismissed": 404}[change]
    assert response["code"] == expected
    assert not Message.objects.filter(seq_id="c2").exists()
    assert published.to(f"mchat/group/{group_id}") == []
    assert not _one_statement(statements)
    if POSTGRESQL:  # the failed check forgot it (SQLite never uses it)
        assert KNOWN_GROUP_SENDS.known(bob.employee_id, group_id) is None


def test_a_repeat_is_answered_with_its_message_and_delivered_once(
    serve, published, failed_statements, group_id, bob
):
    serve([_send(bob, "r0", group_id)])
    (first,), _ = serve([_send(bob, "r1", group_id, "一次")])
    (again,), _ = serve([_send(bob, "r1", group_id, "一次")])
    assert again == first and first["code"] == 0
    assert Message.objects.filter(seq_id="r1").count() == 1
    assert [m["content"] for m in published.to(f"mchat/group/{group_id}")].count("一次") == 1
    assert failed_statements == []


@pytest.mark.parametrize("change", ["removed from the group", "group dismissed"])
def test_a_repeat_after_the_sender_may_no_longer_send_gets_its_message_again(
    serve, published, group_id, bob, change
):
    # As a recorded answer is given again: the known way records nothing but the message.
    serve([_send(bob, "a0", group_id)])
    (first,), _ = serve([_send(bob, "a1", group_id)])
    if change == "removed from the group":
        services.group_member_remove(actor=None, group_id=group_id, member_ids=[bob.employee_id])
    else:
        services.group_dismiss(actor=None, group_id=group_id)
    published.clear()
    (again,), _ = serve([_send(bob, "a1", group_id)])
    assert again == first and first["code"] == 0
    assert published.to(f"mchat/group/{group_id}") == []
    (new,), _ = serve([_send(bob, "a2", group_id)])
    assert new["code"] == (403 if change == "removed from the group" else 404)


def test_an_answer_recorded_before_is_the_answer_again(serve, group_id, alice, bob):
    serve([_send(bob, "p0", group_id)])
    services.group_member_remove(actor=None, group_id=group_id, member_ids=[bob.employee_id])
    (refused,), _ = serve([_send(bob, "p1", group_id)])
    services.group_member_add(actor=None, group_id=group_id, member_ids=[bob.employee_id])
    serve([_send(bob, "p2", group_id)])  # known again
    (again,), statements = serve([_send(bob, "p1", group_id)])
    assert refused["code"] == 403 and again == refused
    assert not Message.objects.filter(seq_id="p1").exists()
    assert not _one_statement(statements)


def test_only_a_lone_send_of_text_to_a_known_group_is_optimistic(
    serve, make_group, group_id, alice, bob, carol
):
    other = make_group(carol, carol, bob).group_id
    serve([_send(bob, "n0", group_id)])
    # bob never sent to `other` through this process: the usual way.
    (response,), statements = serve([_send(bob, "n1", other)])
    assert response["code"] == 0 and not _one_statement(statements)
    # Invalid content: refused the usual way.
    (response,), statements = serve([_send(bob, "n2", group_id, {"type": "text"})])
    assert response["code"] == 400 and not _one_statement(statements)
    # Several at once: served one by one, the usual way.
    responses, statements = serve([_send(bob, "n3", group_id, "三"), _send(bob, "n4", other, "四")])
    assert [r["code"] for r in responses] == [0, 0] and not _one_statement(statements)
    assert [r["data"]["seq"] for r in responses] == [2, 2]
    (response,), statements = serve([_send(bob, "n5", other, "五")])
    assert response["code"] == 0 and response["data"]["seq"] == 3
    assert _one_statement(statements) == POSTGRESQL


def test_what_a_process_remembers_is_bounded(serve, monkeypatch, make_group, group_id, alice, bob):
    monkeypatch.setattr(KNOWN_GROUP_SENDS, "MAX_SENDS", 1)
    other = make_group(alice, alice, bob).group_id
    serve([_send(bob, "b1", group_id)])
    assert KNOWN_GROUP_SENDS.known(bob.employee_id, group_id) is not None
    serve([_send(bob, "b2", other)])  # a second: it starts over
    assert KNOWN_GROUP_SENDS.known(bob.employee_id, group_id) is None
    assert KNOWN_GROUP_SENDS.known(bob.employee_id, other) is not None
