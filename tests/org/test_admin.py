"""The HR console through Django's test client: every write goes through org.services."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from bridge import acl
from org.credentials import verify_password
from org.models import AgentProfile, Department, Employee, SystemNotice
from org.selectors import org_version
from tests.factories import EmployeeFactory
from tests.org.conftest import assert_tree_consistent, make_department

pytestmark = pytest.mark.django_db

INLINE = {
    "agent_profile-TOTAL_FORMS": "1",
    "agent_profile-INITIAL_FORMS": "0",
    "agent_profile-MIN_NUM_FORMS": "0",
    "agent_profile-MAX_NUM_FORMS": "1",
    "agent_profile-0-ack_deadline_seconds": "10",
}


def _employee_form(**fields) -> dict:
    return {
        **INLINE,
        "name": "",
        "title": "",
        "email": "",
        "phone": "",
        "avatar": "",
        "signature": "",
        **fields,
    }


def _passwords(html: str) -> list[str]:
    return re.findall(r'<code class="mchat-password">([^<]+)</code>', html)


@pytest.fixture
def hr(admin_client, django_capture_on_commit_callbacks):
    """The superuser's client; each request's on-commit hooks (events, broker files) run, as
    they would after a real commit."""

    class Committing:
        def get(self, *args, **kwargs):
            return admin_client.get(*args, **kwargs)

        def post(self, *args, **kwargs):
            with django_capture_on_commit_callbacks(execute=True):
                return admin_client.post(*args, **kwargs)

    return Committing()


@pytest.fixture
def staff(db):
    """A staff user with only view and change rights on employees."""
    user = User.objects.create_user("hr", password="hr-password-1", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_employee", "change_employee"]))
    return user


# --- pages -------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["employee", "department", "systemnotice"])
def test_pages_render_in_chinese(admin_client, org_admin, model):
    make_department("dept_sales", name="销售部")
    for page in (f"admin:org_{model}_changelist", f"admin:org_{model}_add"):
        response = admin_client.get(reverse(page))
        assert response.status_code == 200
        text = response.content.decode()
        assert "MChat 组织管理后台" in text
        assert "首页" in text  # Django's own strings in zh-hans as well


def test_employee_list_filters_and_search(admin_client, org_admin, alice, agent):
    sales = make_department("dept_sales", name="销售部")
    EmployeeFactory(employee_id="emp_zhang_001", name="张伟", department=sales)
    url = reverse("admin:org_employee_changelist")
    by_department = admin_client.get(url, {"department__id__inhierarchy": sales.pk}).content.decode()
    assert "emp_zhang_001" in by_department and "emp_alice_001" not in by_department
    agents = admin_client.get(url, {"is_ai_agent__exact": "1"}).content.decode()
    assert agent.employee_id in agents and "emp_alice_001" not in agents
    found = admin_client.get(url, {"q": "张伟"}).content.decode()
    assert "emp_zhang_001" in found and "emp_alice_001" not in found


def test_manager_autocomplete_offers_active_people_only(admin_client, alice, bob, agent):
    Employee.objects.filter(pk=bob.pk).update(is_active=False)
    response = admin_client.get(
        reverse("admin:autocomplete"),
        {
            "app_label": "org",
            "model_name": "employee",
            "field_name": "manager",
            "term": "",
        },
    )
    ids = {r["text"] for r in response.json()["results"]}
    assert any("emp_alice_001" in t for t in ids)
    assert not any("emp_bob_001" in t for t in ids)
    owners = admin_client.get(
        reverse("admin:autocomplete"),
        {
            "app_label": "org",
            "model_name": "agentprofile",
            "field_name": "owner",
            "term": "",
        },
    ).json()["results"]
    assert not any(agent.employee_id in r["text"] for r in owners)


# --- employees ---------------------------------------------------------------------------------


def test_add_employee_shows_the_password_once(hr, settings, published):
    sales = make_department("dept_sales", name="销售部")
    response = hr.post(
        reverse("admin:org_employee_add"),
        _employee_form(name="王五", department=str(sales.pk)),
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    employee = Employee.objects.get(employee_id="emp_wangwu_001")
    [password] = _passwords(response.content.decode())
    assert verify_password(password, employee.mqtt_password_hash)
    assert password not in employee.mqtt_password_hash
    assert employee.department == sales
    assert (
        f"emp_wangwu_001:{employee.mqtt_password_hash}" in (settings.MCHAT_BROKER_DIR / "passwd").read_text()
    )
    assert published.to("mchat/profile/emp_wangwu_001")[0]["event"] == "created"
    # The change page never shows it again.
    page = hr.get(reverse("admin:org_employee_change", args=[employee.pk])).content.decode()
    assert password not in page


def test_add_agent_with_its_profile_inline(hr, alice):
    response = hr.post(
        reverse("admin:org_employee_add"),
        _employee_form(
            name="客服助手",
            id_slug="service",
            is_ai_agent="on",
            **{
                "agent_profile-0-owner": str(alice.pk),
                "agent_profile-0-description": "回答售后问题",
                "agent_profile-0-capabilities": "退款查询，物流查询\n发票",
                "agent_profile-0-skills_badge": "⚡实时响应",
                "agent_profile-0-ack_deadline_seconds": "20",
            },
        ),
    )
    assert response.status_code == 200, response.content.decode()[:2000]
    profile = AgentProfile.objects.get(employee__employee_id="ai_service_001")
    assert profile.capabilities == ["退款查询", "物流查询", "发票"]
    assert (profile.owner, profile.ack_deadline_seconds, profile.skills_badge) == (
        alice,
        20,
        ["⚡实时响应"],
    )


def test_change_employee_goes_through_the_service(hr, bob, published):
    sales = make_department("dept_sales", name="销售部")
    before = org_version()
    form = _employee_form(name="Bob", department=str(sales.pk), title="销售", is_active="on")
    form.pop("agent_profile-TOTAL_FORMS")  # humans have no agent inline on the change page
    response = hr.post(reverse("admin:org_employee_change", args=[bob.pk]), form)
    assert response.status_code == 302
    bob.refresh_from_db()
    assert (bob.department, bob.title) == (sales, "销售")
    [event] = published.to(f"mchat/profile/{bob.employee_id}")
    assert event["fields"] == ["department_id", "title"]
    assert org_version() != before


def test_a_service_refusal_is_shown_on_the_form(admin_client, alice, bob):
    Employee.objects.filter(pk=alice.pk).update(manager=bob)
    form = {
        "name": "Bob",
        "manager": str(alice.pk),
        "is_active": "on",
        "title": "",
        "email": "",
        "phone": "",
        "avatar": "",
        "signature": "",
    }
    response = admin_client.post(reverse("admin:org_employee_change", args=[bob.pk]), form)
    assert response.status_code == 200
    assert "manager_id 会形成循环的汇报关系" in response.content.decode()
    bob.refresh_from_db()
    assert bob.manager is None


def test_reset_credentials_confirms_then_shows_new_passwords_once(hr, alice, bob, settings):
    url = reverse("admin:org_employee_changelist")
    selection = {"action": "reset_credentials", "_selected_action": [alice.pk, bob.pk]}
    confirm = hr.post(url, selection)
    assert confirm.status_code == 200
    assert "确认重置" in confirm.content.decode()
    assert Employee.objects.get(pk=alice.pk).mqtt_password_hash == alice.mqtt_password_hash

    done = hr.post(url, {**selection, "post": "yes"})
    assert done.status_code == 200
    assert "no-store" in done["Cache-Control"]
    passwords = _passwords(done.content.decode())
    assert len(passwords) == 2
    for employee in (alice, bob):
        fresh = Employee.objects.get(pk=employee.pk)
        assert not verify_password("secret", fresh.mqtt_password_hash)  # the factory's old one
        assert any(verify_password(p, fresh.mqtt_password_hash) for p in passwords)
    assert (
        f"{alice.employee_id}:{Employee.objects.get(pk=alice.pk).mqtt_password_hash}"
        in (settings.MCHAT_BROKER_DIR / "passwd").read_text()
    )


def test_reset_needs_its_own_permission(client, staff, alice):
    client.force_login(staff)
    url = reverse("admin:org_employee_changelist")
    page = client.get(url).content.decode()
    assert "reset_credentials" not in page
    response = client.post(
        url,
        {"action": "reset_credentials", "_selected_action": [alice.pk], "post": "yes"},
    )
    assert Employee.objects.get(pk=alice.pk).mqtt_password_hash == alice.mqtt_password_hash
    assert response.status_code in (200, 302)
    staff.user_permissions.add(Permission.objects.get(codename="reset_credentials"))
    assert "reset_credentials" in client.get(url).content.decode()


def test_deactivate_and_reactivate_actions(hr, bob, settings, published):
    acl.sync()
    url = reverse("admin:org_employee_changelist")
    hr.post(url, {"action": "deactivate", "_selected_action": [bob.pk]})
    assert not Employee.objects.get(pk=bob.pk).is_active
    assert f"{bob.employee_id}:" not in (settings.MCHAT_BROKER_DIR / "passwd").read_text()
    hr.post(url, {"action": "reactivate", "_selected_action": [bob.pk]})
    assert Employee.objects.get(pk=bob.pk).is_active
    assert [e["event"] for e in published.to(f"mchat/profile/{bob.employee_id}")] == [
        "deactivated",
        "reactivated",
    ]


def test_employees_cannot_be_deleted_only_deactivated(admin_client, bob):
    assert admin_client.get(reverse("admin:org_employee_delete", args=[bob.pk])).status_code == 403


# --- departments -------------------------------------------------------------------------------


def test_add_and_change_department(admin_client):
    sales = make_department("dept_sales", name="销售部")
    response = admin_client.post(
        reverse("admin:org_department_add"),
        {
            "name": "华东区",
            "parent": str(sales.pk),
            "sort_order": "1",
            "department_id": "",
        },
    )
    assert response.status_code == 302
    east = Department.objects.get(department_id="dept_huadongqu")
    assert east.parent == sales
    admin_client.post(
        reverse("admin:org_department_change", args=[east.pk]),
        {"name": "华东销售区", "parent": "", "sort_order": "0"},
    )
    east.refresh_from_db()
    assert (east.name, east.parent) == ("华东销售区", None)
    assert assert_tree_consistent() == ["dept_huadongqu", "dept_sales"]


def test_department_cycle_is_a_form_error(admin_client):
    sales = make_department("dept_sales", name="销售部")
    east = make_department("dept_east", parent=sales)
    response = admin_client.post(
        reverse("admin:org_department_change", args=[sales.pk]),
        {"name": "销售部", "parent": str(east.pk), "sort_order": "0"},
    )
    assert response.status_code == 200
    assert Department.objects.get(pk=sales.pk).parent is None


def test_drag_and_drop_moves_through_the_service(hr):
    sales = make_department("dept_sales", sort_order=1)
    tech = make_department("dept_tech", sort_order=2)
    before = org_version()
    response = hr.post(
        reverse("admin:org_department_changelist"),
        {
            "cmd": "move_node",
            "cut_item": tech.pk,
            "pasted_on": sales.pk,
            "position": "left",
        },
    )
    assert response.content == b"OK, moved."
    assert assert_tree_consistent() == ["dept_tech", "dept_sales"]
    assert list(Department.objects.order_by("sort_order").values_list("department_id", flat=True)) == [
        "dept_tech",
        "dept_sales",
    ]
    assert org_version() != before
    refused = hr.post(
        reverse("admin:org_department_changelist"),
        {
            "cmd": "move_node",
            "cut_item": sales.pk,
            "pasted_on": sales.pk,
            "position": "last-child",
        },
    )
    assert refused.content.startswith(b"FAIL")


def test_delete_department_asks_where_members_go(hr, published):
    sales = make_department("dept_sales", name="销售部")
    tech = make_department("dept_tech", name="技术部")
    member = EmployeeFactory(department=sales)
    url = reverse("admin:org_department_delete", args=[sales.pk])
    page = hr.get(url).content.decode()
    assert 'name="move_to"' in page and "dept_tech" in page and "部门员工：1 人" in page

    refused = hr.post(url, {"post": "yes"}, follow=True)
    assert "move_to" in refused.content.decode()
    assert Department.objects.filter(pk=sales.pk).exists()

    done = hr.post(url, {"post": "yes", "move_to": "dept_tech"})
    assert done.status_code == 302
    assert not Department.objects.filter(pk=sales.pk).exists()
    assert Employee.objects.get(pk=member.pk).department == tech


# --- system notices ----------------------------------------------------------------------------


def test_broadcast_a_system_notice(hr, published):
    response = hr.post(
        reverse("admin:org_systemnotice_add"),
        {"title": "系统维护", "text": "今晚 22:00 维护 30 分钟"},
    )
    assert response.status_code == 302
    notice = SystemNotice.objects.get()
    assert notice.sent_by == "admin"
    [message] = [m for m in published.messages if m.topic == "mchat/system/notify"]
    assert (message.qos, message.retain) == (1, False)
    assert message.payload == {
        "notify_id": notice.notify_id,
        "type": "system_notice",
        "title": "系统维护",
        # The console user "admin" is no employee: the documented system value.
        "body": {"text": "今晚 22:00 维护 30 分钟", "operator_id": "system"},
        "created_at": message.payload["created_at"],
    }
    assert re.fullmatch(r"notify_[0-9a-f]{24}", notice.notify_id)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", message.payload["created_at"])


def test_change_agent_settings_through_the_inline(hr, agent, alice, published):
    profile = AgentProfile.objects.get(employee=agent)
    form = {
        "name": agent.name,
        "is_active": "on",
        **{f: "" for f in ("title", "email", "phone", "avatar", "signature")},
        "agent_profile-TOTAL_FORMS": "1",
        "agent_profile-INITIAL_FORMS": "1",
        "agent_profile-MIN_NUM_FORMS": "0",
        "agent_profile-MAX_NUM_FORMS": "1",
        "agent_profile-0-id": str(profile.pk),
        "agent_profile-0-employee": str(agent.pk),
        "agent_profile-0-owner": str(alice.pk),
        "agent_profile-0-description": "",
        "agent_profile-0-capabilities": "订单查询\n退款",
        "agent_profile-0-skills_badge": "⚡实时响应",
        "agent_profile-0-ack_deadline_seconds": "10",
    }
    response = hr.post(reverse("admin:org_employee_change", args=[agent.pk]), form)
    assert response.status_code == 302, response.content.decode()[:3000]
    profile.refresh_from_db()
    assert profile.capabilities == ["订单查询", "退款"]
    [event] = published.to(f"mchat/profile/{agent.employee_id}")
    assert event["fields"] == ["capabilities"]
    assert event["profile"]["capabilities"] == ["订单查询", "退款"]
