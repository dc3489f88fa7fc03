"""People and AI agents on the real stack: Mosquitto with the plugin, real bridges, mchat_sdk.

Two people and an agent talk; a stopped agent gives 504 and answers when it starts; capability
search; the bridge keeps serving while an answer waits; and the acknowledgement handled by
another bridge process than the send still answers the sender exactly once.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings

from bridge.client import connect_async, make_client
from mchat_sdk import Timeout
from mchat_sdk.events import Conversation
from mchat_sdk.examples import order_agent
from messaging.models import AgentAckWait
from tests.sdk.conftest import connection_for

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]

REPO = Path(__file__).resolve().parents[2]


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def test_two_people_and_an_agent_talk(live, sdk, issue_agent, run_agent):
    alice, alice_pw = live.issue("Alice")
    bob, bob_pw = live.issue("Bob")
    agent, agent_pw = issue_agent(
        "订单助手",
        "orders",
        capabilities=["订单查询", "物流跟踪"],
        skills_badge=["⚡实时响应"],
        owner=alice.employee_id,
    )
    helper = run_agent(agent, agent_pw, order_agent.answer)
    a = sdk(alice, alice_pw)
    b = sdk(bob, bob_pw)

    # Alice finds the agent by skill; it is online.
    found = wait_until(
        lambda: (r := a.agent_capability_list("订单查询"))["agent_profiles"][0]["online"] and r
    )
    assert found["agent_ids"] == [agent.employee_id]
    assert found["agent_profiles"][0]["skills_badge"] == ["⚡实时响应"]

    # A private question: the send is answered once the agent acknowledged it, then the reply.
    sent = a.send_private(agent.employee_id, "订单 1001 到哪了？")
    assert set(sent) >= {"msg_id", "to_employee_id", "sent_at"}
    assert sent["to_employee_id"] == agent.employee_id
    reply = a.wait_event(lambda e: e.message.from_employee_id == agent.employee_id, kind="message").message
    assert reply.conversation == Conversation("private", agent.employee_id)
    assert "订单 1001" in reply.text and "已发货" in reply.text and "顺丰" in reply.text
    receipt = a.wait_event(lambda e: e.data.get("msg_id") == sent["msg_id"], kind="receipt")
    assert receipt.data["reader_id"] == agent.employee_id

    # The two people talk to each other.
    b.send_private(alice.employee_id, "Alice，客户问 1003 的订单")
    assert a.wait_event(lambda e: e.message.text == "Alice，客户问 1003 的订单", kind="message")

    # In a group the agent answers when mentioned, and everybody sees it.
    gid = a.group_create("客服群", [bob.employee_id, agent.employee_id])["group_id"]
    assert b.wait_group(gid)
    a.send_group(gid, "大家好")  # not for the agent
    b.send_group(gid, f"@{agent.employee_id} 订单 1003 呢？")
    for person in (a, b):
        answer = person.wait_event(
            lambda e: e.message.group_id == gid and e.message.from_employee_id == agent.employee_id,
            kind="message",
        )
        assert "订单 1003" in answer.message.text and "已签收" in answer.message.text
    wait_until(lambda: helper.handled == 2)  # counted once its reply was answered
    assert helper.failed == 0


def test_a_stopped_agent_gives_504_and_answers_when_it_starts(live, sdk, issue_agent, run_agent):
    alice, alice_pw = live.issue("Alice")
    agent, agent_pw = issue_agent("订单助手", "orders", capabilities=["订单查询"], ack_deadline_seconds=1)
    seen: list[str] = []

    def handler(incoming):
        seen.append(incoming.text)
        return order_agent.answer(incoming)

    run_agent(agent, agent_pw, handler).stop()  # it has run once: its session exists, now stopped
    a = sdk(alice, alice_pw)

    started = time.monotonic()
    with pytest.raises(Timeout) as timed_out:
        a.send_private(agent.employee_id, "订单 1002 付款了吗？", seq_id="ask-1002", timeout=15)
    assert (timed_out.value.code, timed_out.value.message, timed_out.value.data) == (
        504,
        "Agent 响应超时",
        None,
    )
    assert 0.9 < time.monotonic() - started < 10
    # Retrying the same request gets the same answer and sends nothing twice.
    with pytest.raises(Timeout):
        a.send_private(agent.employee_id, "订单 1002 付款了吗？", seq_id="ask-1002", timeout=15)

    back = run_agent(agent, agent_pw, handler)
    reply = a.wait_event(lambda e: e.message.from_employee_id == agent.employee_id, kind="message").message
    assert "订单 1002" in reply.text and "待付款" in reply.text
    assert seen == ["订单 1002 付款了吗？"]
    wait_until(lambda: back.handled == 1)
    # Its late acknowledgement answered nobody a second time.
    assert AgentAckWait.objects.get().state == "expired"


def test_the_bridge_keeps_serving_while_an_answer_waits(live, sdk, issue_agent):
    alice, alice_pw = live.issue("Alice")
    bob, bob_pw = live.issue("Bob")
    agent, _agent_pw = issue_agent("慢助手", "slow", ack_deadline_seconds=3)
    a = sdk(alice, alice_pw)
    b = sdk(bob, bob_pw)
    outcome: list = []

    def ask():
        try:
            a.send_private(agent.employee_id, "在吗", timeout=15)
        except Timeout as exc:
            outcome.append(exc)

    waiting = threading.Thread(target=ask)
    waiting.start()
    wait_until(lambda: AgentAckWait.objects.exists())
    # Meanwhile the single bridge answers everyone, the waiting sender included.
    assert a.challenge()["challenge_id"]
    b.send_private(alice.employee_id, "我先说")
    assert a.wait_event(lambda e: e.message.text == "我先说", kind="message")
    assert waiting.is_alive(), "the send to the agent must still be waiting"
    waiting.join(15)
    assert [e.code for e in outcome] == [504]


# --- several bridge processes (manage.py runbridge, shared subscription) -----------------------


def _wait_serving(device, timeout: float = 30.0) -> None:
    """Until a bridge process answers (a new process takes a moment to start)."""
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        n += 1
        device.publish_request(f"ping{n}", json.dumps({"action": "auth.bind", "employee_id": "x"}).encode())
        try:
            device.response(f"ping{n}", timeout=1.0)
            return
        except TimeoutError:
            continue
    raise TimeoutError("no bridge process answered")


def _stop(process) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    return output


def _discard_session(instance: str) -> None:
    """End a stopped bridge instance's persistent session. Mosquitto keeps an offline session
    in the shared-subscription group and queues its share of requests there until it returns."""
    client = make_client(f"{settings.MCHAT_BRIDGE_USERNAME}_{instance}")
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    connect_async(client, persistent=False)  # clean start, session expiry 0
    client.loop_start()
    try:
        assert connected.wait(10), f"could not take over the session of {instance}"
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def bridges(live):
    """spawn(instance) -> a `manage.py runbridge --shared` process; all stopped at the end and
    their sessions discarded."""
    live.stop_bridge()  # the in-process bridge: these tests run real processes
    processes = {}

    def spawn(instance: str):
        process = live.spawn_bridge(instance=instance, shared=True)
        processes[instance] = process
        return process

    yield spawn
    for instance, process in processes.items():
        if process.poll() is None:
            process.kill()
            process.wait(10)
        _discard_session(instance)


def _ask(device, agent, seq_id: str, text: str = "订单 1001？") -> None:
    payload = {"action": "msg.send_private", "to_employee_id": agent.employee_id, "content": text}
    device.publish_request(seq_id, json.dumps(payload, ensure_ascii=False).encode())


def _answers(device, seq_id: str) -> list[dict]:
    return [
        json.loads(m.payload) for m in device.mqtt.messages_on(f"mchat/msg/resp/{device.client_id}/{seq_id}")
    ]


def test_the_acknowledgement_handled_by_another_bridge_process_answers_once(
    live, bridges, issue_agent, run_agent
):
    alice, alice_pw = live.issue("Alice")
    agent, agent_pw = issue_agent("订单助手", "orders", ack_deadline_seconds=60)
    device = live.connect(alice, alice_pw)
    first = bridges("first")
    _wait_serving(device)

    _ask(device, agent, "via-first")  # only the first process runs: it takes the send
    wait_until(lambda: AgentAckWait.objects.filter(seq_id="via-first").exists(), timeout=15)
    second = bridges("second")
    assert "stopped" in _stop(first)
    _discard_session("first")  # from now on every request reaches the second process
    _wait_serving(device)
    assert _answers(device, "via-first") == []  # still waiting for the agent

    run_agent(agent, agent_pw, order_agent.answer)  # its read_ack can only reach the second
    answer = device.response("via-first", timeout=15)
    assert answer["code"] == 0 and answer["data"]["to_employee_id"] == agent.employee_id
    time.sleep(0.5)  # a duplicate would arrive right behind
    assert len(_answers(device, "via-first")) == 1
    _stop(second)


def test_a_deadline_is_kept_by_another_bridge_process(live, bridges, issue_agent):
    alice, alice_pw = live.issue("Alice")
    agent, _agent_pw = issue_agent("离线助手", "away", ack_deadline_seconds=2)
    device = live.connect(alice, alice_pw)
    first = bridges("first")
    _wait_serving(device)
    _ask(device, agent, "expire-elsewhere")
    wait_until(lambda: AgentAckWait.objects.filter(seq_id="expire-elsewhere").exists(), timeout=15)
    _stop(first)  # the process that took the send is gone before the deadline
    _discard_session("first")

    second = bridges("second")
    answer = device.response("expire-elsewhere", timeout=20)
    assert (answer["code"], answer["message"], answer["data"]) == (504, "Agent 响应超时", None)
    time.sleep(0.5)
    assert len(_answers(device, "expire-elsewhere")) == 1
    _stop(second)


def test_two_bridge_processes_answer_every_send_to_agents_exactly_once(live, bridges, issue_agent, run_agent):
    alice, alice_pw = live.issue("Alice")
    bob, bob_pw = live.issue("Bob")
    present, present_pw = issue_agent("在线助手", "here", ack_deadline_seconds=30)
    absent, _absent_pw = issue_agent("离线助手", "away", ack_deadline_seconds=1)
    senders = [live.connect(alice, alice_pw), live.connect(bob, bob_pw)]
    bridges("one")
    bridges("two")
    for device in senders:
        _wait_serving(device)
    run_agent(present, present_pw, lambda incoming: None)  # acknowledges, says nothing

    asked = []
    for n in range(12):
        device = senders[n % 2]
        agent = present if n % 3 else absent
        seq_id = f"burst-{n}"
        _ask(device, agent, seq_id, text=f"第 {n} 个问题")
        asked.append((device, seq_id, 0 if agent is present else 504))
    for device, seq_id, code in asked:
        assert device.response(seq_id, timeout=30)["code"] == code, seq_id
    time.sleep(1.0)  # duplicates, if any, would have arrived by now
    assert [len(_answers(device, seq_id)) for device, seq_id, _ in asked] == [1] * len(asked)
    assert AgentAckWait.objects.filter(state="pending").count() == 0


def test_the_example_order_agent_runs_with_one_command(live, sdk, issue_agent, tmp_path):
    alice, alice_pw = live.issue("Alice")
    agent, agent_pw = issue_agent("订单助手", "orders", capabilities=["订单查询"])
    login = tmp_path / "agent.json"
    login.write_text(json.dumps({"mqtt_connection": connection_for(live, agent, agent_pw)}), encoding="utf-8")
    a = sdk(alice, alice_pw)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mchat_sdk.examples.order_agent",
            "--connection",
            str(login),
            "--session-expiry",
            "0",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        a.wait_event(
            lambda e: e.employee_id == agent.employee_id and e.data.get("status") == "online",
            kind="status",
            timeout=30,
        )
        a.send_private(agent.employee_id, "帮我查下订单 1003 和 9999")
        reply = a.wait_event(
            lambda e: e.message.from_employee_id == agent.employee_id, kind="message"
        ).message
        assert "订单 1003（人体工学椅）：已签收" in reply.text
        assert "没有找到订单 9999" in reply.text
        process.send_signal(signal.SIGINT)  # Ctrl-C: a graceful stop
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 0, output
        assert "is taking messages" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
