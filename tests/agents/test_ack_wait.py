"""msg.send_private to an AI agent: answered when the agent acknowledges, or 504 at its deadline
(DESIGN §5), through the real dispatcher; exactly one answer per request."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from bridge import deferred
from bridge.models import ProcessedRequest
from messaging.models import AgentAckWait, Message
from tests.factories import EmployeeFactory

pytestmark = pytest.mark.django_db

SENDER_DEVICE = "dev1"


@pytest.fixture
def alice(db):
    return EmployeeFactory(employee_id="emp_alice_001", name="Alice")


@pytest.fixture
def agent(make_agent):
    return make_agent("订单助手", "orders", capabilities=["订单查询"], ack_deadline_seconds=5)


@pytest.fixture
def sweep(django_capture_on_commit_callbacks):
    """The bridge's periodic deadline sweep, its answers published."""

    def run() -> int:
        with django_capture_on_commit_callbacks(execute=True):
            return deferred.expire_due()

    return run


def answer_topic(employee, seq_id: str) -> str:
    return f"mchat/msg/resp/{employee.employee_id}_{SENDER_DEVICE}/{seq_id}"


def pending_send(call, published, sender, agent, *, seq_id: str, text: str = "订单 1001 到哪了？") -> Message:
    assert (
        call(sender, "msg.send_private", seq_id=seq_id, to_employee_id=agent.employee_id, content=text)
        is None
    )
    assert published.to(answer_topic(sender, seq_id)) == []
    return Message.objects.get(seq_id=seq_id)


def test_the_answer_waits_for_the_agents_read_ack(call, published, alice, agent):
    message = pending_send(call, published, alice, agent, seq_id="770e8400")
    # Stored and delivered at once; the wait, not an answer record, holds the request.
    [delivery] = published.to(f"mchat/inbox/{agent.employee_id}")
    assert (delivery["msg_id"], delivery["content"]) == (message.msg_id, "订单 1001 到哪了？")
    assert published.to(answer_topic(alice, "770e8400")) == []
    assert not ProcessedRequest.objects.filter(seq_id="770e8400").exists()
    wait = AgentAckWait.objects.get()
    assert (wait.state, wait.seq, wait.agent_id) == ("pending", 1, agent.pk)
    assert wait.deadline == message.sent_at + timedelta(seconds=5)

    ack = call(
        agent,
        "msg.read_ack",
        msg_id=message.msg_id,
        conversation_type="private",
        peer_employee_id=alice.employee_id,
    )
    assert ack["code"] == 0
    [answer] = published.to(answer_topic(alice, "770e8400"))
    assert answer == {
        "seq_id": "770e8400",
        "code": 0,
        "message": "ok",
        "data": {
            "msg_id": message.msg_id,
            "to_employee_id": agent.employee_id,
            "sent_at": delivery["sent_at"],
            "seq": 1,
        },
    }
    assert AgentAckWait.objects.get().state == "acknowledged"
    # A repeat now gets the same answer, rebuilt from the message and its wait.
    assert (
        call(alice, "msg.send_private", seq_id="770e8400", to_employee_id=agent.employee_id, content="x")
        == answer
    )


def test_a_repeat_while_pending_publishes_nothing_and_after_resolution_replays_the_answer(
    call, published, alice, agent
):
    message = pending_send(call, published, alice, agent, seq_id="rep-1")
    assert (
        call(alice, "msg.send_private", seq_id="rep-1", to_employee_id=agent.employee_id, content="x") is None
    )
    assert published.to(answer_topic(alice, "rep-1")) == []
    assert Message.objects.count() == 1 and AgentAckWait.objects.count() == 1

    call(agent, "msg.read_ack", msg_id=message.msg_id)
    replay = call(alice, "msg.send_private", seq_id="rep-1", to_employee_id=agent.employee_id, content="x")
    assert replay["code"] == 0 and replay["data"]["msg_id"] == message.msg_id
    assert published.to(answer_topic(alice, "rep-1")) == [replay, replay]  # resolution, then replay
    assert Message.objects.count() == 1


def test_the_deadline_answers_504_and_the_message_is_kept(call, published, alice, agent, sweep):
    message = pending_send(call, published, alice, agent, seq_id="late-1")
    assert sweep() == 0  # not yet due
    AgentAckWait.objects.update(deadline=timezone.now() - timedelta(milliseconds=1))
    assert sweep() == 1
    [answer] = published.to(answer_topic(alice, "late-1"))
    assert answer == {"seq_id": "late-1", "code": 504, "message": "Agent 响应超时", "data": None}
    assert sweep() == 0  # exactly once

    # Kept: the agent finds it unread when it comes back, and its late ack answers nobody again.
    history = call(agent, "msg.history", conversation_type="private", peer_employee_id=alice.employee_id)
    assert [m["msg_id"] for m in history["data"]["messages"]] == [message.msg_id]
    assert history["data"]["last_read_seq"] == 0
    call(agent, "msg.read_ack", msg_id=message.msg_id)
    assert published.to(answer_topic(alice, "late-1")) == [answer]
    assert (
        call(alice, "msg.send_private", seq_id="late-1", to_employee_id=agent.employee_id, content="x")
        == answer
    )


def test_one_ack_answers_every_send_it_covers_and_a_reply_counts_as_read(call, published, alice, agent):
    first = pending_send(call, published, alice, agent, seq_id="m1")
    pending_send(call, published, alice, agent, seq_id="m2")
    third = pending_send(call, published, alice, agent, seq_id="m3")
    # The agent answers before acknowledging: writing moves its read position past all three.
    assert call(agent, "msg.send_private", to_employee_id=alice.employee_id, content="稍等")["code"] == 0
    assert AgentAckWait.objects.filter(state="pending").count() == 3
    # Acknowledging even the oldest then covers everything up to its position.
    call(agent, "msg.read_ack", msg_id=first.msg_id)
    answers = [published.to(answer_topic(alice, s)) for s in ("m1", "m2", "m3")]
    assert [[a["code"] for a in got] for got in answers] == [[0], [0], [0]]
    assert answers[2][0]["data"]["msg_id"] == third.msg_id


def test_only_ai_agents_make_the_sender_wait(call, published, alice, agent, make_agent):
    bob = EmployeeFactory(employee_id="emp_bob_001")
    assert call(alice, "msg.send_private", to_employee_id=bob.employee_id, content="hi")["code"] == 0
    # An agent writing to a person or to itself is answered at once; to another agent it waits.
    assert call(agent, "msg.send_private", to_employee_id=alice.employee_id, content="您好")["code"] == 0
    assert call(agent, "msg.send_private", to_employee_id=agent.employee_id, content="备忘")["code"] == 0
    helper = make_agent("助手二号", "helper")
    assert call(agent, "msg.send_private", to_employee_id=helper.employee_id, content="帮我查一下") is None
    assert AgentAckWait.objects.get().agent_id == helper.pk


def test_a_refused_send_to_an_agent_is_answered_at_once(call, published, alice, agent):
    refused = call(alice, "msg.send_private", to_employee_id=agent.employee_id, content="")
    assert refused["code"] == 400
    assert AgentAckWait.objects.count() == 0


def test_after_the_idempotency_record_is_purged_a_repeat_gets_the_same_outcome(
    call, published, alice, agent, sweep
):
    acknowledged = pending_send(call, published, alice, agent, seq_id="old-ok")
    call(agent, "msg.read_ack", msg_id=acknowledged.msg_id)
    pending_send(call, published, alice, agent, seq_id="old-late")
    AgentAckWait.objects.filter(seq_id="old-late").update(deadline=timezone.now() - timedelta(seconds=1))
    sweep()
    ProcessedRequest.objects.all().delete()

    again = call(alice, "msg.send_private", seq_id="old-ok", to_employee_id=agent.employee_id, content="x")
    assert again["code"] == 0 and again["data"]["msg_id"] == acknowledged.msg_id
    late = call(alice, "msg.send_private", seq_id="old-late", to_employee_id=agent.employee_id, content="x")
    assert (late["code"], late["message"]) == (504, "Agent 响应超时")
    assert Message.objects.filter(sender=alice).count() == 2


def test_the_agents_default_deadline_without_a_profile_is_ten_seconds(call, published, alice):
    bare = EmployeeFactory(employee_id="ai_bare_001", is_ai_agent=True)
    message = pending_send(call, published, alice, bare, seq_id="bare-1")
    assert AgentAckWait.objects.get().deadline == message.sent_at + timedelta(seconds=10)


def test_resolved_waits_are_purged_after_the_idempotency_window(call, published, alice, agent, settings):
    message = pending_send(call, published, alice, agent, seq_id="purge-1")
    call(agent, "msg.read_ack", msg_id=message.msg_id)
    assert deferred.resolved_waits_purge() == 0
    AgentAckWait.objects.update(
        resolved_at=timezone.now() - timedelta(hours=settings.MCHAT_IDEMPOTENCY_TTL_HOURS + 1)
    )
    assert deferred.resolved_waits_purge() == 1


def test_the_sweeps_due_check_agrees_with_the_deadline_to_the_microsecond(
    call, published, alice, agent, sweep
):
    from messaging.agent_waits import _any_due

    pending_send(call, published, alice, agent, seq_id="edge-1")
    for deadline in (
        datetime(2030, 5, 6, 7, 8, 9, 0, tzinfo=UTC),
        datetime(2030, 5, 6, 7, 8, 9, 500000, tzinfo=UTC),
        datetime(2030, 5, 6, 7, 8, 9, 999999, tzinfo=UTC),
    ):
        AgentAckWait.objects.update(deadline=deadline)
        assert not _any_due(deadline - timedelta(microseconds=1))
        assert _any_due(deadline)
        assert _any_due(deadline + timedelta(microseconds=1))
    assert sweep() == 0  # the real clock is before 2030
    AgentAckWait.objects.update(state=AgentAckWait.State.EXPIRED)
    assert not _any_due(datetime(2031, 1, 1, tzinfo=UTC))  # resolved waits are never due
