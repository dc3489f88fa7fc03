"""mchat_sdk.Client against the real stack: Mosquitto with the plugin, a real bridge."""

import asyncio
import json
import socket
import threading

import pytest

from bridge.ratelimit import RateLimiter
from mchat_sdk import (
    BadRequest,
    Client,
    ConnectionFailed,
    Forbidden,
    NotFound,
    RateLimited,
    RequestTimeout,
)
from mchat_sdk.events import Conversation
from messaging.models import Message
from org.models import AuthChallenge
from tests.sdk.conftest import connection_for

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]


def test_requests_return_data_and_refusals_raise_the_error_of_their_code(live, sdk):
    alice, password = live.issue("Alice")
    client = sdk(alice, password)

    assert client.bind() == {}
    assert set(client.challenge()) == {"challenge_id", "token", "expires_at"}
    with pytest.raises(BadRequest) as unknown:
        client.request("no.such_action")
    assert unknown.value.code == 400 and "no.such_action" in unknown.value.message
    with pytest.raises(Forbidden):
        client.employee_create("新人")  # not an org admin
    with pytest.raises(NotFound):
        client.group_info("grp_missing")
    with pytest.raises(BadRequest, match="member_ids"):
        client.group_create("空群", [])


def test_a_repeated_seq_id_is_answered_without_executing_again(live, sdk):
    alice, password = live.issue("Alice")
    client = sdk(alice, password)
    first = client.request("auth.challenge", seq_id="same-seq-1")
    again = client.request("auth.challenge", seq_id="same-seq-1")
    assert first == again
    assert AuthChallenge.objects.count() == 1


def test_no_answer_raises_request_timeout_and_a_retry_with_the_same_seq_id_is_safe(live, sdk):
    alice, password = live.issue("Alice")
    client = sdk(alice, password)
    live.stop_bridge()
    with pytest.raises(RequestTimeout) as timed_out:
        client.request("auth.challenge", seq_id="retry-me", timeout=0.5)
    assert timed_out.value.seq_id == "retry-me"
    live.start_bridge()
    # The SDK sends the same seq_id again after each timeout (the first one may precede the
    # new bridge's subscription).
    answered = client.request("auth.challenge", seq_id="retry-me", timeout=3, retries=3)
    assert client.request("auth.challenge", seq_id="retry-me") == answered
    assert AuthChallenge.objects.count() == 1


def test_rate_limited_requests_raise_429_or_are_retried_after_the_wait(live, sdk):
    alice, password = live.issue("Alice")
    client = sdk(alice, password)
    live.bridge.dispatcher.limiter = RateLimiter({"auth": [4, 1]})
    client.challenge()
    with pytest.raises(RateLimited) as limited:
        client.challenge()
    assert limited.value.retry_after_ms > 0
    assert set(client.request("auth.challenge", retries=3)) == {"challenge_id", "token", "expires_at"}


def test_a_wrong_password_is_refused(live):
    alice, _password = live.issue("Alice")
    client = Client(connection_for(live, alice, "wrong"), device="x")
    with pytest.raises(ConnectionFailed):
        client.connect(timeout=5)
    client.close()


def test_online_status_is_retained_and_an_abrupt_loss_publishes_the_offline_will_then_it_reconnects(
    live, sdk
):
    alice, alice_pw = live.issue("Alice")
    bob, bob_pw = live.issue("Bob")
    laptop = sdk(alice, alice_pw, device="laptop")
    watcher = sdk(bob, bob_pw)

    # Retained: the watcher, connected later, still sees alice online with her device.
    online = watcher.wait_event(lambda e: e.employee_id == alice.employee_id, kind="status")
    assert online.data["status"] == "online"
    assert (online.data["device"], online.data["client_id"]) == ("laptop", laptop.client_id)
    assert watcher.presence[alice.employee_id]["status"] == "online"

    laptop._mqtt.socket().shutdown(socket.SHUT_RDWR)  # the network drops: no DISCONNECT packet
    offline = watcher.wait_event(
        lambda e: e.employee_id == alice.employee_id and e.data.get("status") == "offline", kind="status"
    )
    assert offline.data["client_id"] == laptop.client_id
    assert offline.data["updated_at"].endswith("Z")

    back = laptop.wait_event(
        lambda e: e.data.get("state") == "connected" and e.data["session_present"],
        kind="connection",
        timeout=15,
    )
    assert back is not None
    assert laptop.request("auth.challenge")  # requests work again on the new connection
    watcher.wait_event(
        lambda e: (
            e.employee_id == alice.employee_id
            and e.data.get("status") == "online"
            and e.data["updated_at"] > offline.data["updated_at"]
        ),
        kind="status",
    )


def test_close_announces_offline_and_the_session_keeps_messages_until_the_device_returns(live, sdk):
    alice, alice_pw = live.issue("Alice")
    bob, bob_pw = live.issue("Bob")
    sender = sdk(alice, alice_pw)
    phone = sdk(bob, bob_pw, device="phone")
    phone.close()
    sender.wait_event(
        lambda e: e.employee_id == bob.employee_id and e.data.get("status") == "offline", kind="status"
    )

    sent = sender.send_private(bob.employee_id, "你不在时发的")
    again = sdk(bob, bob_pw, device="phone")  # same client id: the persistent session resumes
    got = again.wait_event(lambda e: e.message.msg_id == sent["msg_id"], kind="message")
    assert got.message.text == "你不在时发的"
    assert "recovered" not in got.data  # delivered by the broker from the session, not fetched


def test_group_topics_follow_membership_notifications(live, sdk):
    alice, alice_pw = live.issue("Alice")
    bob, bob_pw = live.issue("Bob")
    owner = sdk(alice, alice_pw)
    member = sdk(bob, bob_pw)

    group = owner.group_create("项目组", [bob.employee_id], description="协作")
    gid = group["group_id"]
    assert member.wait_group(gid)
    assert member.groups[gid]["name"] == "项目组"
    owner.send_group(gid, "大家好")
    got = member.wait_event(lambda e: e.message.text == "大家好", kind="message")
    assert got.message.conversation == Conversation("group", gid)

    owner.group_member_remove(gid, [bob.employee_id])
    member.wait_event(lambda e: e.data.get("type") == "member_removed", kind="notification")
    assert gid not in member.groups
    owner.send_group(gid, "你已不在群里")
    owner.wait_event(lambda e: e.message.text == "你已不在群里", kind="message")  # published
    assert not any(e.message.text == "你已不在群里" for e in member.history_events if e.message)


def test_groups_that_exist_before_connecting_are_followed_from_group_list(live, sdk):
    alice, alice_pw = live.issue("Alice")
    bob, bob_pw = live.issue("Bob")
    owner = sdk(alice, alice_pw)
    gid = owner.group_create("老群", [bob.employee_id])["group_id"]
    live.wait_memberships_loaded(2)
    member = sdk(bob, bob_pw, device="later")
    assert gid in member.groups
    owner.send_group(gid, "早")
    assert member.wait_event(lambda e: e.message.text == "早", kind="message").message.group_id == gid


def test_missed_deliveries_are_detected_by_seq_and_fetched_in_order(live, sdk):
    alice, alice_pw = live.issue("Alice")
    bob, bob_pw = live.issue("Bob")
    sender = sdk(alice, alice_pw)
    receiver = sdk(bob, bob_pw)
    sender.send_private(bob.employee_id, "一")
    receiver.wait_event(lambda e: e.message.text == "一", kind="message")

    # Lost deliveries: the receiver is off its inbox while two messages are sent. Off and
    # back on only once the broker has said so (UNSUBACK, SUBACK): a request sent before
    # would race the (un)subscription, and "二" could arrive or "四" be lost.
    inbox = f"mchat/inbox/{bob.employee_id}"
    unsubscribed = threading.Event()
    receiver._mqtt.on_unsubscribe = lambda *args: unsubscribed.set()
    receiver._mqtt.unsubscribe(inbox)
    assert unsubscribed.wait(10), "no UNSUBACK"
    sender.send_private(bob.employee_id, "二")
    sender.send_private(bob.employee_id, "三")
    _, mid = receiver._mqtt.subscribe(inbox, qos=1)
    assert receiver._wait_subscribed(mid, 10), "no SUBACK"
    sender.send_private(bob.employee_id, "四")
    receiver.wait_event(lambda e: e.message.text == "四", kind="message")

    texts = [
        e.message.text
        for e in receiver.history_events
        if e.kind == "message" and e.message.from_employee_id == alice.employee_id
    ]
    assert texts == ["一", "二", "三", "四"]
    recovered = [
        e.message.text for e in receiver.history_events if e.kind == "message" and e.data.get("recovered")
    ]
    assert recovered == ["二", "三"]


def test_callbacks_and_the_async_iterator_see_the_same_deliveries(live, sdk):
    alice, alice_pw = live.issue("Alice")
    bob, bob_pw = live.issue("Bob")
    sender = sdk(alice, alice_pw)
    receiver = sdk(bob, bob_pw)
    seen = []
    remove = receiver.on("message", lambda event: seen.append(event.message.text))

    async def first_two():
        texts = []
        async for event in receiver.events("message"):
            texts.append(event.message.text)
            if len(texts) == 2:
                return texts

    async def scenario():
        reader = asyncio.ensure_future(first_two())
        # One pass of the event loop (no time passes): the reader runs up to its first
        # wait, and the iterator has registered by then.
        await asyncio.sleep(0)
        await sender.arequest("msg.send_private", to_employee_id=bob.employee_id, content="甲")
        await asyncio.to_thread(sender.send_private, bob.employee_id, {"type": "text", "text": "乙"})
        return await asyncio.wait_for(reader, 10)

    assert asyncio.run(scenario()) == ["甲", "乙"]
    assert seen == ["甲", "乙"]
    remove()


def test_read_receipts_and_history(live, sdk):
    alice, alice_pw = live.issue("Alice")
    bob, bob_pw = live.issue("Bob")
    sender = sdk(alice, alice_pw)
    reader = sdk(bob, bob_pw)
    sent = sender.send_private(bob.employee_id, "请确认")
    message = reader.wait_event(lambda e: e.message.msg_id == sent["msg_id"], kind="message").message
    reader.read_ack(message)
    receipt = sender.wait_event(lambda e: e.data.get("msg_id") == sent["msg_id"], kind="receipt")
    assert receipt.data["reader_id"] == bob.employee_id
    assert receipt.conversation == Conversation("private", bob.employee_id)

    history = sender.messages(Conversation("private", bob.employee_id))
    assert [(m.msg_id, m.text) for m in history] == [(sent["msg_id"], "请确认")]
    summary = reader.conversation_list()["conversations"][0]
    assert (summary["peer_employee_id"], summary["unread_count"]) == (alice.employee_id, 0)
    assert json.dumps(summary, ensure_ascii=False)


def test_an_admin_creates_an_agent_that_logs_in_with_the_returned_connection(live, sdk):
    admin, admin_pw = live.issue("管理员", org_admin=True)
    client = sdk(admin, admin_pw)
    created = client.employee_create(
        "订单助手",
        is_ai_agent=True,
        id_slug="orders",
        agent={"capabilities": ["订单查询"], "skills_badge": ["⚡实时响应"], "ack_deadline_seconds": 5},
    )
    assert created["employee_id"] == "ai_orders_001"
    updated = client.employee_update("ai_orders_001", agent={"capabilities": ["订单查询", "物流跟踪"]})
    assert "agent.capabilities" in updated["fields"]
    found = client.agent_capability_list("物流")
    assert found["agent_ids"] == ["ai_orders_001"]
    assert found["agent_profiles"][0]["owner_id"] == admin.employee_id

    agent = Client(created, device="agent")  # the employee.create answer is a valid login
    try:
        agent.connect()
        assert agent.client_id == "ai_orders_001_agent"
        tree = agent.org_tree()
        assert {"employee_id": "ai_orders_001", "is_ai_agent": True}.items() <= next(
            e for e in tree["employees"] if e["employee_id"] == "ai_orders_001"
        ).items()
        assert agent.org_tree(version=tree["version"]) == {"version": tree["version"], "unchanged": True}
    finally:
        agent.close(end_session=True)


def test_group_lifecycle_helpers(live, sdk):
    alice, alice_pw = live.issue("Alice")
    bob, bob_pw = live.issue("Bob")
    owner = sdk(alice, alice_pw)
    member = sdk(bob, bob_pw)
    gid = owner.group_create("临时群", [bob.employee_id])["group_id"]
    assert member.wait_group(gid)
    assert owner.group_update(gid, name="改名群")["updated_fields"] == ["name"]
    member.wait_event(lambda e: e.data.get("type") == "group_renamed", kind="notification")
    assert member.groups[gid]["name"] == "改名群"
    sent = owner.send_group(gid, "马上撤回")
    assert owner.recall(sent["msg_id"])["msg_id"] == sent["msg_id"]
    assert member.wait_event(lambda e: e.data.get("msg_id") == sent["msg_id"], kind="recall")
    assert [g["group_id"] for g in member.group_list()] == [gid]
    assert owner.group_dismiss(gid)["group_id"] == gid  # fetches the auth.challenge itself
    member.wait_event(lambda e: e.data.get("type") == "group_dismissed", kind="notification")
    assert gid not in member.groups


def test_an_agent_appending_faster_than_its_rate_limit_is_slowed_not_failed(live, sdk):
    alice, alice_pw = live.issue("Alice")
    bob, _bob_pw = live.issue("Bob")
    writer = sdk(alice, alice_pw)
    msg_id = writer.stream_start(f"private:{bob.employee_id}")["msg_id"]
    live.bridge.dispatcher.limiter = RateLimiter({"stream": [20, 2]})
    pieces = [f"第{i}段。" for i in range(8)]  # a burst of 2, then 20 a second
    for piece in pieces:
        writer.stream_append(msg_id, piece)
    with pytest.raises(RateLimited):  # without retries the same burst gets a 429
        for piece in pieces:
            writer.stream_append(msg_id, piece, retries=0)
    live.bridge.dispatcher.limiter = RateLimiter({})
    writer.stream_end(msg_id)
    # Every append retried after a 429 was stored once, then what the burst got in before its 429.
    stored, whole = Message.objects.get(msg_id=msg_id).content, "".join(pieces)
    assert stored.startswith(whole) and whole.startswith(stored[len(whole) :])
