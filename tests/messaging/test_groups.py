"""Group lifecycle over the real dispatcher: spec 3.7-3.10, group.update/list/info, DESIGN §5."""

from __future__ import annotations

import pytest
from django.conf import settings

from messaging.models import Conversation, Group, GroupMember, ReadPosition
from tests.factories import EmployeeFactory

pytestmark = pytest.mark.django_db

FORBIDDEN = {"code": 403, "message": "无权限执行该操作", "data": None}


def _groups_file() -> set[tuple[str, str]]:
    text = (settings.MCHAT_BROKER_DIR / "groups").read_text()
    return {tuple(line.split()) for line in text.splitlines()}


def _refusal(response: dict) -> dict:
    return {k: response[k] for k in ("code", "message", "data")}


def _notifications(published, employee, kind):
    return [p for p in published.to(f"mchat/inbox/{employee.employee_id}") if p.get("type") == kind]


def _create(call, owner, *members, name="XX项目组"):
    response = call(owner, "group.create", name=name, member_ids=[m.employee_id for m in members])
    assert response["code"] == 0, response
    return response["data"]["group_id"]


def _challenge(call, employee) -> dict:
    data = call(employee, "auth.challenge")["data"]
    return {"challenge_id": data["challenge_id"], "token": data["token"]}


# --- group.create --------------------------------------------------------------------------------


def test_create_makes_the_creator_owner_and_answers_in_spec_shape(call, alice, bob, carol):
    response = call(
        alice,
        "group.create",
        seq_id="660e8400",
        name="XX项目组",
        member_ids=[alice.employee_id, bob.employee_id, carol.employee_id],
        opts={"description": "项目协作群"},
    )
    assert response["seq_id"] == "660e8400" and response["code"] == 0 and response["message"] == "ok"
    data = response["data"]
    assert data["group_id"].startswith("grp_") and data["name"] == "XX项目组"
    assert data["member_ids"] == [alice.employee_id, bob.employee_id, carol.employee_id]
    assert data["created_at"].endswith("Z") and len(data["created_at"]) == 24
    group = Group.objects.get(group_id=data["group_id"])
    assert group.owner == alice and group.description == "项目协作群"
    roles = dict(GroupMember.objects.filter(group=group).values_list("employee__employee_id", "role"))
    assert roles == {alice.employee_id: "owner", bob.employee_id: "member", carol.employee_id: "member"}
    assert Conversation.objects.get(group=group).last_seq == 0


def test_create_collapses_duplicates_and_adds_the_creator(call, alice, bob):
    response = call(alice, "group.create", name="g", member_ids=[bob.employee_id, bob.employee_id])
    assert response["data"]["member_ids"] == [alice.employee_id, bob.employee_id]
    assert GroupMember.objects.count() == 2


def test_create_refuses_unknown_or_inactive_ids_naming_them(call, alice, bob):
    gone = EmployeeFactory(employee_id="emp_gone_009", is_active=False)
    response = call(
        alice, "group.create", name="g", member_ids=[bob.employee_id, "emp_nobody_404", gone.employee_id]
    )
    assert _refusal(response) == {
        "code": 400,
        "message": "member_ids 包含不存在或已离职的员工：emp_nobody_404, emp_gone_009",
        "data": None,
    }
    assert not Group.objects.exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "XX项目组", "member_ids": []}, "member_ids 不能为空"),
        ({"name": "XX项目组"}, "member_ids 不能为空"),
        ({"name": "XX项目组", "member_ids": None}, "member_ids 不能为空"),
        ({"member_ids": ["emp_bob_002"]}, "name 不能为空"),
        ({"name": "   ", "member_ids": ["emp_bob_002"]}, "name 不能为空"),
        ({"name": "x" * 101, "member_ids": ["emp_bob_002"]}, "name 请确保这个字段不能超过 100 个字符。"),
    ],
)
def test_create_input_errors_are_400_with_the_spec_wording(call, alice, bob, fields, message):
    response = call(alice, "group.create", **fields)
    assert _refusal(response) == {"code": 400, "message": message, "data": None}


def test_create_is_capped_at_the_member_limit(call, alice, bob, carol, settings):
    settings.MCHAT_GROUP_MAX_MEMBERS = 2
    response = call(alice, "group.create", name="g", member_ids=[bob.employee_id, carol.employee_id])
    assert response["code"] == 400 and "上限" in response["message"]


def test_create_tells_every_member_and_opens_the_group_topic(call, published, alice, bob):
    group_id = _create(call, alice, bob)
    for member in (alice, bob):
        (note,) = _notifications(published, member, "member_joined")
        assert note["title"] == "入群通知" and note["notify_id"].startswith("notify_")
        assert note["body"] == {
            "group_id": group_id,
            "group_name": "XX项目组",
            "inviter_id": alice.employee_id,
            "member_ids": [alice.employee_id, bob.employee_id],
        }
    assert _groups_file() == {(group_id, alice.employee_id), (group_id, bob.employee_id)}


# --- group.dismiss -------------------------------------------------------------------------------


def test_dismiss_needs_the_owner_and_a_fresh_challenge(call, published, alice, bob):
    group_id = _create(call, alice, bob)
    assert _refusal(call(bob, "group.dismiss", group_id=group_id, **_challenge(call, bob))) == FORBIDDEN

    no_challenge = call(alice, "group.dismiss", group_id=group_id)
    assert no_challenge["code"] == 401
    bad = call(alice, "group.dismiss", group_id=group_id, challenge_id="ch_x", token="nope")
    assert bad["code"] == 401
    assert Group.objects.get(group_id=group_id).dismissed_at is None

    challenge = _challenge(call, alice)
    response = call(alice, "group.dismiss", group_id=group_id, **challenge)
    assert response["code"] == 0
    assert response["data"]["group_id"] == group_id and response["data"]["dismissed_at"].endswith("Z")
    assert _groups_file() == set()
    for member in (alice, bob):
        (note,) = _notifications(published, member, "group_dismissed")
        assert note["title"] == "群组解散通知"
        assert note["body"]["operator_id"] == alice.employee_id
        assert note["body"]["dismissed_at"] == response["data"]["dismissed_at"]

    # The challenge was spent; the group is gone for every further write.
    again = call(alice, "group.dismiss", group_id=group_id, **challenge)
    assert again["code"] == 404
    assert call(alice, "msg.send_group", group_id=group_id, content="hi")["code"] == 404
    assert call(alice, "group.member_add", group_id=group_id, member_ids=[bob.employee_id])["code"] == 404
    assert call(bob, "group.info", group_id=group_id)["code"] == 404
    assert call(bob, "group.list")["data"]["groups"] == []


def test_dismissed_group_history_stays_readable_by_its_members(call, alice, bob):
    group_id = _create(call, alice, bob)
    call(alice, "msg.send_group", group_id=group_id, content="最后一条")
    call(alice, "group.dismiss", group_id=group_id, **_challenge(call, alice))
    history = call(bob, "msg.history", conversation_type="group", group_id=group_id)
    assert [m["content"] for m in history["data"]["messages"]] == ["最后一条"]
    (listed,) = call(bob, "conversation.list")["data"]["conversations"]
    assert listed["dismissed"] is True


def test_unknown_group_is_404_everywhere(call, alice):
    for action, fields in [
        ("group.dismiss", {}),
        ("group.member_add", {"member_ids": [alice.employee_id]}),
        ("group.member_remove", {"member_ids": [alice.employee_id]}),
        ("group.update", {"updates": {"name": "x"}}),
        ("group.info", {}),
        ("msg.send_group", {"content": "hi"}),
    ]:
        response = call(alice, action, group_id="grp_missing", **fields)
        assert _refusal(response) == {
            "code": 404,
            "message": "群组不存在或已解散：grp_missing",
            "data": None,
        }, action


# --- group.member_add ----------------------------------------------------------------------------


def test_member_add_by_owner_reports_added_ids_and_count(call, published, alice, bob, carol, dave):
    group_id = _create(call, alice, bob)
    published.clear()
    response = call(
        alice,
        "group.member_add",
        group_id=group_id,
        member_ids=[carol.employee_id, bob.employee_id, dave.employee_id],
    )
    assert response["data"] == {
        "group_id": group_id,
        "added_ids": [carol.employee_id, dave.employee_id],
        "current_member_count": 4,
    }
    assert (group_id, carol.employee_id) in _groups_file()
    for member in (alice, bob, carol, dave):
        (note,) = _notifications(published, member, "member_joined")
        assert note["body"]["member_ids"] == [carol.employee_id, dave.employee_id]
        assert note["body"]["inviter_id"] == alice.employee_id


def test_member_add_of_present_members_changes_nothing(call, published, alice, bob):
    group_id = _create(call, alice, bob)
    published.clear()
    response = call(alice, "group.member_add", group_id=group_id, member_ids=[bob.employee_id])
    assert response["data"]["added_ids"] == [] and response["data"]["current_member_count"] == 2
    assert published.to(f"mchat/inbox/{bob.employee_id}") == []


def test_member_add_by_plain_member_or_outsider_is_403(call, alice, bob, carol, dave):
    group_id = _create(call, alice, bob)
    for actor in (bob, carol):
        response = call(actor, "group.member_add", group_id=group_id, member_ids=[dave.employee_id])
        assert _refusal(response) == FORBIDDEN
    assert not GroupMember.objects.filter(employee=dave).exists()


def test_member_add_validates_ids(call, alice, bob):
    group_id = _create(call, alice, bob)
    empty = call(alice, "group.member_add", group_id=group_id, member_ids=[])
    assert _refusal(empty) == {"code": 400, "message": "member_ids 不能为空", "data": None}
    unknown = call(alice, "group.member_add", group_id=group_id, member_ids=["emp_ghost_001"])
    assert unknown["message"] == "member_ids 包含不存在或已离职的员工：emp_ghost_001"


def test_new_member_has_nothing_unread_but_can_read_history(call, alice, bob, carol):
    group_id = _create(call, alice, bob)
    call(alice, "msg.send_group", group_id=group_id, content="before carol")
    call(alice, "group.member_add", group_id=group_id, member_ids=[carol.employee_id])
    (listed,) = call(carol, "conversation.list")["data"]["conversations"]
    assert listed["unread_count"] == 0 and listed["last_read_seq"] == 1
    history = call(carol, "msg.history", conversation_type="group", group_id=group_id)
    assert [m["content"] for m in history["data"]["messages"]] == ["before carol"]


# --- group.member_remove -------------------------------------------------------------------------


def test_owner_removes_a_member_who_is_told_and_loses_access(call, published, alice, bob, carol):
    group_id = _create(call, alice, bob, carol)
    published.clear()
    response = call(alice, "group.member_remove", group_id=group_id, member_ids=[bob.employee_id])
    assert response["data"] == {
        "group_id": group_id,
        "removed_ids": [bob.employee_id],
        "current_member_count": 2,
    }
    assert (group_id, bob.employee_id) not in _groups_file()
    for member in (alice, bob, carol):
        (note,) = _notifications(published, member, "member_removed")
        assert note["title"] == "移出群聊通知"
        assert note["body"]["member_ids"] == [bob.employee_id]
        assert note["body"]["operator_id"] == alice.employee_id
    assert _refusal(call(bob, "msg.send_group", group_id=group_id, content="hi")) == FORBIDDEN
    assert _refusal(call(bob, "msg.history", conversation_type="group", group_id=group_id)) == FORBIDDEN
    assert not ReadPosition.objects.filter(employee=bob, conversation__group__group_id=group_id).exists()


def test_a_member_may_leave_but_not_remove_others(call, published, alice, bob, carol):
    group_id = _create(call, alice, bob, carol)
    assert (
        _refusal(call(bob, "group.member_remove", group_id=group_id, member_ids=[carol.employee_id]))
        == FORBIDDEN
    )
    published.clear()
    left = call(bob, "group.member_remove", group_id=group_id, member_ids=[bob.employee_id])
    assert left["data"]["removed_ids"] == [bob.employee_id]
    (note,) = _notifications(published, bob, "member_removed")
    assert note["title"] == "退群通知"


def test_the_owner_cannot_leave_without_handing_over(call, alice, bob):
    group_id = _create(call, alice, bob)
    response = call(alice, "group.member_remove", group_id=group_id, member_ids=[alice.employee_id])
    assert _refusal(response) == {
        "code": 403,
        "message": "群主不能退出或被移出群组，请先转让群主",
        "data": None,
    }
    call(alice, "group.update", group_id=group_id, updates={"owner_id": bob.employee_id})
    assert call(alice, "group.member_remove", group_id=group_id, member_ids=[alice.employee_id])["code"] == 0
    assert Group.objects.get(group_id=group_id).owner == bob


def test_admins_remove_plain_members_only(call, alice, bob, carol, dave):
    group_id = _create(call, alice, bob, carol, dave)
    call(
        alice, "group.update", group_id=group_id, updates={"admin_ids": [bob.employee_id, carol.employee_id]}
    )
    assert (
        _refusal(call(bob, "group.member_remove", group_id=group_id, member_ids=[carol.employee_id]))
        == FORBIDDEN
    )
    assert call(bob, "group.member_remove", group_id=group_id, member_ids=[dave.employee_id])["code"] == 0


def test_removing_non_members_is_400_naming_them(call, alice, bob, carol):
    group_id = _create(call, alice, bob)
    response = call(alice, "group.member_remove", group_id=group_id, member_ids=[carol.employee_id])
    assert response["message"] == f"member_ids 包含非本群成员：{carol.employee_id}"
    empty = call(alice, "group.member_remove", group_id=group_id, member_ids=[])
    assert _refusal(empty) == {"code": 400, "message": "member_ids 不能为空", "data": None}


# --- group.update / list / info -----------------------------------------------------------------


def test_rename_is_announced_to_every_member(call, published, alice, bob):
    group_id = _create(call, alice, bob)
    published.clear()
    response = call(alice, "group.update", group_id=group_id, updates={"name": "新名字", "description": "d"})
    assert response["data"]["updated_fields"] == ["name", "description"]
    for member in (alice, bob):
        (note,) = _notifications(published, member, "group_renamed")
        assert note["title"] == "群名称变更通知"
        assert note["body"] == {
            "group_id": group_id,
            "group_name": "新名字",
            "old_name": "XX项目组",
            "operator_id": alice.employee_id,
        }


def test_update_permissions(call, alice, bob, carol):
    group_id = _create(call, alice, bob, carol)
    assert _refusal(call(bob, "group.update", group_id=group_id, updates={"name": "x"})) == FORBIDDEN
    call(alice, "group.update", group_id=group_id, updates={"admin_ids": [bob.employee_id]})
    assert call(bob, "group.update", group_id=group_id, updates={"name": "by admin"})["code"] == 0
    # Only the owner changes who leads.
    for updates in ({"owner_id": bob.employee_id}, {"admin_ids": [carol.employee_id]}):
        assert _refusal(call(bob, "group.update", group_id=group_id, updates=updates)) == FORBIDDEN


def test_owner_transfer_makes_the_former_owner_an_admin(call, alice, bob):
    group_id = _create(call, alice, bob)
    response = call(alice, "group.update", group_id=group_id, updates={"owner_id": bob.employee_id})
    assert response["data"]["updated_fields"] == ["owner_id"]
    roles = dict(GroupMember.objects.values_list("employee__employee_id", "role"))
    assert roles == {alice.employee_id: "admin", bob.employee_id: "owner"}


@pytest.mark.parametrize(
    ("updates", "message"),
    [
        ({}, "updates 不能为空"),
        ({"owner_id": "emp_ghost_001"}, "owner_id 必须是本群的在职成员：emp_ghost_001"),
        ({"admin_ids": ["emp_ghost_001"]}, "admin_ids 包含非本群成员：emp_ghost_001"),
        ({"admin_ids": ["emp_alice_001"]}, "admin_ids 不能包含群主"),
        ({"name": ""}, "updates.name 不能为空"),
    ],
)
def test_update_input_errors(call, alice, bob, updates, message):
    group_id = _create(call, alice, bob)
    assert _refusal(call(alice, "group.update", group_id=group_id, updates=updates)) == {
        "code": 400,
        "message": message,
        "data": None,
    }
    assert call(alice, "group.update", group_id=group_id)["message"] == "updates 不能为空"


def test_list_shows_my_groups_with_role_and_count(call, alice, bob, carol):
    first = _create(call, alice, bob, name="一")
    second = _create(call, bob, carol, name="二")
    listed = call(bob, "group.list")["data"]["groups"]
    assert [(g["group_id"], g["role"], g["member_count"]) for g in listed] == [
        (second, "owner", 2),
        (first, "member", 2),
    ]
    assert call(alice, "group.list")["data"]["groups"][0]["owner_id"] == alice.employee_id


def test_info_lists_members_with_roles_for_members_only(call, alice, bob, carol):
    group_id = _create(call, alice, bob, carol)
    call(alice, "group.update", group_id=group_id, updates={"admin_ids": [carol.employee_id]})
    data = call(bob, "group.info", group_id=group_id)["data"]
    assert data["role"] == "member" and data["member_count"] == 3
    assert [(m["employee_id"], m["role"]) for m in data["members"]] == [
        (alice.employee_id, "owner"),
        (carol.employee_id, "admin"),
        (bob.employee_id, "member"),
    ]
    assert set(data["members"][0]) == {"employee_id", "name", "role", "is_ai_agent", "joined_at"}
    outsider = EmployeeFactory()
    assert _refusal(call(outsider, "group.info", group_id=group_id)) == FORBIDDEN


def test_large_groups_notify_through_batched_tasks(call, published, alice, settings, monkeypatch):
    from messaging import tasks

    settings.MCHAT_NOTIFY_BATCH_SIZE = 3
    batches = []
    original = tasks.system_notification_deliver.delay
    monkeypatch.setattr(
        tasks.system_notification_deliver,
        "delay",
        lambda ids, note: (batches.append(list(ids)), original(ids, note)),
    )
    members = EmployeeFactory.create_batch(7)
    group_id = _create(call, alice, *members)
    assert [len(b) for b in batches] == [3, 3, 2]
    joined = [p for p in published.messages if p.payload.get("type") == "member_joined"]
    assert sorted(p.topic for p in joined) == sorted(
        f"mchat/inbox/{e.employee_id}" for e in [alice, *members]
    )
    assert {p.payload["body"]["group_id"] for p in joined} == {group_id}
