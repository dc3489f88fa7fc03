"""People and departments for org tests, and a check that the MPTT tree is sound."""

from __future__ import annotations

import pytest

from org import services
from org.models import Department
from tests.factories import EmployeeFactory


@pytest.fixture
def org_admin(db):
    return EmployeeFactory(employee_id="emp_admin_001", name="管理员", is_org_admin=True)


@pytest.fixture
def alice(db):
    return EmployeeFactory(employee_id="emp_alice_001", name="Alice")


@pytest.fixture
def bob(db):
    return EmployeeFactory(employee_id="emp_bob_001", name="Bob")


@pytest.fixture
def agent(db, alice):
    """An AI agent owned by alice."""
    return services.employee_create(
        actor=None,
        name="销售小助",
        is_ai_agent=True,
        id_slug="sales",
        agent={
            "owner": alice.employee_id,
            "capabilities": ["订单查询"],
            "skills_badge": ["⚡实时响应"],
        },
    ).employee


@pytest.fixture
def challenge():
    """A fresh auth.challenge for `employee`, as the (challenge_id, token) request fields."""

    def issue(employee) -> dict:
        issued, token = services.challenge_issue(actor=employee)
        return {"challenge_id": issued.challenge_id, "token": token}

    return issue


def make_department(
    department_id: str,
    *,
    parent: Department | None = None,
    sort_order: int = 0,
    name=None,
):
    """Through the service, so MPTT ordering is exactly what production produces."""
    return services.department_create(
        actor=None,
        name=name or department_id.removeprefix("dept_"),
        department_id=department_id,
        parent_id=parent.department_id if parent else None,
        sort_order=sort_order,
    )


def tree_snapshot() -> list[tuple]:
    """(department_id, parent, level, lft, rght, root rank) for every department."""
    rows = list(
        Department.objects.order_by("tree_id", "lft").values_list(
            "department_id", "parent__department_id", "level", "lft", "rght", "tree_id"
        )
    )
    ranks = {tree_id: rank for rank, tree_id in enumerate(sorted({r[5] for r in rows}))}
    return [(*row[:5], ranks[row[5]]) for row in rows]


def assert_tree_consistent() -> list[str]:
    """The stored nested sets equal a rebuild from parent pointers and (sort_order, name);
    returns the department ids in tree order."""
    before = tree_snapshot()
    Department.objects.rebuild()
    after = tree_snapshot()
    assert before == after
    return [row[0] for row in after]
