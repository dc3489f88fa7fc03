"""Every audited action, through each entry point it has, leaves exactly one audit row with the
right actor, source and fields, and no secret in any row (issue 18, "Tests")."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import contextmanager
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
from audit.models import AuditEvent, LegalHold
from messaging import services as messaging_services
from messaging.models import Group, Message, StoredFile
from messaging.storage.keys import object_key
from org import services as org_services
from org.models import AgentProfile, Department, Employee
from tests.audit.conftest import employee_change_form
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
    rest: Any  # APIClient of the staff integration account "hr-system", every org permission
    rest_key: str


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


def mqtt_challenge_consume(w: World) -> Expect:
    challenge = _challenge(w, w.alice)
    _ok(w.call(w.alice, "group.dismiss", group_id=w.group_id, **challenge))
    return Expect(
        "challenge_consume",
        ("employee", w.alice.employee_id),
        "mqtt",
        ("challenge", challenge["challenge_id"]),
        also={"group_dismiss"},
        secrets=[challenge["token"]],
    )


# --- console ----------------------------------------------------------------------------------

# The agent-profile inline of the employee add form, left empty (a person).
EMPTY_AGENT_INLINE = {
    "agent_profile-TOTAL_FORMS": "1",
    "agent_profile-INITIAL_FORMS": "0",
    "agent_profile-MIN_NUM_FORMS": "0",
    "agent_profile-MAX_NUM_FORMS": "1",
    "agent_profile-0-ack_deadline_seconds": "10",
}


def console_employee_create(w: World) -> Expect:
    form = {**EMPTY_AGENT_INLINE, "name": "孙八", "title": "工程师"}
    form |= {f: "" for f in ("email", "phone", "avatar", "signature", "department", "manager", "id_slug")}
    page = w.console.post(reverse("admin:org_employee_add"), form).content.decode()
    passwords = re.findall(r'<code class="mchat-password">([^<]+)</code>', page)
    assert len(passwords) == 1, page[:2000]
    employee = Employee.objects.get(name="孙八")
    return Expect(
        "employee_create",
        ("user", "admin"),
        "console",
        ("employee", employee.employee_id),
        {"name", "title", "mqtt_password_hash"},
        secrets=passwords,
    )


def console_employee_update(w: World) -> Expect:
    response = w.console.post(
        reverse("admin:org_employee_change", args=[w.bob.pk]), employee_change_form(w.bob, title="经理")
    )
    assert response.status_code == 302
    return Expect("employee_update", ("user", "admin"), "console", ("employee", w.bob.employee_id), {"title"})


def console_employee_reactivate(w: World) -> Expect:
    w.bob.is_active = False
    w.bob.save()
    w.console.post(
        reverse("admin:org_employee_changelist"), {"action": "reactivate", "_selected_action": [w.bob.pk]}
    )
    return Expect(
        "employee_reactivate", ("user", "admin"), "console", ("employee", w.bob.employee_id), {"is_active"}
    )


def console_web_password_set(w: World) -> Expect:
    page = w.console.post(
        reverse("admin:org_employee_changelist"),
        {"action": "reset_web_password", "_selected_action": [w.bob.pk], "post": "yes"},
    ).content.decode()
    passwords = re.findall(r'<code class="mchat-web-password">([^<]+)</code>', page)
    assert len(passwords) == 1
    return Expect(
        "employee_web_password_set",
        ("user", "admin"),
        "console",
        ("employee", w.bob.employee_id),
        {"web_password"},
        secrets=passwords,
    )


def console_agent_profile_update(w: World) -> Expect:
    profile = AgentProfile.objects.get(employee=w.agent)
    form = {
        "name": w.agent.name,
        "is_active": "on",
        **{f: "" for f in ("title", "email", "phone", "avatar", "signature", "department", "manager")},
        "console_user": "",
        "agent_profile-TOTAL_FORMS": "1",
        "agent_profile-INITIAL_FORMS": "1",
        "agent_profile-MIN_NUM_FORMS": "0",
        "agent_profile-MAX_NUM_FORMS": "1",
        "agent_profile-0-id": str(profile.pk),
        "agent_profile-0-employee": str(w.agent.pk),
        "agent_profile-0-owner": str(w.alice.pk),
        "agent_profile-0-description": "",
        "agent_profile-0-capabilities": "订单查询\n退货",
        "agent_profile-0-skills_badge": "",
        "agent_profile-0-ack_deadline_seconds": "10",
    }
    response = w.console.post(reverse("admin:org_employee_change", args=[w.agent.pk]), form)
    assert response.status_code == 302, response.content.decode()[:2000]
    return Expect(
        "employee_update",
        ("user", "admin"),
        "console",
        ("employee", w.agent.employee_id),
        {"agent.capabilities"},
    )


def console_console_user_set(w: World) -> Expect:
    hr = User.objects.create_user("hr-lee", is_staff=True)
    response = w.console.post(
        reverse("admin:org_employee_change", args=[w.bob.pk]), employee_change_form(w.bob, console_user=hr.pk)
    )
    assert response.status_code == 302
    return Expect(
        "employee_console_user_set",
        ("user", "admin"),
        "console",
        ("employee", w.bob.employee_id),
        {"console_user"},
    )


def console_department_create(w: World) -> Expect:
    response = w.console.post(
        reverse("admin:org_department_add"),
        {"name": "华东区", "parent": str(w.department.pk), "sort_order": "1", "department_id": ""},
    )
    assert response.status_code == 302
    department = Department.objects.get(name="华东区")
    return Expect(
        "department_create", ("user", "admin"), "console", ("department", department.department_id), {"name"}
    )


def console_department_update(w: World) -> Expect:
    w.console.post(
        reverse("admin:org_department_change", args=[w.department.pk]),
        {"name": "销售一部", "parent": "", "sort_order": "0"},
    )
    return Expect("department_update", ("user", "admin"), "console", ("department", "dept_sales"), {"name"})


def console_department_move(w: World) -> Expect:
    tech = DepartmentFactory(department_id="dept_tech", name="技术部", sort_order=2)
    response = w.console.post(
        reverse("admin:org_department_changelist"),
        {"cmd": "move_node", "cut_item": tech.pk, "pasted_on": w.department.pk, "position": "left"},
    )
    assert response.content == b"OK, moved."
    return Expect("department_move", ("user", "admin"), "console", ("department", "dept_tech"))


def console_department_delete(w: World) -> Expect:
    empty = DepartmentFactory(department_id="dept_empty", name="空部门")
    response = w.console.post(reverse("admin:org_department_delete", args=[empty.pk]), {"post": "yes"})
    assert response.status_code == 302
    return Expect("department_delete", ("user", "admin"), "console", ("department", "dept_empty"))


def console_group_update(w: World) -> Expect:
    group = Group.objects.get(group_id=w.group_id)
    response = w.console.post(
        reverse("admin:messaging_group_change", args=[group.pk]),
        {
            "name": "新群名",
            "description": "",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302
    return Expect("group_update", ("user", "admin"), "console", ("group", w.group_id), {"name"})


def console_rest_token_create(w: World) -> Expect:
    crm = User.objects.create_user("crm-sync", is_staff=True)
    assert w.console.post("/admin/authtoken/tokenproxy/add/", {"user": crm.pk}).status_code == 302
    return Expect(
        "rest_token_create",
        ("user", "admin"),
        "console",
        ("rest_token", "crm-sync"),
        secrets=[Token.objects.get(user=crm).key],
    )


def console_rest_token_revoke(w: World) -> Expect:
    response = w.console.post(
        f"/admin/authtoken/tokenproxy/{User.objects.get(username='hr-system').pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 302
    return Expect(
        "rest_token_revoke", ("user", "admin"), "console", ("rest_token", "hr-system"), secrets=[w.rest_key]
    )


def console_legal_hold_place(w: World) -> Expect:
    response = w.console.post("/admin/audit/legalhold/add/", {"employee": w.bob.pk, "reason": "诉讼保全"})
    assert response.status_code == 302
    return Expect(
        "legal_hold_place", ("user", "admin"), "console", ("employee", w.bob.employee_id), {"legal_hold"}
    )


def console_legal_hold_release(w: World) -> Expect:
    hold = LegalHold.objects.create(employee=w.bob, reason="诉讼保全")  # placed earlier
    w.console.post("/admin/audit/legalhold/", {"action": "release_holds", "_selected_action": [hold.pk]})
    return Expect(
        "legal_hold_release", ("user", "admin"), "console", ("employee", w.bob.employee_id), {"legal_hold"}
    )


def console_group_retention_set(w: World) -> Expect:
    group = Group.objects.get(group_id=w.group_id)
    response = w.console.post("/admin/audit/groupretention/add/", {"group": group.pk, "keep_days": 30})
    assert response.status_code == 302
    return Expect("group_retention_set", ("user", "admin"), "console", ("group", w.group_id), {"keep_days"})


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


def _rest_ok(response, status: int = 200) -> Any:
    assert response.status_code == status, response.content
    return response.json() if response.content else None


def rest_employee_create(w: World) -> Expect:
    body = _rest_ok(w.rest.post("/api/v1/employees/", {"name": "赵六"}, format="json"), 201)
    return Expect(
        "employee_create",
        ("user", "hr-system"),
        "rest",
        ("employee", body["employee_id"]),
        {"name"},
        secrets=[body["mqtt_connection"]["mqtt_password"], w.rest_key],
    )


def rest_employee_update(w: World) -> Expect:
    _rest_ok(w.rest.patch(f"/api/v1/employees/{w.bob.employee_id}/", {"title": "经理"}, format="json"))
    return Expect(
        "employee_update", ("user", "hr-system"), "rest", ("employee", w.bob.employee_id), {"title"}
    )


def rest_employee_deactivate(w: World) -> Expect:
    _rest_ok(w.rest.patch(f"/api/v1/employees/{w.bob.employee_id}/", {"is_active": False}, format="json"))
    return Expect(
        "employee_deactivate", ("user", "hr-system"), "rest", ("employee", w.bob.employee_id), {"is_active"}
    )


def rest_employee_reactivate(w: World) -> Expect:
    w.bob.is_active = False
    w.bob.save()
    _rest_ok(w.rest.patch(f"/api/v1/employees/{w.bob.employee_id}/", {"is_active": True}, format="json"))
    return Expect(
        "employee_reactivate", ("user", "hr-system"), "rest", ("employee", w.bob.employee_id), {"is_active"}
    )


def rest_credential_reset(w: World) -> Expect:
    body = _rest_ok(w.rest.post(f"/api/v1/employees/{w.bob.employee_id}/reset-credentials/"))
    return Expect(
        "employee_credential_reset",
        ("user", "hr-system"),
        "rest",
        ("employee", w.bob.employee_id),
        {"mqtt_password_hash"},
        secrets=[body["mqtt_connection"]["mqtt_password"]],
    )


def rest_agent_profile_update(w: World) -> Expect:
    _rest_ok(
        w.rest.patch(
            f"/api/v1/employees/{w.agent.employee_id}/",
            {"agent": {"capabilities": ["订单查询", "退货"]}},
            format="json",
        )
    )
    return Expect(
        "employee_update",
        ("user", "hr-system"),
        "rest",
        ("employee", w.agent.employee_id),
        {"agent.capabilities"},
    )


def rest_department_create(w: World) -> Expect:
    body = _rest_ok(
        w.rest.post("/api/v1/departments/", {"name": "华南区", "parent_id": "dept_sales"}, format="json"), 201
    )
    return Expect(
        "department_create", ("user", "hr-system"), "rest", ("department", body["department_id"]), {"name"}
    )


def rest_department_update(w: World) -> Expect:
    _rest_ok(w.rest.patch("/api/v1/departments/dept_sales/", {"name": "销售一部"}, format="json"))
    return Expect("department_update", ("user", "hr-system"), "rest", ("department", "dept_sales"), {"name"})


def rest_department_delete(w: World) -> Expect:
    DepartmentFactory(department_id="dept_empty", name="空部门")
    _rest_ok(w.rest.delete("/api/v1/departments/dept_empty/"), 204)
    return Expect("department_delete", ("user", "hr-system"), "rest", ("department", "dept_empty"))


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


@contextmanager
def _under_manage_py():
    """What manage.py sets for every process it starts (tests/audit/test_rest_tokens.py)."""
    saved = context._process_default
    context.process_default("command")
    try:
        yield
    finally:
        context.process_default(saved)


def command_rest_token_create(w: World) -> Expect:
    User.objects.create_user("crm-sync", is_staff=True)
    with _under_manage_py():
        call_command("drf_create_token", "crm-sync", stdout=(out := _Capture()))
    key = Token.objects.get(user__username="crm-sync").key
    assert key in out.text
    return Expect("rest_token_create", ("system", ""), "command", ("rest_token", "crm-sync"), secrets=[key])


def command_rest_token_revoke(w: World) -> Expect:
    with _under_manage_py():
        call_command("drf_create_token", "hr-system", "--reset", stdout=(out := _Capture()))
    key = Token.objects.get(user__username="hr-system").key
    assert key in out.text
    return Expect(
        "rest_token_revoke",
        ("system", ""),
        "command",
        ("rest_token", "hr-system"),
        also={"rest_token_create"},  # --reset: the old token revoked, a new one created
        secrets=[w.rest_key, key],
    )


def import_employee_create(w: World) -> Expect:
    import tablib

    from org.resources import EmployeeResource

    dataset = tablib.Dataset().load(
        "employee_id,name,department_id,title\nemp_imported_001,周九,dept_sales,会计\n", format="csv"
    )
    result = EmployeeResource().import_data(dataset, dry_run=False, raise_errors=True)
    assert not result.has_errors()
    return Expect(
        "employee_create",
        ("system", ""),
        "import",
        ("employee", "emp_imported_001"),
        {"name", "title", "department_id"},
    )


def import_employee_update(w: World) -> Expect:
    import tablib

    from org.resources import EmployeeResource

    dataset = tablib.Dataset().load(f"employee_id,name,title\n{w.bob.employee_id},Bob,出纳\n", format="csv")
    result = EmployeeResource().import_data(dataset, dry_run=False, raise_errors=True)
    assert not result.has_errors()
    return Expect("employee_update", ("system", ""), "import", ("employee", w.bob.employee_id), {"title"})


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
    mqtt_challenge_consume,
    console_employee_create,
    console_employee_update,
    console_credential_reset,
    console_deactivate,
    console_employee_reactivate,
    console_web_password_set,
    console_agent_profile_update,
    console_console_user_set,
    console_department_create,
    console_department_update,
    console_department_move,
    console_department_delete,
    console_system_notice,
    console_group_update,
    console_group_dismiss,
    console_recall,
    console_rest_token_create,
    console_rest_token_revoke,
    console_legal_hold_place,
    console_legal_hold_release,
    console_group_retention_set,
    rest_employee_create,
    rest_employee_update,
    rest_employee_deactivate,
    rest_employee_reactivate,
    rest_credential_reset,
    rest_agent_profile_update,
    rest_department_create,
    rest_department_update,
    rest_department_delete,
    command_employee_create,
    command_rest_token_create,
    command_rest_token_revoke,
    import_employee_create,
    import_employee_update,
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
    integration = User.objects.create_user("hr-system", is_staff=True)
    integration.user_permissions.add(*Permission.objects.filter(content_type__app_label="org"))
    rest = APIClient()
    rest_key = Token.objects.create(user=integration).key
    rest.credentials(HTTP_AUTHORIZATION=f"Token {rest_key}")
    return World(
        call, Console(), admin, alice, bob, agent, department, group.group_id, message, rest, rest_key
    )


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
