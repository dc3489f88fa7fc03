"""mchat_sdk.Agent on the live stack: bounded concurrency, order per conversation, replies in the
same conversation, failures answered, async handlers, graceful stop."""

import asyncio
import threading
import time

import pytest

from mchat_sdk import Agent, Client, RequestTimeout
from org import services
from tests.broker_harness import wait_until
from tests.sdk.conftest import connection_for

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def agent_login(live):
    issued = services.employee_create(actor=None, name="助手", is_ai_agent=True, id_slug="helper")
    return issued.employee, issued.password


@pytest.fixture
def start_agent(live, agent_login):
    started: list[Agent] = []

    def start(handler, **options) -> Agent:
        employee, password = agent_login
        client = Client(connection_for(live, employee, password), device="agent", request_timeout=10.0)
        agent = Agent(client, handler, **options).start()
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop(timeout=10, end_session=True)


def test_handlers_run_at_most_concurrency_at_a_time_and_in_order_within_a_conversation(
    live, sdk, agent_login, start_agent
):
    agent_employee, _ = agent_login
    lock = threading.Lock()
    running = []
    peak = []
    handled: dict[str, list[str]] = {}
    # The first two handlers wait for each other (an event, not a guess at timing): with a
    # limit of two they meet, and a third conversation would have to run beside them to
    # break the limit while they work.
    meet = threading.Barrier(2)
    first_two = [True, True]

    def handler(incoming):
        with lock:
            running.append(incoming.sender)
            peak.append(len(running))
            handled.setdefault(incoming.sender, []).append(incoming.text)
            waits = bool(first_two) and first_two.pop()
        if waits:
            try:
                meet.wait(timeout=30)
            except threading.BrokenBarrierError:
                pass  # never met: max(peak) below says so
        time.sleep(0.3)  # work, during which a third handler would show up in `peak`
        with lock:
            running.remove(incoming.sender)
        return f"已处理：{incoming.text}"

    agent = start_agent(handler, concurrency=2)
    people = [sdk(*live.issue(name)) for name in ("甲", "乙", "丙")]
    for n in range(3):
        for person in people:
            person.send_private(agent_employee.employee_id, f"{person.employee_id}-{n}")
    for person in people:
        for n in range(3):
            person.wait_event(
                lambda e, t=f"已处理：{person.employee_id}-{n}": e.message.text == t, kind="message"
            )
    assert max(peak) == 2  # three conversations, never more than two at once
    for person in people:
        assert handled[person.employee_id] == [f"{person.employee_id}-{n}" for n in range(3)]
    assert wait_until(lambda: agent.handled == 9)


def test_a_failing_handler_gets_an_apology_and_an_async_handler_works(live, sdk, agent_login, start_agent):
    agent_employee, _ = agent_login
    person = sdk(*live.issue("甲"))

    async def handler(incoming):
        await asyncio.sleep(0.01)
        if "坏" in incoming.text:
            raise RuntimeError("broken")
        return {"type": "text", "text": f"好的：{incoming.text}"}

    agent = start_agent(handler, error_reply="出错了")
    person.send_private(agent_employee.employee_id, "坏消息")
    assert person.wait_event(lambda e: e.message.text == "出错了", kind="message")
    person.send_private(agent_employee.employee_id, "好消息")
    assert person.wait_event(lambda e: e.message.text == "好的：好消息", kind="message")
    assert wait_until(lambda: (agent.failed, agent.handled) == (1, 1))


def test_in_groups_the_agent_answers_only_when_mentioned_and_never_itself(
    live, sdk, agent_login, start_agent
):
    agent_employee, _ = agent_login
    person = sdk(*live.issue("甲"))
    seen = []

    def handler(incoming):
        seen.append(incoming.text)
        return f"回复：{incoming.text}"

    agent = start_agent(handler)
    gid = person.group_create("群", [agent_employee.employee_id])["group_id"]
    assert agent.client.wait_group(gid)  # the agent's client has joined the group topic
    live.wait_memberships_loaded(2)  # and the broker delivers it to the new member
    person.send_group(gid, "大家好")
    person.send_group(gid, f"@{agent_employee.employee_id} 你好")
    reply = person.wait_event(
        lambda e: e.message.text == f"回复：@{agent_employee.employee_id} 你好", kind="message"
    )
    assert reply.message.group_id == gid
    # A second mention as a marker: by its reply the agent has taken everything before it in
    # the group, its own first reply included.
    person.send_group(gid, f"@{agent_employee.employee_id} 再见")
    person.wait_event(lambda e: e.message.text == f"回复：@{agent_employee.employee_id} 再见", kind="message")
    # not "大家好", not its own replies
    assert seen == [f"@{agent_employee.employee_id} 你好", f"@{agent_employee.employee_id} 再见"]


def test_stop_lets_running_handlers_finish_and_send_their_replies(live, sdk, agent_login, start_agent):
    agent_employee, _ = agent_login
    person = sdk(*live.issue("甲"))
    entered = threading.Event()

    def slow(incoming):
        entered.set()
        time.sleep(1.0)
        return "慢慢来"

    agent = start_agent(slow)
    person.send_private(agent_employee.employee_id, "在吗")
    assert entered.wait(10)
    agent.stop(timeout=10, end_session=True)
    assert not agent.client.connected
    assert person.wait_event(lambda e: e.message.text == "慢慢来", kind="message")
    assert wait_until(lambda: agent.handled == 1)


def test_messages_sent_before_its_first_start_are_fetched_and_answered_in_order(
    live, sdk, agent_login, start_agent
):
    agent_employee, _ = agent_login
    person = sdk(*live.issue("甲"))
    for text in ("第一", "第二"):
        # The answer waits for an agent that is not running; the message is stored at once.
        with pytest.raises(RequestTimeout):
            person.send_private(agent_employee.employee_id, text, timeout=0.3)
    seen = []
    start_agent(lambda incoming: seen.append(incoming.text) or f"收到{incoming.text}")
    for text in ("收到第一", "收到第二"):
        assert person.wait_event(lambda e, t=text: e.message.text == t, kind="message")
    assert seen == ["第一", "第二"]
