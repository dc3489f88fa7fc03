"""Private and group messages over the real dispatcher: spec 3.11/3.12, history, conversations,
recall, idempotency (DESIGN §4-5)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bridge.models import ProcessedRequest
from messaging.models import Message
from tests.factories import EmployeeFactory

pytestmark = pytest.mark.django_db

FORBIDDEN = {"code": 403, "message": "无权限执行该操作", "data": None}


def _refusal(response: dict) -> dict:
    return {k: response[k] for k in ("code", "message", "data")}


def _group(call, owner, *members) -> str:
    return call(owner, "group.create", name="XX项目组", member_ids=[m.employee_id for m in members])["data"][
        "group_id"
    ]


def _inbox(published, employee):
    return [p for p in published.to(f"mchat/inbox/{employee.employee_id}") if "msg_id" in p and "type" in p]


# --- msg.send_private ----------------------------------------------------------------------------


def test_private_message_answer_and_deliveries_follow_spec_3_11(call, published, alice, bob):
    response = call(
        alice,
        "msg.send_private",
        seq_id="770e8400",
        to_employee_id=bob.employee_id,
        content="你好，下午会议改到 3 点。",
    )
    assert response["seq_id"] == "770e8400" and response["code"] == 0
    data = response["data"]
    assert data["msg_id"].startswith("msg_") and data["to_employee_id"] == bob.employee_id
    assert data["seq"] == 1 and data["sent_at"].endswith("Z")
    expected = {
        "msg_id": data["msg_id"],
        "type": "private",
        "from_employee_id": alice.employee_id,
        "content": "你好，下午会议改到 3 点。",
        "sent_at": data["sent_at"],
        "to_employee_id": bob.employee_id,
        "seq": 1,
    }
    assert published.to(f"mchat/inbox/{bob.employee_id}") == [expected]
    # The sender's other devices get the same message on the sender's own inbox.
    assert published.to(f"mchat/inbox/{alice.employee_id}") == [expected]
    assert all(m.qos == 1 and not m.retain for m in published.messages)


def test_private_seq_counts_per_pair_from_both_sides(call, alice, bob, carol):
    seqs = [
        call(alice, "msg.send_private", to_employee_id=bob.employee_id, content="1")["data"]["seq"],
        call(bob, "msg.send_private", to_employee_id=alice.employee_id, content="2")["data"]["seq"],
        call(alice, "msg.send_private", to_employee_id=carol.employee_id, content="other pair")["data"][
            "seq"
        ],
        call(alice, "msg.send_private", to_employee_id=bob.employee_id, content="3")["data"]["seq"],
    ]
    assert seqs == [1, 2, 1, 3]


def test_note_to_self_is_delivered_once(call, published, alice):
    response = call(alice, "msg.send_private", to_employee_id=alice.employee_id, content="备忘")
    assert response["code"] == 0
    assert len(published.to(f"mchat/inbox/{alice.employee_id}")) == 1


def test_private_message_to_unknown_or_former_employee_is_404(call, published, alice):
    gone = EmployeeFactory(employee_id="emp_gone_009", is_active=False)
    for target in ("emp_nobody_404", gone.employee_id):
        response = call(alice, "msg.send_private", to_employee_id=target, content="在吗")
        assert _refusal(response) == {"code": 404, "message": f"员工不存在或已离职：{target}", "data": None}
    assert not Message.objects.exists()
    assert published.to(f"mchat/inbox/{gone.employee_id}") == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"content": "hi"}, "to_employee_id 不能为空"),
        ({"to_employee_id": "emp_bob_002"}, "content 不能为空"),
        ({"to_employee_id": "emp_bob_002", "content": None}, "content 不能为空"),
        ({"to_employee_id": "emp_bob_002", "content": ""}, "content 不能为空"),
        ({"to_employee_id": "emp_bob_002", "content": "x" * 10_001}, "content 不能超过 10000 个字符"),
        (
            {"to_employee_id": "emp_bob_002", "content": {"type": "image", "url": "https://a.example/x"}},
            "content.width 不能为空",
        ),
    ],
)
def test_send_private_input_errors_are_400(call, alice, bob, fields, message):
    assert _refusal(call(alice, "msg.send_private", **fields)) == {
        "code": 400,
        "message": message,
        "data": None,
    }
    assert not Message.objects.exists()


def test_a_repeated_seq_id_never_makes_a_second_message(call, published, failed_statements, alice, bob):
    first = call(alice, "msg.send_private", seq_id="retry-1", to_employee_id=bob.employee_id, content="once")
    again = call(alice, "msg.send_private", seq_id="retry-1", to_employee_id=bob.employee_id, content="once")
    assert again == first
    assert Message.objects.count() == 1
    assert len(published.to(f"mchat/inbox/{bob.employee_id}")) == 1
    # Even once the bridge has forgotten the request, the message remembers it.
    ProcessedRequest.objects.all().delete()
    late = call(alice, "msg.send_private", seq_id="retry-1", to_employee_id=bob.employee_id, content="once")
    assert late["data"]["msg_id"] == first["data"]["msg_id"] and late["data"]["seq"] == 1
    assert Message.objects.count() == 1
    assert len(published.to(f"mchat/inbox/{bob.employee_id}")) == 1
    # The same seq_id from another device is another request.
    other = call(
        alice,
        "msg.send_private",
        seq_id="retry-1",
        device="phone",
        to_employee_id=bob.employee_id,
        content="x",
    )
    assert other["data"]["seq"] == 2
    assert failed_statements == []  # repeats are left out, not caught as constraint violations


def test_a_seq_id_reused_for_another_conversation_is_refused(call, alice, bob, carol):
    call(alice, "msg.send_private", seq_id="dup", to_employee_id=bob.employee_id, content="1")
    ProcessedRequest.objects.all().delete()
    response = call(alice, "msg.send_private", seq_id="dup", to_employee_id=carol.employee_id, content="2")
    assert response["code"] == 400 and "seq_id" in response["message"]


# --- msg.send_group ------------------------------------------------------------------------------


def test_group_message_is_one_publish_in_spec_3_12_shape(call, published, alice, bob, carol):
    group_id = _group(call, alice, bob, carol)
    published.clear()
    response = call(
        alice, "msg.send_group", seq_id="880e8400", group_id=group_id, content="大家记得更新进度到文档。"
    )
    data = response["data"]
    assert set(data) == {"msg_id", "group_id", "sent_at", "seq"} and data["group_id"] == group_id
    deliveries = [m for m in published.messages if not m.topic.startswith("mchat/msg/resp/")]
    assert [(m.topic, m.qos) for m in deliveries] == [(f"mchat/group/{group_id}", 1)]
    assert deliveries[0].payload == {
        "msg_id": data["msg_id"],
        "group_id": group_id,
        "from_employee_id": alice.employee_id,
        "content": "大家记得更新进度到文档。",
        "sent_at": data["sent_at"],
        "type": "group",
        "seq": 1,
    }


def test_deliveries_built_from_participants_are_what_history_builds_from_the_rows(
    call, published, alice, bob, carol
):
    # The store's deliveries name sender and recipient as messaging.participants values (the
    # known-pairs path looks nobody up); history builds the same payload from loaded rows.
    from messaging import payloads
    from messaging.services.conversations import conversation_loaded

    group_id = _group(call, alice, bob, carol)
    published.clear()
    call(alice, "msg.send_private", to_employee_id=bob.employee_id, content="一")
    call(bob, "msg.send_private", to_employee_id=alice.employee_id, content="二")  # a pair seen before
    call(carol, "msg.send_private", to_employee_id=carol.employee_id, content="备忘")
    call(bob, "msg.send_group", group_id=group_id, content="三")
    delivered = {
        m.payload["msg_id"]: m.payload
        for m in published.messages
        if not m.topic.startswith("mchat/msg/resp/")
    }
    assert len(delivered) == 4
    for message in Message.objects.select_related("sender"):
        rows = payloads.message_payload(message, conversation_loaded(message.conversation_id))
        assert delivered[message.msg_id] == rows


def test_group_send_by_non_member_is_403_and_delivers_nothing(call, published, alice, bob, carol):
    group_id = _group(call, alice, bob)
    published.clear()
    assert _refusal(call(carol, "msg.send_group", group_id=group_id, content="hi")) == FORBIDDEN
    assert published.to(f"mchat/group/{group_id}") == []


def test_group_content_types(call, published, alice, bob):
    group_id = _group(call, alice, bob)
    image = {"type": "image", "url": "https://img.example.com/a.png", "width": 10, "height": 20}
    file = {"type": "file", "url": "https://f.example.com/a.pdf", "name": "a.pdf", "size": 100}
    for content in ({"type": "text", "text": "hi"}, image, file):
        assert call(alice, "msg.send_group", group_id=group_id, content=content)["code"] == 0
    assert [p["content"] for p in published.to(f"mchat/group/{group_id}")] == [
        {"type": "text", "text": "hi"},
        image,
        file,
    ]
    assert list(Message.objects.order_by("seq").values_list("content_type", flat=True)) == [
        "text",
        "image",
        "file",
    ]


# --- msg.history ---------------------------------------------------------------------------------


def test_history_pages_by_seq_in_both_directions(call, alice, bob):
    group_id = _group(call, alice, bob)
    for n in range(1, 8):
        call(alice if n % 2 else bob, "msg.send_group", group_id=group_id, content=f"m{n}")

    def page(**fields):
        data = call(bob, "msg.history", conversation_type="group", group_id=group_id, **fields)["data"]
        return [m["seq"] for m in data["messages"]], data["has_more"]

    assert page(limit=3) == ([5, 6, 7], True)
    assert page(limit=3, before_seq=5) == ([2, 3, 4], True)
    assert page(limit=3, before_seq=2) == ([1], False)
    assert page(after_seq=4) == ([5, 6, 7], False)
    assert page(after_seq=0, limit=2) == ([1, 2], True)
    assert page(after_seq=2, before_seq=5) == ([3, 4], False)
    data = call(bob, "msg.history", conversation_type="group", group_id=group_id)["data"]
    assert data["last_seq"] == 7 and data["last_read_seq"] == 6  # bob last wrote m6
    assert data["messages"][0]["from_employee_id"] == alice.employee_id


def test_private_history_and_access(call, alice, bob, carol):
    call(alice, "msg.send_private", to_employee_id=bob.employee_id, content="hi bob")
    data = call(bob, "msg.history", conversation_type="private", peer_employee_id=alice.employee_id)["data"]
    assert [(m["from_employee_id"], m["to_employee_id"], m["content"]) for m in data["messages"]] == [
        (alice.employee_id, bob.employee_id, "hi bob")
    ]
    never = call(carol, "msg.history", conversation_type="private", peer_employee_id=alice.employee_id)
    assert never["data"]["messages"] == [] and never["data"]["last_seq"] == 0
    missing = call(carol, "msg.history", conversation_type="private", peer_employee_id="emp_ghost_001")
    assert missing["code"] == 404


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "conversation_type 不能为空"),
        ({"conversation_type": "channel"}, "conversation_type “channel” 不是合法选项。"),
        ({"conversation_type": "group"}, "group_id 不能为空"),
        ({"conversation_type": "private"}, "peer_employee_id 不能为空"),
        (
            {"conversation_type": "private", "peer_employee_id": "emp_bob_002", "limit": 101},
            "limit 请确保该值小于或者等于 100。",
        ),
        (
            {
                "conversation_type": "private",
                "peer_employee_id": "emp_bob_002",
                "before_seq": 3,
                "after_seq": 3,
            },
            "after_seq 必须小于 before_seq",
        ),
    ],
)
def test_history_input_errors(call, alice, bob, fields, message):
    assert _refusal(call(alice, "msg.history", **fields)) == {"code": 400, "message": message, "data": None}


# --- conversation.list ---------------------------------------------------------------------------


def test_conversation_list_orders_by_activity_with_unread_counts(call, alice, bob, carol):
    group_id = _group(call, carol, alice, bob)
    call(bob, "msg.send_private", to_employee_id=alice.employee_id, content="b1")
    second = call(bob, "msg.send_private", to_employee_id=alice.employee_id, content="b2")
    call(carol, "msg.send_group", group_id=group_id, content="g1")
    listed = call(alice, "conversation.list")["data"]
    first, other = listed["conversations"]
    assert (first["conversation_type"], first["group_id"], first["name"]) == ("group", group_id, "XX项目组")
    assert (first["unread_count"], first["last_message"]["content"]) == (1, "g1")
    assert (other["peer_employee_id"], other["name"], other["unread_count"]) == (bob.employee_id, "Bob", 2)
    assert other["last_message"]["msg_id"] == second["data"]["msg_id"]
    assert listed["next_cursor"] is None

    call(
        alice,
        "msg.read_ack",
        msg_id=second["data"]["msg_id"],
        conversation_type="private",
        peer_employee_id=bob.employee_id,
    )
    again = call(alice, "conversation.list")["data"]["conversations"]
    assert [c["unread_count"] for c in again] == [1, 0]
    # Bob wrote both messages: nothing unread for him.
    assert call(bob, "conversation.list")["data"]["conversations"][1]["unread_count"] == 0


def test_conversation_list_pages_with_a_cursor(call, alice):
    peers = EmployeeFactory.create_batch(5)
    for peer in peers:
        call(peer, "msg.send_private", to_employee_id=alice.employee_id, content="hi")
    seen, cursor = [], None
    for _ in range(5):
        data = call(alice, "conversation.list", limit=2, **({"cursor": cursor} if cursor else {}))["data"]
        seen += [c["peer_employee_id"] for c in data["conversations"]]
        cursor = data["next_cursor"]
        if cursor is None:
            break
    assert seen == [p.employee_id for p in reversed(peers)]
    assert call(alice, "conversation.list", cursor="garbage")["message"] == "cursor 格式不正确"


# --- msg.recall ----------------------------------------------------------------------------------


def test_sender_recalls_within_the_window(call, published, alice, bob):
    sent = call(alice, "msg.send_private", to_employee_id=bob.employee_id, content="说错了")["data"]
    published.clear()
    response = call(alice, "msg.recall", msg_id=sent["msg_id"])
    assert response["code"] == 0 and response["data"]["msg_id"] == sent["msg_id"]
    event = {
        "type": "recall",
        "msg_id": sent["msg_id"],
        "seq": 1,
        "recalled_by": alice.employee_id,
        "recalled_at": response["data"]["recalled_at"],
        "conversation_type": "private",
        "from_employee_id": alice.employee_id,
        "to_employee_id": bob.employee_id,
    }
    assert published.to(f"mchat/inbox/{bob.employee_id}") == [event]
    assert published.to(f"mchat/inbox/{alice.employee_id}") == [event]
    (served,) = call(bob, "msg.history", conversation_type="private", peer_employee_id=alice.employee_id)[
        "data"
    ]["messages"]
    assert served["content"] is None and served["recalled"] is True
    assert served["recalled_at"] == response["data"]["recalled_at"]
    listed = call(bob, "conversation.list")["data"]["conversations"][0]["last_message"]
    assert listed["content"] is None
    # Recalling again answers the same and announces nothing new.
    published.clear()
    assert call(alice, "msg.recall", msg_id=sent["msg_id"])["data"] == response["data"]
    assert published.to(f"mchat/inbox/{bob.employee_id}") == []


def test_recall_window_and_who_may(call, alice, bob, carol, settings):
    group_id = _group(call, alice, bob, carol)
    by_bob = call(bob, "msg.send_group", group_id=group_id, content="bob says")["data"]["msg_id"]
    assert _refusal(call(carol, "msg.recall", msg_id=by_bob)) == FORBIDDEN
    Message.objects.filter(msg_id=by_bob).update(
        sent_at=Message.objects.get(msg_id=by_bob).sent_at - timedelta(minutes=3)
    )
    late = call(bob, "msg.recall", msg_id=by_bob)
    assert _refusal(late) == {"code": 403, "message": "已超过可撤回时间（120 秒）", "data": None}
    # The owner (and admins) may recall anyone's message at any time.
    assert call(alice, "msg.recall", msg_id=by_bob)["code"] == 0
    by_carol = call(carol, "msg.send_group", group_id=group_id, content="c")["data"]["msg_id"]
    call(alice, "group.update", group_id=group_id, updates={"admin_ids": [bob.employee_id]})
    assert call(bob, "msg.recall", msg_id=by_carol)["code"] == 0
    settings.MCHAT_RECALL_WINDOW_SECONDS = 0
    own = call(carol, "msg.send_group", group_id=group_id, content="c2")["data"]["msg_id"]
    assert call(carol, "msg.recall", msg_id=own)["code"] == 403


def test_group_recall_is_one_event_on_the_group_topic(call, published, alice, bob):
    group_id = _group(call, alice, bob)
    msg_id = call(bob, "msg.send_group", group_id=group_id, content="oops")["data"]["msg_id"]
    published.clear()
    call(bob, "msg.recall", msg_id=msg_id)
    (event,) = published.to(f"mchat/group/{group_id}")
    assert (
        event["type"] == "recall"
        and event["group_id"] == group_id
        and event["recalled_by"] == bob.employee_id
    )


def test_recall_of_unknown_or_invisible_message_is_404(call, alice, bob, carol):
    msg_id = call(alice, "msg.send_private", to_employee_id=bob.employee_id, content="private")["data"][
        "msg_id"
    ]
    for response in (call(carol, "msg.recall", msg_id=msg_id), call(carol, "msg.recall", msg_id="msg_nope")):
        assert response["code"] == 404
    assert call(carol, "msg.recall")["message"] == "msg_id 不能为空"
