"""employee.create / employee.update over the real dispatcher: results, rules, events."""

import pytest

from bridge import acl
from org.credentials import verify_password
from org.models import AgentProfile, Employee
from org.selectors import org_version
from tests.factories import DepartmentFactory, EmployeeFactory

pytestmark = pytest.mark.django_db


def _passwd(settings) -> str:
    return (settings.MCHAT_BROKER_DIR / "passwd").read_text()


# --- employee.create ---------------------------------------------------------------------------


def test_create_returns_a_working_credential_shown_once(call, org_admin, settings, published):
    settings.MCHAT_PUBLIC_MQTT_HOST = "broker.example.com"
    settings.MCHAT_PUBLIC_MQTT_PORT = 8883
    settings.MCHAT_PUBLIC_MQTT_TLS = True
    DepartmentFactory(department_id="dept_sales", name="销售部")
    response = call(org_admin, "employee.create", name="张三", department_id="dept_sales")

    assert response["code"] == 0, response
    data = response["data"]
    assert data["employee_id"] == "emp_zhangsan_001"
    connection = data["mqtt_connection"]
    assert connection["broker_host"] == "broker.example.com"
    assert connection["broker_port"] == 8883
    assert connection["use_tls"] is True
    assert connection["mqtt_username"] == "emp_zhangsan_001"
    stored = Employee.objects.get(employee_id="emp_zhangsan_001")
    assert stored.department.department_id == "dept_sales"
    assert connection["mqtt_password"] not in stored.mqtt_password_hash
    assert verify_password(connection["mqtt_password"], stored.mqtt_password_hash)
    # The broker's password file has the new line right after the commit.
    assert f"emp_zhangsan_001:{stored.mqtt_password_hash}" in _passwd(settings)


def test_create_agent_with_profile(call, org_admin, alice):
    response = call(
        org_admin,
        "employee.create",
        name="销售小助",
        is_ai_agent=True,
        id_slug="sales",
        agent={
            "capabilities": ["订单查询", "产品推荐", "订单查询"],
            "skills_badge": ["⚡实时响应"],
            "description": "回答订单问题",
            "owner": alice.employee_id,
        },
    )
    assert response["code"] == 0, response
    assert response["data"]["employee_id"] == "ai_sales_001"
    profile = AgentProfile.objects.get(employee__employee_id="ai_sales_001")
    assert profile.capabilities == ["订单查询", "产品推荐"]
    assert profile.skills_badge == ["⚡实时响应"]
    assert profile.owner == alice
    assert profile.ack_deadline_seconds == 10


def test_agent_owner_defaults_to_the_creating_admin(call, org_admin):
    response = call(org_admin, "employee.create", name="助手", is_ai_agent=True)
    assert AgentProfile.objects.get(employee__employee_id=response["data"]["employee_id"]).owner == org_admin


def test_create_announces_the_newcomer_on_its_profile_topic(call, org_admin, published):
    response = call(org_admin, "employee.create", name="李四")
    [event] = published.to("mchat/profile/emp_lisi_001")
    assert event["event"] == "created"
    assert event["employee_id"] == "emp_lisi_001"
    assert event["profile"]["name"] == "李四"
    assert response["code"] == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "name 不能为空"),
        ({"name": "   "}, "name 不能为空"),
        (
            {"name": "x", "department_id": "dept_nowhere"},
            "department_id 不存在：dept_nowhere",
        ),
        (
            {"name": "x", "manager_id": "emp_nobody_001"},
            "manager_id 不存在或已停用：emp_nobody_001",
        ),
        ({"name": "x", "email": "not-an-email"}, "email"),
        ({"name": "x", "agent": {"capabilities": ["a"]}}, "agent 仅适用于 AI Agent"),
        (
            {"name": "x", "is_ai_agent": True, "agent": {"owner": "emp_nobody_001"}},
            "agent.owner",
        ),
        (
            {"name": "x", "is_ai_agent": True, "agent": {"colour": "red"}},
            "agent.colour",
        ),
        (
            {"name": "x", "is_ai_agent": True, "agent": {"capabilities": "订单查询"}},
            "agent.capabilities",
        ),
        ({"name": "x", "id_slug": "Not Valid!"}, "id_slug"),
    ],
)
def test_create_refuses_bad_input_naming_the_field(call, org_admin, fields, message):
    response = call(org_admin, "employee.create", **fields)
    assert response["code"] == 400
    assert message in response["message"]
    assert response["data"] is None
    assert not Employee.objects.exclude(pk=org_admin.pk).exists()


def test_agent_owner_must_be_a_human(call, org_admin, agent):
    response = call(
        org_admin,
        "employee.create",
        name="子助手",
        is_ai_agent=True,
        agent={"owner": agent.employee_id},
    )
    assert response["code"] == 400
    assert "agent.owner 必须是人类员工" in response["message"]


# --- employee.update ---------------------------------------------------------------------------


def test_update_by_admin_publishes_the_spec_profile_event(call, org_admin, bob, published):
    DepartmentFactory(department_id="dept_sales", name="销售部")
    manager = EmployeeFactory(employee_id="mgr_002", name="经理")
    response = call(
        org_admin,
        "employee.update",
        employee_id=bob.employee_id,
        updates={
            "name": "Bob（销售）",
            "department_id": "dept_sales",
            "manager_id": "mgr_002",
        },
    )
    assert response["code"] == 0, response
    assert response["data"]["employee_id"] == bob.employee_id
    assert response["data"]["fields"] == ["name", "department_id", "manager_id"]

    [event] = published.to(f"mchat/profile/{bob.employee_id}")
    assert set(event) == {"employee_id", "event", "fields", "profile", "updated_at"}
    assert event["employee_id"] == bob.employee_id
    assert event["event"] == "updated"
    assert event["fields"] == ["name", "department_id", "manager_id"]
    assert event["profile"] == {
        "name": "Bob（销售）",
        "department_id": "dept_sales",
        "manager_id": manager.employee_id,
        "is_ai_agent": False,
        "is_active": True,
        "title": "",
        "avatar": "",
        "signature": "",
        "skills_badge": [],
        "capabilities": [],
    }
    assert event["updated_at"] == response["data"]["updated_at"]
    assert event["updated_at"].endswith("Z") and len(event["updated_at"]) == 24


def test_profile_event_goes_out_only_after_commit(call, bob, published):
    # Dispatcher commits before the capture ends; a failing update publishes nothing.
    response = call(bob, "employee.update", employee_id=bob.employee_id, updates={"name": "x"})
    assert response["code"] == 403
    assert published.to(f"mchat/profile/{bob.employee_id}") == []


def test_self_may_change_own_avatar_and_signature(call, bob, published):
    response = call(
        bob,
        "employee.update",
        employee_id=bob.employee_id,
        updates={"avatar": "https://cdn.example.com/bob.png", "signature": "在路上"},
    )
    assert response["code"] == 0, response
    bob.refresh_from_db()
    assert (bob.avatar, bob.signature) == ("https://cdn.example.com/bob.png", "在路上")
    [event] = published.to(f"mchat/profile/{bob.employee_id}")
    assert event["fields"] == ["avatar", "signature"]


def test_unchanged_values_publish_nothing_and_keep_the_version(call, org_admin, bob, published):
    version = org_version()
    response = call(
        org_admin,
        "employee.update",
        employee_id=bob.employee_id,
        updates={"name": bob.name},
    )
    assert response["code"] == 0
    assert response["data"]["fields"] == []
    assert published.to(f"mchat/profile/{bob.employee_id}") == []
    assert org_version() == version


def test_contact_changes_are_not_broadcast(call, org_admin, bob, published):
    response = call(
        org_admin,
        "employee.update",
        employee_id=bob.employee_id,
        updates={"email": "bob@example.com"},
    )
    assert response["data"]["fields"] == ["email"]
    assert published.to(f"mchat/profile/{bob.employee_id}") == []


def test_agent_settings_change_and_announce_badges(call, org_admin, agent, published):
    response = call(
        org_admin,
        "employee.update",
        employee_id=agent.employee_id,
        updates={"agent": {"skills_badge": ["🏅金牌客服"], "ack_deadline_seconds": 30}},
    )
    assert response["code"] == 0, response
    assert response["data"]["fields"] == [
        "agent.skills_badge",
        "agent.ack_deadline_seconds",
    ]
    profile = AgentProfile.objects.get(employee=agent)
    assert (profile.skills_badge, profile.ack_deadline_seconds) == (["🏅金牌客服"], 30)
    [event] = published.to(f"mchat/profile/{agent.employee_id}")
    assert event["fields"] == ["skills_badge"]
    assert event["profile"]["skills_badge"] == ["🏅金牌客服"]
    assert event["profile"]["is_ai_agent"] is True


@pytest.mark.parametrize(
    ("updates", "code", "message"),
    [
        ({}, 400, "updates 不能为空"),
        ({"nickname": "x"}, 400, "updates.nickname 不是可修改的字段"),
        ({"is_ai_agent": True}, 400, "updates.is_ai_agent 不是可修改的字段"),
        ({"name": ""}, 400, "updates.name 不能为空"),
        ({"department_id": "dept_nowhere"}, 400, "department_id 不存在：dept_nowhere"),
        ({"manager_id": "emp_bob_001"}, 400, "manager_id 不能是员工本人"),
        ({"agent": {"capabilities": ["x"]}}, 400, "agent 仅适用于 AI Agent 员工"),
        ({"is_active": "no"}, 400, "updates.is_active"),
    ],
)
def test_update_refuses_bad_input(call, org_admin, bob, updates, code, message):
    response = call(org_admin, "employee.update", employee_id=bob.employee_id, updates=updates)
    assert (response["code"], response["data"]) == (code, None)
    assert message in response["message"]


def test_update_of_an_unknown_employee_is_404_naming_it(call, org_admin):
    response = call(org_admin, "employee.update", employee_id="emp_ghost_001", updates={"name": "x"})
    assert response["code"] == 404
    assert response["message"] == "员工不存在：emp_ghost_001"


def test_manager_cycles_are_refused(call, org_admin, alice, bob):
    assert (
        call(
            org_admin,
            "employee.update",
            employee_id=bob.employee_id,
            updates={"manager_id": alice.employee_id},
        )["code"]
        == 0
    )
    response = call(
        org_admin,
        "employee.update",
        employee_id=alice.employee_id,
        updates={"manager_id": bob.employee_id},
    )
    assert response["code"] == 400
    assert "manager_id 会形成循环" in response["message"]


def test_admin_cannot_deactivate_itself(call, org_admin):
    response = call(
        org_admin,
        "employee.update",
        employee_id=org_admin.employee_id,
        updates={"is_active": False},
    )
    assert response["code"] == 403
    assert Employee.objects.get(pk=org_admin.pk).is_active


# --- deactivation ------------------------------------------------------------------------------


def test_deactivation_revokes_the_login_and_leaves_the_tree(call, org_admin, bob, settings, published):
    acl.sync()
    assert f"{bob.employee_id}:" in _passwd(settings)
    version = org_version()

    response = call(
        org_admin,
        "employee.update",
        employee_id=bob.employee_id,
        updates={"is_active": False},
    )
    assert response["code"] == 0, response
    assert f"{bob.employee_id}:" not in _passwd(settings)
    [event] = published.to(f"mchat/profile/{bob.employee_id}")
    assert event["event"] == "deactivated"
    assert event["fields"] == ["is_active"]
    assert event["profile"]["is_active"] is False

    tree = call(org_admin, "org.tree")["data"]
    assert bob.employee_id not in [e["employee_id"] for e in tree["employees"]]
    assert tree["version"] != version
    # The deactivated employee's own requests are refused from now on.
    assert call(bob, "org.tree")["code"] == 401


def test_reactivation_restores_the_login(call, org_admin, bob, settings, published):
    call(
        org_admin,
        "employee.update",
        employee_id=bob.employee_id,
        updates={"is_active": False},
    )
    response = call(
        org_admin,
        "employee.update",
        employee_id=bob.employee_id,
        updates={"is_active": True},
    )
    assert response["code"] == 0
    assert f"{bob.employee_id}:{bob.mqtt_password_hash}" in _passwd(settings)
    assert published.to(f"mchat/profile/{bob.employee_id}")[-1]["event"] == "reactivated"
