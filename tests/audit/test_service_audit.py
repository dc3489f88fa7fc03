"""Every audited action, through each entry point it has, leaves exactly one audit row with the
right actor, source and fields, and no secret in any row (issue 18, "Tests")."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from audit import context
from audit.models import AuditEvent
from messaging import services as messaging_services
from messaging.models import Message, StoredFile
from messaging.storage.keys import object_key
from org import services as org_services
from tests.factories import DepartmentFactory, EmployeeFactory

pytestmark = pytest.mark.django_db


@dataclass
class Expect:
    action: str
    actor: tuple[str, str]  # (actor_type, actor_id)
    source: str
    target: tuple[str, str]  # (target_type, target_id)
    changes: set[str] = field(default_factory=set)  # keys that must be in `changes`
    also: set[str] = field(default_factory=set)  # other actions the same request records
    secrets: list[str] = field(default_factory=list)  # must appear in no row


@dataclass
class World:
    call: Callable[..., dict]
    console: Any  # the superuser "admin"'s client, running on-commit hooks
    admin: Any  # an org-admin employee
    alice: Any
    bob: Any
    agent: Any
    department: Any
    group_id: str
    message: Any


def _challenge(w: World, employee) -> dict:
    data = w.call(employee, "auth.challenge")["data"]
    return {"challenge_id": data["challenge_id"], "token": data["token"]}


def _ok(response: dict) -> dict:
    assert response["code"] == 0, response
    return response["data"]


# --- MQTT -------------------------------------------------------------------------------------


def mqtt_employee_create(w: World) -> Expect:
    data = _ok(w.call(w.admin, "employee.create", name="王五", title="工程师"))
    return Expect(
        "employee_create",
        ("employee", w.admin.employee_id),
        "mqtt",
        ("employee", data["employee_id"]),
        {"name", "title", "mqtt_password_hash"},
        secrets=[data["mqtt_connection"]["mqtt_password"]],
    )


def mqtt_employee_update(w: World) -> Expect:
    _ok(w.call(w.admin, "employee.update", employee_id=w.bob.employee_id, updates={"title": "经理"}))
    return Expect(
        "employee_update",
        ("employee", w.admin.employee_id),
        "mqtt",
        ("employee", w.bob.employee_id),
        {"title"},
    )


def mqtt_employee_deactivate(w: World) -> Expect:
    _ok(w.call(w.admin, "employee.update", employee_id=w.bob.employee_id, updates={"is_active": False}))
    return Expect(
        "employee_deactivate",
        ("employee", w.admin.employee_id),
        "mqtt",
        ("employee", w.bob.employee_id),
        {"is_active"},
    )


def mqtt_employee_reactivate(w: World) -> Expect:
    w.bob.is_active = False
    w.bob.save()
    _ok(w.call(w.admin, "employee.update", employee_id=w.bob.employee_id, updates={"is_active": True}))
    return Expect(
        "employee_reactivate",
        ("employee", w.admin.employee_id),
        "mqtt",
        ("employee", w.bob.employee_id),
        {"is_active"},
    )


def mqtt_agent_profile_update(w: World) -> Expect:
    _ok(
        w.call(
            w.alice,
            "employee.update",
            employee_id=w.agent.employee_id,
            updates={"agent": {"capabilities": ["订单查询", "退货"]}},
        )
    )
    return Expect(
        "employee_update",
        ("employee", w.alice.employee_id),
        "mqtt",
        ("employee", w.agent.employee_id),
        {"agent.capabilities"},
    )


def mqtt_department_create(w: World) -> Expect:
    data = _ok(w.call(w.admin, "department.create", name="华东区", parent_id=w.department.department_id))
    return Expect(
        "department_create",
        ("employee", w.admin.employee_id),
        "mqtt",
        ("department", data["department_id"]),
        {"name"},
    )


def mqtt_department_update(w: World) -> Expect:
    _ok(
        w.call(
            w.admin,
            "department.update",
            department_id=w.department.department_id,
            updates={"name": "销售一部"},
        )
    )
    return Expect(
        "department_update",
        ("employee", w.admin.employee_id),
        "mqtt",
        ("department", w.department.department_id),
        {"name"},
    )


def mqtt_department_delete(w: World) -> Expect:
    empty = DepartmentFactory(department_id="dept_empty", name="空部门")
    challenge = _challenge(w, w.admin)
    _ok(w.call(w.admin, "department.delete", department_id=empty.department_id, **challenge))
    return Expect(
        "department_delete",
        ("employee", w.admin.employee_id),
        "mqtt",
        ("department", "dept_empty"),
        also={"challenge_consume"},
        secrets=[challenge["token"]],
    )


def mqtt_group_create(w: World) -> Expect:
    data = _ok(w.call(w.alice, "group.create", name="新项目", member_ids=[w.bob.employee_id]))
    return Expect(
        "group_create",
        ("employee", w.alice.employee_id),
        "mqtt",
        ("group", data["group_id"]),
        {"name", "members"},
    )


def mqtt_group_update(w: World) -> Expect:
    _ok(w.call(w.alice, "group.update", group_id=w.group_id, updates={"name": "改名了"}))
    return Expect("group_update", ("employee", w.alice.employee_id), "mqtt", ("group", w.group_id), {"name"})


def mqtt_group_member_add(w: World) -> Expect:
    carol = EmployeeFactory(employee_id="emp_carol_003")
    _ok(w.call(w.alice, "group.member_add", group_id=w.group_id, member_ids=[carol.employee_id]))
    return Expect(
        "group_member_add",
        ("employee", w.alice.employee_id),
        "mqtt",
        ("group", w.group_id),
        {"members_added"},
    )


def mqtt_group_member_remove(w: World) -> Expect:
    _ok(w.call(w.alice, "group.member_remove", group_id=w.group_id, member_ids=[w.bob.employee_id]))
    return Expect(
        "group_member_remove",
        ("employee", w.alice.employee_id),
        "mqtt",
        ("group", w.group_id),
        {"members_removed"},
    )


def mqtt_group_dismiss(w: World) -> Expect:
    challenge = _challenge(w, w.alice)
    _ok(w.call(w.alice, "group.dismiss", group_id=w.group_id, **challenge))
    return Expect(
        "group_dismiss",
        ("employee", w.alice.employee_id),
        "mqtt",
        ("group", w.group_id),
        {"dismissed_at"},
        also={"challenge_consume"},
        secrets=[challenge["token"]],
    )


def mqtt_admin_recall(w: World) -> Expect:
    # The group owner recalls a member's message: an admin recall.
    _ok(w.call(w.alice, "msg.recall", msg_id=w.message.msg_id))
    return Expect(
        "message_recall",
        ("employee", w.alice.employee_id),
        "mqtt",
        ("message", w.message.msg_id),
        {"recalled_at"},
    )


def mqtt_file_download_grant(w: World) -> Expect:
    key = object_key(employee_id=w.alice.employee_id, file_name="a.txt", at=timezone.now())
    StoredFile.objects.create(
        key=key,
        owner=w.alice,
        name="a.txt",
        content_type="text/plain",
        size=3,
        backend="local",
        uploaded_at=timezone.now(),
    )
    data = _ok(w.call(w.alice, "file.download_url", key=key))
    url = data.get("url") or data.get("download_url")
    assert url and "?" in url
    return Expect(
        "file_download_grant",
        ("employee", w.alice.employee_id),
        "mqtt",
        ("file", key),
        {"expires_at"},
        secrets=[url.split("?", 1)[-1]],  # the signature: a bearer secret
    )


# --- console ----------------------------------------------------------------------------------


def console_credential_reset(w: World) -> Expect:
    page = w.console.post(
        reverse("admin:org_employee_changelist"),
        {"action": "reset_credentials", "_selected_action": [w.bob.pk], "post": "yes"},
    ).content.decode()
    passwords = re.findall(r'<code class="mchat-password">([^<]+)</code>', page)
    assert len(passwords) == 1
    return Expect(
        "employee_credential_reset",
        ("user", "admin"),
        "console",
        ("employee", w.bob.employee_id),
        {"mqtt_password_hash"},
        secrets=passwords,
    )


def console_deactivate(w: World) -> Expect:
    w.console.post(
        reverse("admin:org_employee_changelist"), {"action": "deactivate", "_selected_action": [w.bob.pk]}
    )
    return Expect(
        "employee_deactivate", ("user", "admin"), "console", ("employee", w.bob.employee_id), {"is_active"}
    )


def console_system_notice(w: World) -> Expect:
    w.console.post(reverse("admin:org_systemnotice_add"), {"title": "维护通知", "text": "今晚维护"})
    from org.models import SystemNotice

    notice = SystemNotice.objects.get()
    return Expect(
        "system_notice_broadcast",
        ("user", "admin"),
        "console",
        ("system_notice", notice.notify_id),
        {"title"},
    )


def console_group_dismiss(w: World) -> Expect:
    from messaging.models import Group

    group = Group.objects.get(group_id=w.group_id)
    w.console.post(
        reverse("admin:messaging_group_changelist"),
        {"action": "dismiss_groups", "_selected_action": [group.pk]},
    )
    return Expect("group_dismiss", ("user", "admin"), "console", ("group", w.group_id), {"dismissed_at"})


def console_recall(w: World) -> Expect:
    w.console.post(
        reverse("admin:messaging_message_changelist"),
        {"action": "recall_messages", "_selected_action": [w.message.pk]},
    )
    return Expect(
        "message_recall", ("user", "admin"), "console", ("message", w.message.msg_id), {"recalled_at"}
    )


# --- REST, command, import --------------------------------------------------------------------


def rest_employee_create(w: World) -> Expect:
    user = User.objects.create_user("hr-system", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["add_employee", "view_employee"]))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    response = client.post("/api/v1/employees/", {"name": "赵六"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    return Expect(
        "employee_create",
        ("user", "hr-system"),
        "rest",
        ("employee", body["employee_id"]),
        {"name"},
        secrets=[body["mqtt_connection"]["mqtt_password"], Token.objects.get(user=user).key],
    )


def command_employee_create(w: World) -> Expect:
    call_command("createemployee", "--name", "钱七", "--json", stdout=(out := _Capture()))
    employee_id = re.search(r'"employee_id": "([^"]+)"', out.text).group(1)
    password = re.search(r'"mqtt_password": "([^"]+)"', out.text).group(1)
    web_password = re.search(r'"web_password": "([^"]+)"', out.text).group(1)
    return Expect(
        "employee_create",
        ("system", ""),
        "command",
        ("employee", employee_id),
        {"name"},
        also={"employee_web_password_set"},  # a person also gets an initial web password
        secrets=[password, web_password],
    )


def import_department(w: World) -> Expect:
    import tablib

    from org.resources import DepartmentResource

    dataset = tablib.Dataset().load(
        "department_id,name,parent_id,sort_order\ndept_imported,导入部,,1\n", format="csv"
    )
    result = DepartmentResource().import_data(dataset, dry_run=False, raise_errors=True)
    assert not result.has_errors()
    return Expect("department_create", ("system", ""), "import", ("department", "dept_imported"), {"name"})


class _Capture:
    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass


CASES = [
    mqtt_employee_create,
    mqtt_employee_update,
    mqtt_employee_deactivate,
    mqtt_employee_reactivate,
    mqtt_agent_profile_update,
    mqtt_department_create,
    mqtt_department_update,
    mqtt_department_delete,
    mqtt_group_create,
    mqtt_group_update,
    mqtt_group_member_add,
    mqtt_group_member_remove,
    mqtt_group_dismiss,
    mqtt_admin_recall,
    mqtt_file_download_grant,
    console_credential_reset,
    console_deactivate,
    console_system_notice,
    console_group_dismiss,
    console_recall,
    rest_employee_create,
    command_employee_create,
    import_department,
]


@pytest.fixture
def world(call, admin_client, django_capture_on_commit_callbacks, settings, tmp_path) -> World:
    settings.MCHAT_STORAGE = "local"
    settings.MCHAT_STORAGE_DIR = tmp_path / "files"

    class Console:
        def post(self, *args, **kwargs):
            with django_capture_on_commit_callbacks(execute=True):
                return admin_client.post(*args, **kwargs)

    admin = EmployeeFactory(employee_id="emp_admin_001", name="管理员", is_org_admin=True)
    alice = EmployeeFactory(employee_id="emp_alice_001", name="Alice")
    bob = EmployeeFactory(employee_id="emp_bob_002", name="Bob")
    agent = org_services.employee_create(
        actor=None, name="销售小助", is_ai_agent=True, id_slug="sales", agent={"owner": alice.employee_id}
    ).employee
    department = DepartmentFactory(department_id="dept_sales", name="销售部")
    group = messaging_services.group_create(actor=alice, name="项目组", member_ids=[bob.employee_id]).group
    message = messaging_services.message_send_group(actor=bob, group_id=group.group_id, content="hello")
    return World(call, Console(), admin, alice, bob, agent, department, group.group_id, message)


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_each_action_leaves_exactly_one_row(world, case):
    start = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    assert not context.is_set()
    expect = case(world)
    rows = list(AuditEvent.objects.filter(id__gt=start).order_by("id"))
    actions = [r.action for r in rows]
    assert actions.count(expect.action) == 1, actions
    assert set(actions) - {expect.action} <= expect.also, actions
    (row,) = [r for r in rows if r.action == expect.action]
    assert (row.actor_type, row.actor_id) == expect.actor
    assert row.source == expect.source
    assert (row.target_type, row.target_id) == expect.target
    assert expect.changes <= set(row.changes), row.changes
    if row.source == "mqtt":
        assert row.client_id == f"{expect.actor[1]}_dev1" and row.seq_id
    if row.source in ("console", "rest"):
        assert row.source_user == expect.actor[1] and row.address == "127.0.0.1"
    everything = str(list(AuditEvent.objects.values()))
    for secret in expect.secrets:
        assert len(secret) >= 8 and secret not in everything


def test_messages_are_not_audit_rows(world):
    start = AuditEvent.objects.count()
    _ok(world.call(world.alice, "msg.send_private", to_employee_id=world.bob.employee_id, content="hi"))
    _ok(world.call(world.bob, "msg.send_group", group_id=world.group_id, content="hi all"))
    assert AuditEvent.objects.count() == start
    assert Message.objects.count() == 3


def test_a_failed_audit_write_undoes_the_change_it_describes(world, monkeypatch):
    from messaging.models import GroupMember

    def broken(**fields):
        raise RuntimeError("audit table unavailable")

    monkeypatch.setattr(AuditEvent.objects, "create", broken)
    carol = EmployeeFactory(employee_id="emp_carol_003")
    response = world.call(
        world.alice, "group.member_add", group_id=world.group_id, member_ids=[carol.employee_id]
    )
    assert response["code"] == 500
    assert not GroupMember.objects.filter(employee=carol).exists()
    response = world.call(
        world.admin, "employee.update", employee_id=world.bob.employee_id, updates={"title": "x"}
    )
    assert response["code"] == 500
    world.bob.refresh_from_db()
    assert world.bob.title == ""
