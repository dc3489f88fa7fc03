"""Streamed replies, task states and typing on the real stack (issue 17): Mosquitto with the
plugin, a real bridge, mchat_sdk clients and agent runtimes."""

import threading
import time

import pytest

from mchat_sdk import BadRequest, Forbidden, NotFound
from mchat_sdk.events import Conversation
from messaging import streams
from messaging.models import Message

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


@pytest.fixture(autouse=True)
def _fresh_streams():
    streams.streams_forget()
    yield
    streams.streams_forget()


def deltas_of(client, msg_id: str) -> str:
    """The text a recipient rebuilt from its stream_delta deliveries (each at its offset)."""
    text = ""
    for event in client.history_events:
        if (
            event.kind == "stream"
            and event.data.get("type") == "stream_delta"
            and event.data["msg_id"] == msg_id
        ):
            assert event.data["offset"] == len(text)
            text += event.data["delta"]
    return text


def test_500_deltas_become_one_message_and_a_late_subscriber_gets_the_text_so_far(live, sdk, issue_agent):
    alice, alice_pw = live.issue("Alice")
    agent, agent_pw = issue_agent("写作助手", "writer")
    a = sdk(alice, alice_pw)
    writer = sdk(agent, agent_pw, device="agent")
    started = writer.stream_start(Conversation("private", alice.employee_id))
    msg_id = started["msg_id"]
    assert (
        a.wait_event(lambda e: e.data.get("msg_id") == msg_id, kind="stream").data["type"] == "stream_start"
    )
    pieces = [f"第{i}句。" for i in range(500)]
    for piece in pieces[:250]:
        writer.stream_append(msg_id, piece)
    # A device that comes in now reads the text so far.
    late = sdk(alice, alice_pw, device="late")
    [shown] = late.history(Conversation("private", agent.employee_id))["messages"]
    assert shown["streaming"] is True and shown["content"] == "".join(pieces[:250])
    for piece in pieces[250:]:
        writer.stream_append(msg_id, piece)
    writer.stream_end(msg_id)
    final = a.wait_event(lambda e: e.message.msg_id == msg_id, kind="message")
    assert final.data["stream"] is True and final.message.text == "".join(pieces)
    assert list(Message.objects.values_list("content", "stream_state")) == [("".join(pieces), "ended")]
    # Coalesced deltas, each at its offset, far fewer than the appends; they add up to a
    # prefix of the text (what was appended after the last one comes with the message).
    assert "".join(pieces).startswith(deltas_of(a, msg_id))
    delivered = [e for e in a.history_events if e.kind == "stream" and e.data.get("type") == "stream_delta"]
    assert len(delivered) < 500
    [stored] = late.history(Conversation("private", agent.employee_id))["messages"]
    assert (stored["stream"], stored["streaming"], stored["content"]) == (True, False, "".join(pieces))


def test_a_cancel_reaches_the_streaming_agent(live, sdk, issue_agent, run_agent):
    alice, alice_pw = live.issue("Alice")
    agent, agent_pw = issue_agent("写作助手", "writer")
    stopped = threading.Event()

    def write_forever(incoming):
        with incoming.stream() as reply:
            while not reply.canceled:
                reply.append("很长的回答……")
                stopped.wait(0.05)  # the agent's own pace of producing text
        stopped.set()

    run_agent(agent, agent_pw, write_forever)
    a = sdk(alice, alice_pw)
    a.send_private(agent.employee_id, "写一篇长文", timeout=15)
    start = a.wait_event(lambda e: e.data.get("type") == "stream_start", kind="stream")
    a.wait_event(lambda e: e.data.get("type") == "stream_delta", kind="stream")
    a.stream_cancel(start.data["msg_id"])
    assert stopped.wait(15)
    message = Message.objects.get(msg_id=start.data["msg_id"])
    assert message.stream_state == "canceled" and message.content.startswith("很长的回答……")
    # The task ends completed: the handler returned normally.
    done = a.wait_event(lambda e: e.data.get("state") == "completed", kind="task_status")
    assert done.data["task_id"] != start.data["msg_id"]


def test_task_states_reach_every_device_of_the_sender_in_order(live, sdk, issue_agent, run_agent):
    alice, alice_pw = live.issue("Alice")
    agent, agent_pw = issue_agent("订单助手", "orders")

    def answer(incoming):
        incoming.set_state("input-required", "请提供订单号")
        return "请告诉我订单号"

    run_agent(agent, agent_pw, answer)
    phone, laptop = sdk(alice, alice_pw, device="phone"), sdk(alice, alice_pw, device="laptop")
    sent = phone.send_private(agent.employee_id, "查一下我的订单", timeout=15)
    for device in (phone, laptop):
        device.wait_event(lambda e: e.data.get("state") == "input-required", kind="task_status")
        states = [e.data["state"] for e in device.history_events if e.kind == "task_status"]
        assert states == ["working", "input-required"]
    # The sender cancels; the agent's device is told too; a finished task never changes.
    phone.task_update(sent["msg_id"], "canceled")
    laptop.wait_event(lambda e: e.data.get("state") == "canceled", kind="task_status")
    with pytest.raises(Exception) as refused:
        phone.task_update(sent["msg_id"], "canceled")
    assert refused.value.code == 409
    [shown] = [
        m
        for m in phone.history(Conversation("private", agent.employee_id))["messages"]
        if m["msg_id"] == sent["msg_id"]
    ]
    assert shown["task_state"] == "canceled"


def test_typing_is_delivered_with_its_expiry(live, sdk):
    alice, alice_pw = live.issue("Alice")
    bob, bob_pw = live.issue("Bob")
    a, b = sdk(alice, alice_pw), sdk(bob, bob_pw)
    a.send_private(bob.employee_id, "在吗")
    shown = a.typing(Conversation("private", bob.employee_id))
    event = b.wait_event(lambda e: e.data.get("from_employee_id") == alice.employee_id, kind="typing")
    assert event.data["expires_at"] == shown["expires_at"] and event.data["active"] is True
    # A person's indicator lasts about 6 s: its expiry is within that of now.
    from datetime import UTC, datetime

    expires = datetime.strptime(event.data["expires_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert 0 < (expires - datetime.now(UTC)).total_seconds() <= 6.5
    a.typing(Conversation("private", bob.employee_id), active=False)
    cleared = b.wait_event(lambda e: e.data.get("active") is False, kind="typing")
    assert cleared.data["from_employee_id"] == alice.employee_id


def test_a_bridge_restart_mid_stream_loses_at_most_the_unstored_seconds(live, sdk, issue_agent):
    alice, _alice_pw = live.issue("Alice")
    agent, agent_pw = issue_agent("写作助手", "writer")
    writer = sdk(agent, agent_pw, device="agent")
    msg_id = writer.stream_start(Conversation("private", alice.employee_id))["msg_id"]
    writer.stream_append(msg_id, "存下的部分。")
    wait_until(lambda: Message.objects.get(msg_id=msg_id).content == "存下的部分。")  # the periodic store
    writer.stream_append(msg_id, "未存的部分。")
    live.stop_bridge()
    streams.streams_forget()  # what the stopped process held in memory is gone
    live.start_bridge()
    writer.stream_append(msg_id, "重启之后。", seq_id="after-restart")
    writer.stream_end(msg_id)
    assert Message.objects.get(msg_id=msg_id).content == "存下的部分。重启之后。"


def test_outsiders_and_recipients_cannot_write_anothers_stream_and_bad_input_gets_400(live, sdk, issue_agent):
    alice, alice_pw = live.issue("Alice")
    bob, bob_pw = live.issue("Bob")
    agent, agent_pw = issue_agent("写作助手", "writer")
    a, b = sdk(alice, alice_pw), sdk(bob, bob_pw)
    writer = sdk(agent, agent_pw, device="agent")
    msg_id = writer.stream_start(Conversation("private", alice.employee_id))["msg_id"]
    with pytest.raises(NotFound):
        b.stream_append(msg_id, "插一句")
    with pytest.raises(NotFound):
        b.stream_cancel(msg_id)
    with pytest.raises(Forbidden):
        a.stream_append(msg_id, "插一句")
    for action, fields in [
        ("msg.stream_append", {"msg_id": msg_id, "delta": 42}),
        ("msg.stream_append", {"delta": "x"}),
        ("msg.stream_start", {"to_employee_id": alice.employee_id, "group_id": "grp_x"}),
        ("msg.stream_end", {"msg_id": msg_id, "content": ["x"]}),
        ("conversation.typing", {}),
        ("agent.task_update", {"msg_id": msg_id, "state": "paused"}),
        ("agent.card", {}),
    ]:
        with pytest.raises(BadRequest):
            writer.request(action, **fields)
    # Still serving, and the stream is intact.
    writer.stream_append(msg_id, "完整")
    writer.stream_end(msg_id)
    assert a.wait_event(lambda e: e.message.msg_id == msg_id, kind="message").message.text == "完整"
