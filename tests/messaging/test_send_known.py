"""msg.send_private between pairs the bridge process has seen: one statement stores the batch
and checks all it assumed (Dispatcher._serve_optimistically, services.message_send_private);
whenever something no longer holds, nothing is stored and the batch gets the answers the
usual way would give. The one-statement path is PostgreSQL's: on SQLite every batch goes the
usual way, and these tests check the same answers there."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bridge.dispatch import Dispatcher
from bridge.ratelimit import RateLimiter
from mchat.wire import encode
from messaging.models import Message

POSTGRESQL = connection.vendor == "postgresql"


def _send(sender, seq_id, to, content="你好"):
    topic = f"mchat/msg/req/{sender.employee_id}_dev1/{seq_id}"
    return topic, encode({"action": "msg.send_private", "to_employee_id": to.employee_id, "content": content})


@pytest.fixture
def serve(dispatcher, django_capture_on_commit_callbacks):
    """Serve one batch; (responses, SQL statements run)."""

    def run(messages, *, using=dispatcher):
        with django_capture_on_commit_callbacks(execute=True), CaptureQueriesContext(connection) as queries:
            outcomes = using.handle_batch(messages)
        return [o.response for o in outcomes], [q["sql"] for q in queries.captured_queries]

    return run


def _one_statement(statements) -> bool:
    # Savepoints aside (the test's transaction is around the dispatcher, as it is not in the bridge).
    run = [sql for sql in statements if "SAVEPOINT" not in sql]
    return len(run) == 1 and "verified AS" in run[0]


def test_a_known_pair_is_served_by_one_checked_statement_with_the_usual_answer(serve, published, alice, bob):
    (first,), _ = serve([_send(alice, "k1", bob, "一")])
    responses, statements = serve([_send(alice, "k2", bob, "二"), _send(bob, "k3", alice, "三")])
    assert [r["code"] for r in (first, *responses)] == [0, 0, 0]
    assert [r["data"]["seq"] for r in responses] == [2, 3]
    assert set(responses[0]["data"]) == set(first["data"]) == {"msg_id", "to_employee_id", "sent_at", "seq"}
    assert responses[1]["data"]["to_employee_id"] == alice.employee_id
    assert [m["content"] for m in published.to(f"mchat/inbox/{bob.employee_id}")] == ["一", "二", "三"]
    delivered = published.to(f"mchat/inbox/{alice.employee_id}")[-1]
    assert (
        delivered["from_employee_id"] == bob.employee_id and delivered["to_employee_id"] == alice.employee_id
    )
    assert _one_statement(statements) == POSTGRESQL


@pytest.mark.parametrize("change", ["sender left", "recipient left", "recipient became an agent"])
def test_what_no_longer_holds_gets_the_usual_answer_and_nothing_stored_twice(serve, alice, bob, change):
    serve([_send(alice, "c1", bob)])
    if change == "sender left":
        alice.is_active = False
        alice.save()
    elif change == "recipient left":
        bob.is_active = False
        bob.save()
    else:
        bob.is_ai_agent = True
        bob.save()
    (response,), statements = serve([_send(alice, "c2", bob)])
    if change == "sender left":
        assert response["code"] == 401
    elif change == "recipient left":
        assert response["code"] == 404
    else:
        assert response is None  # the answer waits for the agent's read_ack (bridge.deferred)
    assert Message.objects.filter(seq_id="c2").count() == (1 if change == "recipient became an agent" else 0)
    assert not _one_statement(statements)


def test_an_answer_recorded_before_is_the_answer_again(serve, alice, bob):
    serve([_send(alice, "r0", bob)])
    bob.is_active = False
    bob.save()
    (refused,), _ = serve([_send(alice, "r1", bob)])
    bob.is_active = True
    bob.save()
    serve([_send(alice, "r2", bob)])  # known again
    (again,), _ = serve([_send(alice, "r1", bob)])
    assert refused["code"] == again["code"] == 404 and again == refused
    assert not Message.objects.filter(seq_id="r1").exists()


def test_a_repeat_of_a_stored_send_is_answered_the_same_and_stored_once(serve, published, alice, bob):
    serve([_send(alice, "s0", bob)])
    (first,), _ = serve([_send(alice, "s1", bob, "一次")])
    (again,), _ = serve([_send(alice, "s1", bob, "一次")])
    assert again == first
    assert Message.objects.filter(seq_id="s1").count() == 1
    assert [m["content"] for m in published.to(f"mchat/inbox/{bob.employee_id}")].count("一次") == 1


def test_the_rate_limit_is_charged_once_and_refuses_as_usual(serve, published, alice, bob):
    limited = Dispatcher(published, limiter=RateLimiter({"message": [0.001, 3]}))
    (warm,), _ = serve([_send(alice, "l0", bob)], using=limited)  # 1 of 3 tokens
    two, statements = serve([_send(alice, "l1", bob), _send(alice, "l2", bob)], using=limited)
    assert [r["code"] for r in (warm, *two)] == [0, 0, 0]
    assert _one_statement(statements) == POSTGRESQL
    (refused,), _ = serve([_send(alice, "l3", bob)], using=limited)
    assert refused["code"] == 429  # three tokens, three sends: none was charged twice


def test_a_batch_the_limit_would_cut_goes_the_usual_way(serve, published, alice, bob):
    limited = Dispatcher(published, limiter=RateLimiter({"message": [0.001, 2]}))
    serve([_send(alice, "m0", bob)], using=limited)
    responses, _ = serve([_send(alice, "m1", bob), _send(alice, "m2", bob)], using=limited)
    assert [r["code"] for r in responses] == [0, 429]
    assert list(Message.objects.filter(seq_id__startswith="m").values_list("seq_id", flat=True)) == [
        "m0",
        "m1",
    ]


def test_a_pair_not_seen_and_content_naming_no_file_only_are_optimistic(serve, alice, bob, carol):
    serve([_send(alice, "n0", bob)])
    # carol was never written to by alice: the batch is served the usual way, in full.
    responses, statements = serve([_send(alice, "n1", bob), _send(alice, "n2", carol)])
    assert [r["code"] for r in responses] == [0, 0]
    assert not _one_statement(statements)
    responses, statements = serve([_send(alice, "n3", carol), _send(alice, "n4", bob, {"type": "text"})])
    assert [r["code"] for r in responses] == [0, 400]  # invalid content: refused the usual way
    assert not _one_statement(statements)


def test_what_a_process_remembers_is_bounded(serve, monkeypatch, alice, bob, carol):
    from messaging.services import pair_cache

    remembered = pair_cache.PRIVATE_CONVERSATION_IDS
    monkeypatch.setattr(remembered, "MAX_PAIRS", 1)
    serve([_send(alice, "b1", bob)])
    assert remembered.known(alice.employee_id, bob.employee_id) is not None
    assert remembered.known(bob.employee_id, alice.employee_id) is not None  # the same conversation
    serve([_send(alice, "b2", carol)])  # a second pair: it starts over
    assert remembered.known(alice.employee_id, bob.employee_id) is None
    assert remembered.known(alice.employee_id, carol.employee_id) is not None
