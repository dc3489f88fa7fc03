"""Who may do what, for every org action: org admin / self / other employee (/ agent owner).

One row per (action, request, actor); `expected` is the response code. Requests are valid, so
only the actor decides the outcome; a refusal must leave nothing changed and publish nothing.
"""

from __future__ import annotations

import pytest

from org.models import AgentProfile, Department, Employee
from org.selectors import org_version
from tests.factories import DepartmentFactory, EmployeeFactory

pytestmark = pytest.mark.django_db

ADMIN, SELF, OTHER, OWNER = "org admin", "self", "other employee", "agent owner"


def _bob_update(**updates):
    return lambda ctx: {"employee_id": ctx["bob"].employee_id, "updates": updates}


def _agent_update(**agent):
    return lambda ctx: {
        "employee_id": ctx["agent"].employee_id,
        "updates": {"agent": agent},
    }


# (action, request builder, {actor: expected code})
MATRIX = [
    ("employee.create", lambda ctx: {"name": "王五"}, {ADMIN: 0, OTHER: 403}),
    (
        "employee.create",
        lambda ctx: {
            "name": "助手",
            "is_ai_agent": True,
            "agent": {"capabilities": ["x"]},
        },
        {ADMIN: 0, OTHER: 403},
    ),
    ("employee.update", _bob_update(name="新名字"), {ADMIN: 0, SELF: 403, OTHER: 403}),
    ("employee.update", _bob_update(title="经理"), {ADMIN: 0, SELF: 403, OTHER: 403}),
    (
        "employee.update",
        _bob_update(department_id="dept_sales"),
        {ADMIN: 0, SELF: 403, OTHER: 403},
    ),
    (
        "employee.update",
        _bob_update(manager_id="emp_alice_001"),
        {ADMIN: 0, SELF: 403, OTHER: 403},
    ),
    (
        "employee.update",
        _bob_update(is_org_admin=True),
        {ADMIN: 0, SELF: 403, OTHER: 403},
    ),
    (
        "employee.update",
        _bob_update(is_active=False),
        {ADMIN: 0, SELF: 403, OTHER: 403},
    ),
    (
        "employee.update",
        _bob_update(email="b@example.com"),
        {ADMIN: 0, SELF: 403, OTHER: 403},
    ),
    (
        "employee.update",
        _bob_update(avatar="https://a/b.png"),
        {ADMIN: 0, SELF: 0, OTHER: 403},
    ),
    ("employee.update", _bob_update(signature="你好"), {ADMIN: 0, SELF: 0, OTHER: 403}),
    (
        "employee.update",
        _bob_update(signature="你好", name="混合"),
        {ADMIN: 0, SELF: 403, OTHER: 403},
    ),
    (
        "employee.update",
        _agent_update(capabilities=["订单查询", "退款"]),
        {ADMIN: 0, SELF: 403, OWNER: 0, OTHER: 403},
    ),
    (
        "employee.update",
        _agent_update(description="新的介绍"),
        {ADMIN: 0, SELF: 403, OWNER: 0, OTHER: 403},
    ),
    (
        "employee.update",
        _agent_update(skills_badge=["🏅"]),
        {ADMIN: 0, SELF: 403, OWNER: 403, OTHER: 403},
    ),
    (
        "employee.update",
        _agent_update(owner="emp_bob_001"),
        {ADMIN: 0, SELF: 403, OWNER: 403, OTHER: 403},
    ),
    ("org.tree", lambda ctx: {}, {ADMIN: 0, SELF: 0, OTHER: 0}),
    (
        "department.create",
        lambda ctx: {"name": "华东区", "parent_id": "dept_sales"},
        {ADMIN: 0, OTHER: 403},
    ),
    (
        "department.update",
        lambda ctx: {"department_id": "dept_east", "updates": {"name": "华东销售区"}},
        {ADMIN: 0, OTHER: 403},
    ),
    (
        "department.delete",
        lambda ctx: {"department_id": "dept_east", **ctx["challenge"](ctx["actor"])},
        {ADMIN: 0, OTHER: 403},
    ),
]


def _cases():
    for row, (action, build, expectations) in enumerate(MATRIX):
        for actor, expected in expectations.items():
            yield pytest.param(action, build, actor, expected, id=f"{row:02d}-{action}-{actor}")


def _actor(role: str, ctx: dict, action: str, request: dict) -> Employee:
    if role == ADMIN:
        return ctx["org_admin"]
    if role == OWNER:
        return ctx["alice"]  # the agent fixture's owner
    if role == SELF:  # the target itself; for reads, any plain employee
        return Employee.objects.get(employee_id=request.get("employee_id", ctx["bob"].employee_id))
    # OTHER: an employee with no relation to the target
    return ctx["carol"]


def _state() -> tuple:
    employees = list(
        Employee.objects.order_by("pk").values_list(
            "employee_id",
            "name",
            "title",
            "email",
            "avatar",
            "signature",
            "department_id",
            "manager_id",
            "is_org_admin",
            "is_active",
        )
    )
    agents = list(
        AgentProfile.objects.order_by("pk").values_list(
            "capabilities", "skills_badge", "description", "owner_id"
        )
    )
    departments = list(
        Department.objects.order_by("pk").values_list("department_id", "name", "parent_id", "sort_order")
    )
    return employees, agents, departments, org_version()


@pytest.mark.parametrize(("action", "build", "role", "expected"), list(_cases()))
def test_permission_matrix(
    call,
    published,
    org_admin,
    alice,
    bob,
    agent,
    challenge,
    action,
    build,
    role,
    expected,
):
    sales = DepartmentFactory(department_id="dept_sales", name="销售部")
    DepartmentFactory(department_id="dept_east", name="华东区", parent=sales)
    ctx = {
        "org_admin": org_admin,
        "alice": alice,
        "bob": bob,
        "agent": agent,
        "carol": EmployeeFactory(employee_id="emp_carol_001", name="Carol"),
        "challenge": challenge,
    }
    probe = build({**ctx, "actor": None, "challenge": lambda employee: {}})
    actor = _actor(role, ctx, action, probe)
    ctx["actor"] = actor
    request = build(ctx)
    before = _state()
    published.clear()

    response = call(actor, action, **request)

    assert response["code"] == expected, response
    if expected == 403:
        assert response["message"].startswith(("无权", "不能")), response
        assert _state() == before
        # The refusal itself is the only thing published.
        assert [m.topic.rsplit("/", 1)[0] for m in published.messages] == [
            f"mchat/msg/resp/{actor.employee_id}_dev1"
        ]
