"""org.tree: shape, order, active employees only, and the version that spares re-fetches."""

import pytest

from org import selectors, services
from tests.factories import EmployeeFactory
from tests.org.conftest import make_department

pytestmark = pytest.mark.django_db


def test_tree_lists_departments_in_tree_order_and_active_employees(call, alice):
    sales = make_department("dept_sales", sort_order=2, name="销售部")
    make_department("dept_tech", sort_order=1, name="技术部")
    make_department("dept_east", parent=sales, sort_order=1, name="华东区")
    boss = EmployeeFactory(employee_id="emp_boss_001", name="老板", department=sales)
    EmployeeFactory(employee_id="emp_worker_001", name="员工", department=sales, manager=boss)
    EmployeeFactory(employee_id="emp_gone_001", name="离职", department=sales, is_active=False)

    response = call(alice, "org.tree")
    assert response["code"] == 0
    data = response["data"]
    assert set(data) == {"version", "departments", "employees"}
    assert data["departments"] == [
        {
            "department_id": "dept_tech",
            "name": "技术部",
            "parent_id": None,
            "sort_order": 1,
        },
        {
            "department_id": "dept_sales",
            "name": "销售部",
            "parent_id": None,
            "sort_order": 2,
        },
        {
            "department_id": "dept_east",
            "name": "华东区",
            "parent_id": "dept_sales",
            "sort_order": 1,
        },
    ]
    employees = {e["employee_id"]: e for e in data["employees"]}
    assert "emp_gone_001" not in employees
    assert employees["emp_worker_001"] == {
        "employee_id": "emp_worker_001",
        "name": "员工",
        "department_id": "dept_sales",
        "manager_id": "emp_boss_001",
        "is_ai_agent": False,
    }
    assert employees[alice.employee_id]["department_id"] is None


def test_current_version_gets_unchanged(call, alice):
    first = call(alice, "org.tree")["data"]
    again = call(alice, "org.tree", version=first["version"])
    assert again["data"] == {"version": first["version"], "unchanged": True}
    stale = call(alice, "org.tree", version="0.stale")["data"]
    assert set(stale) == {"version", "departments", "employees"}


def test_unchanged_answer_costs_one_query(django_assert_num_queries):
    version = selectors.org_version()
    with django_assert_num_queries(1):
        assert selectors.org_tree(known_version=version) == {
            "version": version,
            "unchanged": True,
        }


def test_full_tree_costs_three_queries_whatever_its_size(django_assert_num_queries):
    sales = make_department("dept_sales")
    for _ in range(30):
        EmployeeFactory(department=sales, manager=None)
    with django_assert_num_queries(3):
        tree = selectors.org_tree()
    assert len(tree["employees"]) == 30


def test_integer_versions_from_clients_compare_as_text(call, alice):
    services.department_create(actor=None, name="销售部")
    version = call(alice, "org.tree")["data"]["version"]
    assert isinstance(version, str)
    response = call(alice, "org.tree", version=12345)
    assert "departments" in response["data"]


@pytest.mark.parametrize(
    "change",
    [
        lambda ctx: services.employee_create(actor=None, name="新人"),
        lambda ctx: services.employee_update(
            actor=None, employee_id=ctx["bob"].employee_id, updates={"name": "鲍勃"}
        ),
        lambda ctx: services.employee_update(
            actor=None,
            employee_id=ctx["bob"].employee_id,
            updates={"department_id": "dept_sales"},
        ),
        lambda ctx: services.employee_update(
            actor=None,
            employee_id=ctx["bob"].employee_id,
            updates={"manager_id": ctx["alice"].employee_id},
        ),
        lambda ctx: services.employee_deactivate(actor=None, employee_id=ctx["bob"].employee_id),
        lambda ctx: services.department_create(actor=None, name="新部门"),
        lambda ctx: services.department_update(
            actor=None, department_id="dept_sales", updates={"name": "销售中心"}
        ),
        lambda ctx: services.department_update(
            actor=None, department_id="dept_sales", updates={"sort_order": 9}
        ),
        lambda ctx: services.department_move(
            actor=None,
            department_id="dept_sales",
            target_id="dept_tech",
            position="last-child",
        ),
        lambda ctx: services.department_delete(actor=None, department_id="dept_tech", move_to="dept_sales"),
    ],
    ids=[
        "employee create",
        "rename",
        "department",
        "manager",
        "deactivate",
        "department create",
        "department rename",
        "department reorder",
        "department move",
        "department delete",
    ],
)
def test_every_org_change_changes_the_version(alice, bob, change):
    make_department("dept_sales")
    make_department("dept_tech")
    before = selectors.org_version()
    change({"alice": alice, "bob": bob})
    assert selectors.org_version() != before


def test_profile_only_changes_keep_the_version(bob):
    before = selectors.org_version()
    services.employee_update(
        actor=bob,
        employee_id=bob.employee_id,
        updates={"signature": "hi", "avatar": "a.png"},
    )
    assert selectors.org_version() == before
