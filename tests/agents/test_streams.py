"""Streamed replies, task states, typing and agent cards (issue 17) through the dispatcher."""

import pytest

from bridge.models import ProcessedRequest
from messaging import streams
from messaging.models import AgentAckWait, Message
from tests.factories import EmployeeFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_streams():
    streams.streams_forget()
    yield
    streams.streams_forget()


@pytest.fixture
def clock(monkeypatch):
    """streams' monotonic clock, moved by hand."""
    now = [1000.0]
    monkeypatch.setattr(streams.time, "monotonic", lambda: now[0])
    return now


@pytest.fixture
def tick(django_capture_on_commit_callbacks):
    """The bridge's periodic stream job, what it publishes published."""

    def run() -> None:
        with django_capture_on_commit_callbacks(execute=True):
            streams.streams_tick()

    return run


@pytest.fixture
def agent(make_agent):
    return make_agent("订单助手", "orders", capabilities=["订单查询"], ack_deadline_seconds=5)


def ok(response):
    assert response["code"] == 0, response
    return response["data"]


def inbox(published, employee):
    return published.to(f"mchat/inbox/{employee.employee_id}")


def test_a_stream_becomes_one_message_equal_to_its_deltas(call, published, clock, tick, agent, alice):
    started = ok(call(agent, "msg.stream_start", to_employee_id=alice.employee_id))
    assert started["seq"] == 1
    [start] = inbox(published, alice)
    assert start["type"] == "stream_start" and start["msg_id"] == started["msg_id"]
    deltas = [f"第{i}段。" for i in range(500)]
    for i, delta in enumerate(deltas):
        clock[0] += 0.001
        answer = ok(call(agent, "msg.stream_append", msg_id=started["msg_id"], delta=delta))
        assert answer["offset"] == sum(len(d) for d in deltas[:i])
    # No record of each append's answer, nothing stored yet.
    assert not ProcessedRequest.objects.filter(action="msg.stream_append").exists()
    assert Message.objects.get().content == ""
    # Coalesced: 0.5 s of appends gave a handful of deltas, each at its offset.
    got = [p for p in inbox(published, alice) if p["type"] == "stream_delta"]
    assert 1 <= len(got) <= 6
    clock[0] += 0.2
    tick()
    got = [p for p in inbox(published, alice) if p["type"] == "stream_delta"]
    text = ""
    for delta in got:
        assert delta["offset"] == len(text)
        text += delta["delta"]
    assert text == "".join(deltas)
    # While open, history shows the text so far.
    history = ok(call(alice, "msg.history", conversation_type="private", peer_employee_id=agent.employee_id))
    [shown] = history["messages"]
    assert (shown["streaming"], shown["content"]) == (True, "".join(deltas))
    listed = ok(call(alice, "conversation.list"))["conversations"][0]["last_message"]
    assert listed["streaming"] is True
    ended = ok(call(agent, "msg.stream_end", msg_id=started["msg_id"]))
    assert ended["length"] == len("".join(deltas))
    message = Message.objects.get()
    assert (message.content, message.stream_state, message.seq) == ("".join(deltas), "ended", 1)
    final = inbox(published, alice)[-1]
    assert (final["type"], final["stream"], final["content"]) == ("private", True, "".join(deltas))
    history = ok(call(alice, "msg.history", conversation_type="private", peer_employee_id=agent.employee_id))
    [shown] = history["messages"]
    assert (shown["stream"], shown["streaming"], shown["content"]) == (True, False, "".join(deltas))


def test_the_stream_keeps_the_conversations_numbers_gap_free(call, agent, alice):
    call(
        alice, "msg.send_private", to_employee_id=agent.employee_id, content="问题"
    )  # a task: answered later
    started = ok(call(agent, "msg.stream_start", to_employee_id=alice.employee_id))
    call(alice, "msg.send_private", to_employee_id=agent.employee_id, content="再问")
    assert started["seq"] == 2
    ok(call(agent, "msg.stream_end", msg_id=started["msg_id"], content="最终答案"))
    assert list(Message.objects.order_by("seq").values_list("seq", "content")) == [
        (1, "问题"),
        (2, "最终答案"),
        (3, "再问"),
    ]


def test_limits_and_refusals(call, clock, agent, alice, bob):
    started = ok(call(agent, "msg.stream_start", to_employee_id=alice.employee_id))
    msg_id = started["msg_id"]
    # One open stream per sender per conversation.
    assert call(agent, "msg.stream_start", to_employee_id=alice.employee_id)["code"] == 409
    # Bad input: 400 naming the field.
    assert call(agent, "msg.stream_append", msg_id=msg_id)["message"] == "delta 不能为空"
    assert call(agent, "msg.stream_append", msg_id=msg_id, delta="")["code"] == 400
    assert call(agent, "msg.stream_append", msg_id=msg_id, delta=5)["code"] == 400
    assert call(agent, "msg.stream_start")["code"] == 400
    assert call(agent, "msg.stream_start", to_employee_id="emp_nobody_001")["code"] == 404
    # 12,000 characters at most.
    ok(call(agent, "msg.stream_append", msg_id=msg_id, delta="字" * 11_999))
    refused = call(agent, "msg.stream_append", msg_id=msg_id, delta="多了")
    assert refused["code"] == 400 and "12000" in refused["message"]
    # Others: a recipient may not append; an outsider sees nothing.
    assert call(alice, "msg.stream_append", msg_id=msg_id, delta="x")["code"] == 403
    assert call(bob, "msg.stream_append", msg_id=msg_id, delta="x")["code"] == 404
    assert call(bob, "msg.stream_cancel", msg_id=msg_id)["code"] == 404
    assert call(bob, "msg.stream_end", msg_id=msg_id)["code"] == 404
    assert call(agent, "msg.stream_append", msg_id="msg_nope", delta="x")["code"] == 404
    ok(call(agent, "msg.stream_end", msg_id=msg_id))
    assert call(agent, "msg.stream_append", msg_id=msg_id, delta="x")["code"] == 409
    assert call(agent, "msg.stream_end", msg_id=msg_id)["code"] == 409


def test_a_repeated_append_appends_nothing(call, agent, alice):
    msg_id = ok(call(agent, "msg.stream_start", to_employee_id=alice.employee_id))["msg_id"]
    first = ok(call(agent, "msg.stream_append", seq_id="a-1", msg_id=msg_id, delta="你好"))
    again = ok(call(agent, "msg.stream_append", seq_id="a-1", msg_id=msg_id, delta="你好"))
    assert first == again == {"msg_id": msg_id, "seq": 1, "offset": 0, "length": 2}
    ok(call(agent, "msg.stream_end", msg_id=msg_id))
    assert Message.objects.get().content == "你好"


def test_a_recipient_cancels_and_the_streamer_is_told(call, published, agent, alice):
    msg_id = ok(call(agent, "msg.stream_start", to_employee_id=alice.employee_id))["msg_id"]
    ok(call(agent, "msg.stream_append", msg_id=msg_id, delta="正在查询"))
    canceled = ok(call(alice, "msg.stream_cancel", msg_id=msg_id))
    assert canceled["length"] == 4
    told = [p for p in inbox(published, agent) if p["type"] == "stream_cancel"]
    assert told and told[0]["canceled_by"] == alice.employee_id and told[0]["content"] == "正在查询"
    assert call(agent, "msg.stream_append", msg_id=msg_id, delta="x")["code"] == 409
    [shown] = ok(call(alice, "msg.history", conversation_type="private", peer_employee_id=agent.employee_id))[
        "messages"
    ]
    assert (shown["canceled"], shown["content"], shown["streaming"]) == (True, "正在查询", False)


def test_in_a_group_only_owner_or_admin_may_cancel_anothers_stream(call, published, alice, bob, carol, agent):
    gid = ok(call(alice, "group.create", name="客服群", member_ids=[bob.employee_id, agent.employee_id]))[
        "group_id"
    ]
    msg_id = ok(call(agent, "msg.stream_start", group_id=gid))["msg_id"]
    assert published.to(f"mchat/group/{gid}")[-1]["type"] == "stream_start"
    assert call(bob, "msg.stream_cancel", msg_id=msg_id)["code"] == 403
    assert call(carol, "msg.stream_cancel", msg_id=msg_id)["code"] == 404
    assert call(carol, "msg.stream_start", group_id=gid)["code"] == 403
    ok(call(alice, "msg.stream_cancel", msg_id=msg_id))
    assert published.to(f"mchat/group/{gid}")[-1]["type"] == "stream_cancel"


def test_a_restart_loses_at_most_the_unstored_seconds(call, clock, tick, agent, alice):
    msg_id = ok(call(agent, "msg.stream_start", to_employee_id=alice.employee_id))["msg_id"]
    ok(call(agent, "msg.stream_append", msg_id=msg_id, delta="存下的"))
    clock[0] += streams.STREAM_PERSIST_SECONDS + 0.1
    tick()  # the periodic store
    assert Message.objects.get().content == "存下的"
    ok(call(agent, "msg.stream_append", msg_id=msg_id, delta="丢失的"))
    streams.streams_forget()  # the process restarts
    [shown] = ok(call(alice, "msg.history", conversation_type="private", peer_employee_id=agent.employee_id))[
        "messages"
    ]
    assert (shown["streaming"], shown["content"]) == (True, "存下的")
    ok(call(agent, "msg.stream_append", msg_id=msg_id, delta="，继续"))
    ok(call(agent, "msg.stream_end", msg_id=msg_id))
    assert Message.objects.get().content == "存下的，继续"


def test_a_failed_end_keeps_the_text_for_a_retry(call, monkeypatch, agent, alice):
    msg_id = ok(call(agent, "msg.stream_start", to_employee_id=alice.employee_id))["msg_id"]
    ok(call(agent, "msg.stream_append", msg_id=msg_id, delta="未存的文字"))

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    with monkeypatch.context() as patched:
        patched.setattr(streams.events, "conversation_event", broken)
        assert call(agent, "msg.stream_end", msg_id=msg_id)["code"] == 500
    assert Message.objects.get().stream_state == "open"  # rolled back
    ok(call(agent, "msg.stream_append", msg_id=msg_id, delta="，继续"))  # still held, still open
    ok(call(agent, "msg.stream_end", msg_id=msg_id))
    assert Message.objects.get().content == "未存的文字，继续"


def test_an_idle_stream_ends_itself(call, published, clock, tick, agent, alice):
    msg_id = ok(call(agent, "msg.stream_start", to_employee_id=alice.employee_id))["msg_id"]
    ok(call(agent, "msg.stream_append", msg_id=msg_id, delta="一半"))
    clock[0] += streams.STREAM_IDLE_SECONDS + 1
    tick()
    message = Message.objects.get()
    assert (message.stream_state, message.content) == ("ended", "一半")
    assert inbox(published, alice)[-1]["stream"] is True


def test_task_states_reach_the_sender_and_working_answers_the_send(call, published, agent, alice, bob):
    assert (
        call(alice, "msg.send_private", seq_id="ask-1", to_employee_id=agent.employee_id, content="查订单")
        is None
    )
    message = Message.objects.get()
    history = ok(call(alice, "msg.history", conversation_type="private", peer_employee_id=agent.employee_id))
    assert history["messages"][0]["task_state"] == "submitted"
    working = ok(
        call(agent, "agent.task_update", msg_id=message.msg_id, state="working", status_text="正在查询")
    )
    assert working["state"] == "working"
    # The pending send is answered with 0, as a read ack would.
    [answer] = published.to(f"mchat/msg/resp/{alice.employee_id}_dev1/ask-1")
    assert answer["code"] == 0 and answer["data"]["msg_id"] == message.msg_id
    assert AgentAckWait.objects.get().state == "acknowledged"
    ok(call(agent, "agent.task_update", msg_id=message.msg_id, state="completed"))
    states = [p["state"] for p in inbox(published, alice) if p.get("type") == "task_status"]
    assert states == ["working", "completed"]
    assert [p["state"] for p in inbox(published, agent) if p.get("type") == "task_status"] == states
    # Terminal states never change; only the right party moves a task.
    assert call(agent, "agent.task_update", msg_id=message.msg_id, state="working")["code"] == 409
    assert call(alice, "agent.task_update", msg_id=message.msg_id, state="canceled")["code"] == 409
    assert call(bob, "agent.task_update", msg_id=message.msg_id, state="working")["code"] == 404
    assert call(agent, "agent.task_update", msg_id=message.msg_id, state="paused")["code"] == 400
    listed = ok(call(alice, "conversation.list"))["conversations"][0]["last_message"]
    assert listed["task_state"] == "completed"


def test_the_sender_cancels_a_task_and_the_agent_may_not(call, published, agent, alice):
    call(alice, "msg.send_private", to_employee_id=agent.employee_id, content="查订单")
    message = Message.objects.get()
    assert call(agent, "agent.task_update", msg_id=message.msg_id, state="canceled")["code"] == 403
    assert call(alice, "agent.task_update", msg_id=message.msg_id, state="working")["code"] == 403
    ok(call(alice, "agent.task_update", msg_id=message.msg_id, state="canceled"))
    assert [p["state"] for p in inbox(published, agent) if p.get("type") == "task_status"] == ["canceled"]
    reply = ok(call(alice, "msg.send_private", to_employee_id=EmployeeFactory().employee_id, content="x"))
    assert call(alice, "agent.task_update", msg_id=reply["msg_id"], state="canceled")["code"] == 400


def test_typing_is_delivered_with_an_expiry_and_throttled(call, published, alice, bob, agent):
    ok(call(alice, "msg.send_private", to_employee_id=bob.employee_id, content="在吗"))
    shown = ok(call(alice, "conversation.typing", peer_employee_id=bob.employee_id))
    assert shown["delivered"] is True
    again = ok(call(alice, "conversation.typing", peer_employee_id=bob.employee_id))
    assert again == {"expires_at": shown["expires_at"], "delivered": False}
    typing = [p for p in inbox(published, bob) if p.get("type") == "typing"]
    assert len(typing) == 1 and typing[0]["from_employee_id"] == alice.employee_id
    assert typing[0]["expires_at"] == shown["expires_at"]
    assert not [p for p in inbox(published, alice) if p.get("type") == "typing"]
    ok(call(alice, "conversation.typing", peer_employee_id=bob.employee_id, active=False))
    assert [p["active"] for p in inbox(published, bob) if p.get("type") == "typing"] == [True, False]
    # An agent's "thinking" status may last up to 120 s; a person's may not choose.
    call(alice, "msg.send_private", to_employee_id=agent.employee_id, content="?")
    thinking = ok(
        call(
            agent,
            "conversation.typing",
            peer_employee_id=alice.employee_id,
            status_text="正在查询订单…",
            ttl_seconds=120,
        )
    )
    assert thinking["delivered"]
    assert (
        call(agent, "conversation.typing", peer_employee_id=alice.employee_id, ttl_seconds=121)["code"] == 400
    )
    assert call(alice, "conversation.typing", peer_employee_id=bob.employee_id, ttl_seconds=10)["code"] == 400
    assert call(alice, "conversation.typing")["code"] == 400
    assert call(alice, "conversation.typing", group_id="grp_nope")["code"] == 404


def test_agent_card_over_mqtt_and_skills_match(call, make_agent, alice):
    from org import services

    agent = make_agent("订单助手", "orders", capabilities=["订单查询"])
    services.employee_update(
        actor=None,
        employee_id=agent.employee_id,
        updates={
            "agent": {
                "skills": [
                    {
                        "id": "track-parcel",
                        "name": "物流跟踪",
                        "description": "按订单号查询物流",
                        "examples": ["订单 1001 到哪了？"],
                        "tags": ["物流", "快递"],
                    }
                ]
            }
        },
    )
    card = ok(call(alice, "agent.card", employee_id=agent.employee_id))
    assert card["name"] == "订单助手" and card["capabilities"]["streaming"] is True
    assert card["skills"] == [
        {
            "id": "track-parcel",
            "name": "物流跟踪",
            "description": "按订单号查询物流",
            "tags": ["物流", "快递"],
            "examples": ["订单 1001 到哪了？"],
        }
    ]
    assert card["mchat"]["owner"]["employee_id"] == "emp_owner_001"
    assert card["mchat"]["reach"]["to_employee_id"] == agent.employee_id
    assert "working" in card["mchat"]["task_states"]
    assert call(alice, "agent.card", employee_id=alice.employee_id)["code"] == 404
    assert call(alice, "agent.card")["code"] == 400
    found = ok(call(alice, "agent.capability_list", skill="快递"))
    assert found["agent_ids"] == [agent.employee_id]
    with pytest.raises(Exception) as refused:
        services.employee_update(
            actor=None, employee_id=agent.employee_id, updates={"agent": {"skills": [{"id": "x"}]}}
        )
    assert "agent.skills[0].name" in str(refused.value)
