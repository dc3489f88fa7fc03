"""Department tree rules: order, moves, cycles, deletion with and without move_to, challenges,
serialised concurrent writes."""

from __future__ import annotations

import random
import threading

import pytest
from django.db import close_old_connections, connection

from mchat.errors import BadRequest
from org import services
from org.models import Department, Employee
from org.selectors import org_version
from tests.factories import EmployeeFactory
from tests.org.conftest import assert_tree_consistent, make_department

pytestmark = pytest.mark.django_db


@pytest.fixture
def tree(db):
    """sales (east, west), tech; ids in tree order: sales, east, west, tech."""
    sales = make_department("dept_sales", sort_order=1, name="销售部")
    tech = make_department("dept_tech", sort_order=2, name="技术部")
    east = make_department("dept_east", parent=sales, sort_order=1, name="华东区")
    west = make_department("dept_west", parent=sales, sort_order=2, name="华西区")
    return {"sales": sales, "tech": tech, "east": east, "west": west}


def _ids() -> list[str]:
    return assert_tree_consistent()


def _parent(department_id: str) -> str | None:
    parent = Department.objects.get(department_id=department_id).parent
    return parent.department_id if parent else None


# --- create / update ---------------------------------------------------------------------------


def test_siblings_follow_sort_order_whatever_the_insert_order(call, org_admin, tree):
    response = call(
        org_admin,
        "department.create",
        name="华北区",
        parent_id="dept_sales",
        sort_order=0,
    )
    assert response["code"] == 0, response
    assert response["data"]["department_id"] == "dept_huabeiqu"
    assert response["data"]["parent_id"] == "dept_sales"
    assert _ids() == [
        "dept_sales",
        "dept_huabeiqu",
        "dept_east",
        "dept_west",
        "dept_tech",
    ]
    root = call(org_admin, "department.create", name="行政部", sort_order=0)
    assert root["data"]["parent_id"] is None
    assert _ids()[0] == "dept_xingzhengbu"


def test_create_with_an_explicit_id(call, org_admin, tree):
    assert (
        call(org_admin, "department.create", name="华南区", department_id="dept_south")["data"][
            "department_id"
        ]
        == "dept_south"
    )
    taken = call(org_admin, "department.create", name="x", department_id="dept_south")
    assert (taken["code"], taken["message"]) == (
        400,
        "department_id 已存在：dept_south",
    )
    bad = call(org_admin, "department.create", name="x", department_id="Dept-South")
    assert bad["code"] == 400 and bad["message"].startswith("department_id 格式不正确")


def test_create_under_an_unknown_parent_is_400(call, org_admin):
    response = call(org_admin, "department.create", name="x", parent_id="dept_nowhere")
    assert (response["code"], response["message"]) == (
        400,
        "parent_id 不存在：dept_nowhere",
    )


def test_move_to_another_parent_and_reorder(call, org_admin, tree):
    response = call(
        org_admin,
        "department.update",
        department_id="dept_east",
        updates={"parent_id": "dept_tech", "sort_order": 5},
    )
    assert response["code"] == 0, response
    assert response["data"]["parent_id"] == "dept_tech"
    assert _ids() == ["dept_sales", "dept_west", "dept_tech", "dept_east"]
    call(
        org_admin,
        "department.update",
        department_id="dept_tech",
        updates={"sort_order": 0},
    )
    assert _ids() == ["dept_tech", "dept_east", "dept_sales", "dept_west"]
    to_root = call(
        org_admin,
        "department.update",
        department_id="dept_east",
        updates={"parent_id": None},
    )
    assert to_root["data"]["parent_id"] is None
    assert _parent("dept_east") is None
    _ids()


@pytest.mark.parametrize("new_parent", ["dept_sales", "dept_east"])
def test_a_department_cannot_move_under_itself_or_a_descendant(call, org_admin, tree, new_parent):
    response = call(
        org_admin,
        "department.update",
        department_id="dept_sales",
        updates={"parent_id": new_parent},
    )
    assert (response["code"], response["message"]) == (
        400,
        "parent_id 不能是该部门自身或其下级部门",
    )
    assert _parent("dept_sales") is None
    _ids()


@pytest.mark.parametrize(
    ("department_id", "updates", "code", "message"),
    [
        ("dept_ghost", {"name": "x"}, 404, "部门不存在：dept_ghost"),
        ("dept_east", {}, 400, "updates 不能为空"),
        (
            "dept_east",
            {"department_id": "dept_x"},
            400,
            "updates.department_id 不是可修改的字段",
        ),
        ("dept_east", {"name": " "}, 400, "updates.name 不能为空"),
        ("dept_east", {"sort_order": "first"}, 400, "updates.sort_order"),
        (
            "dept_east",
            {"parent_id": "dept_nowhere"},
            400,
            "parent_id 不存在：dept_nowhere",
        ),
    ],
)
def test_update_refusals(call, org_admin, tree, department_id, updates, code, message):
    response = call(org_admin, "department.update", department_id=department_id, updates=updates)
    assert (response["code"], response["data"]) == (code, None)
    assert message in response["message"]


def test_every_department_write_changes_the_version(call, org_admin, tree, challenge):
    seen = {org_version()}
    writes = [
        ("department.create", {"name": "华南区", "parent_id": "dept_sales"}),
        (
            "department.update",
            {"department_id": "dept_east", "updates": {"name": "华东销售区"}},
        ),
        (
            "department.update",
            {"department_id": "dept_east", "updates": {"parent_id": "dept_tech"}},
        ),
        ("department.delete", {"department_id": "dept_east"}),
    ]
    for action, fields in writes:
        if action == "department.delete":
            fields |= challenge(org_admin)
        assert call(org_admin, action, **fields)["code"] == 0
        assert org_version() not in seen
        seen.add(org_version())


# --- delete ------------------------------------------------------------------------------------


def test_delete_an_empty_department(call, org_admin, tree, challenge):
    response = call(
        org_admin,
        "department.delete",
        department_id="dept_west",
        **challenge(org_admin),
    )
    assert response["code"] == 0, response
    assert response["data"]["department_id"] == "dept_west"
    assert response["data"]["moved_to"] is None
    assert not Department.objects.filter(department_id="dept_west").exists()
    assert _ids() == ["dept_sales", "dept_east", "dept_tech"]


def test_delete_with_members_is_refused_without_move_to(call, org_admin, tree, challenge):
    EmployeeFactory(department=tree["west"])
    response = call(
        org_admin,
        "department.delete",
        department_id="dept_west",
        **challenge(org_admin),
    )
    assert response["code"] == 400
    assert "move_to" in response["message"]
    assert Department.objects.filter(department_id="dept_west").exists()


def test_delete_with_children_is_refused_without_move_to(call, org_admin, tree, challenge):
    response = call(
        org_admin,
        "department.delete",
        department_id="dept_sales",
        **challenge(org_admin),
    )
    assert response["code"] == 400
    assert "move_to" in response["message"]
    assert _ids() == ["dept_sales", "dept_east", "dept_west", "dept_tech"]


def test_delete_with_move_to_moves_members_and_children(call, org_admin, tree, challenge, published):
    member = EmployeeFactory(employee_id="emp_member_001", department=tree["sales"])
    former = EmployeeFactory(employee_id="emp_former_001", department=tree["sales"], is_active=False)
    published.clear()
    response = call(
        org_admin,
        "department.delete",
        department_id="dept_sales",
        move_to="dept_tech",
        **challenge(org_admin),
    )
    assert response["code"] == 0, response
    data = response["data"]
    assert data["moved_to"] == "dept_tech"
    assert sorted(data["moved_employee_ids"]) == ["emp_former_001", "emp_member_001"]
    assert data["moved_department_ids"] == ["dept_east", "dept_west"]
    assert _ids() == ["dept_tech", "dept_east", "dept_west"]
    assert {_parent("dept_east"), _parent("dept_west")} == {"dept_tech"}
    assert Employee.objects.get(pk=member.pk).department.department_id == "dept_tech"
    assert Employee.objects.get(pk=former.pk).department.department_id == "dept_tech"
    [event] = published.to("mchat/profile/emp_member_001")
    assert (event["fields"], event["profile"]["department_id"]) == (
        ["department_id"],
        "dept_tech",
    )
    assert published.to("mchat/profile/emp_former_001") == []  # not in the org any more


@pytest.mark.parametrize(
    ("move_to", "message"),
    [
        ("dept_east", "move_to 不能是该部门自身或其下级部门"),
        ("dept_sales", "move_to 不能是该部门自身或其下级部门"),
        ("dept_nowhere", "move_to 不存在：dept_nowhere"),
    ],
)
def test_delete_move_to_must_be_outside_the_department(call, org_admin, tree, challenge, move_to, message):
    response = call(
        org_admin,
        "department.delete",
        department_id="dept_sales",
        move_to=move_to,
        **challenge(org_admin),
    )
    assert (response["code"], response["message"]) == (400, message)
    _ids()


def test_delete_of_an_unknown_department_is_404(call, org_admin, challenge):
    response = call(
        org_admin,
        "department.delete",
        department_id="dept_ghost",
        **challenge(org_admin),
    )
    assert (response["code"], response["message"]) == (404, "部门不存在：dept_ghost")


def test_delete_needs_a_fresh_challenge_of_the_caller(call, org_admin, alice, tree, challenge):
    assert call(org_admin, "department.delete", department_id="dept_west")["code"] == 401
    someone_elses = challenge(alice)
    assert call(org_admin, "department.delete", department_id="dept_west", **someone_elses)["code"] == 401
    wrong_token = {**challenge(org_admin), "token": "guess"}
    assert call(org_admin, "department.delete", department_id="dept_west", **wrong_token)["code"] == 401
    fresh = challenge(org_admin)
    assert call(org_admin, "department.delete", department_id="dept_west", **fresh)["code"] == 0
    # spent: a second use (another request) is refused
    response = call(org_admin, "department.delete", department_id="dept_east", **fresh)
    assert response["code"] == 401
    assert Department.objects.filter(department_id="dept_east").exists()


# --- drag-and-drop moves (admin) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("moved", "target", "position", "order", "parent"),
    [
        (
            "dept_west",
            "dept_east",
            "left",
            ["dept_sales", "dept_west", "dept_east", "dept_tech"],
            "dept_sales",
        ),
        (
            "dept_east",
            "dept_west",
            "right",
            ["dept_sales", "dept_west", "dept_east", "dept_tech"],
            "dept_sales",
        ),
        (
            "dept_tech",
            "dept_sales",
            "first-child",
            ["dept_sales", "dept_tech", "dept_east", "dept_west"],
            "dept_sales",
        ),
        (
            "dept_tech",
            "dept_sales",
            "last-child",
            ["dept_sales", "dept_east", "dept_west", "dept_tech"],
            "dept_sales",
        ),
        (
            "dept_east",
            "dept_sales",
            "left",
            ["dept_east", "dept_sales", "dept_west", "dept_tech"],
            None,
        ),
        (
            "dept_west",
            "dept_tech",
            "right",
            ["dept_sales", "dept_east", "dept_tech", "dept_west"],
            None,
        ),
        (
            "dept_east",
            "dept_tech",
            "last-child",
            ["dept_sales", "dept_west", "dept_tech", "dept_east"],
            "dept_tech",
        ),
    ],
)
def test_drag_and_drop_positions_stick_as_sort_order(tree, moved, target, position, order, parent):
    services.department_move(actor=None, department_id=moved, target_id=target, position=position)
    assert _ids() == order  # also: a rebuild from (parent, sort_order, name) gives the same tree
    assert _parent(moved) == parent
    # The order survives a later insert anywhere.
    make_department(
        "dept_new",
        parent=Department.objects.get(department_id="dept_sales"),
        sort_order=99,
    )
    assert [d for d in _ids() if d != "dept_new"] == order


def test_drag_under_own_descendant_is_refused(tree):
    with pytest.raises(BadRequest, match="不能是该部门自身或其下级部门"):
        services.department_move(
            actor=None,
            department_id="dept_sales",
            target_id="dept_east",
            position="last-child",
        )
    assert _ids() == ["dept_sales", "dept_east", "dept_west", "dept_tech"]


# --- concurrency -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_tree_writes_never_corrupt_the_tree():
    """Several threads (each its own database connection) move departments around at once."""
    roots = [make_department(f"dept_root{i}", sort_order=i) for i in range(3)]
    for i in range(9):
        make_department(f"dept_node{i}", parent=roots[i % 3], sort_order=i)
    ids = list(Department.objects.values_list("department_id", flat=True))
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(8):
                moved, target = rng.sample(ids, 2)
                try:
                    if rng.random() < 0.5:
                        services.department_move(
                            actor=None,
                            department_id=moved,
                            target_id=target,
                            position=rng.choice(["left", "right", "first-child", "last-child"]),
                        )
                    else:
                        services.department_update(
                            actor=None,
                            department_id=moved,
                            updates={
                                "parent_id": target,
                                "sort_order": rng.randint(0, 5),
                            },
                        )
                except BadRequest:
                    pass  # a move under its own descendant: refused, fine
        except BaseException as exc:
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)
    assert sorted(assert_tree_consistent()) == sorted(ids)
