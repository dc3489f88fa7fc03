"""The department tree (spec 3.6): create, update, move (the admin's drag-and-drop) and
delete, serialised under the org lock (django-mptt)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from mptt.exceptions import InvalidMove

from audit.services import audit_record, changes_between, created
from mchat.errors import BadRequest, NotFound
from org import auditing, events
from org.employee_ids import next_department_id
from org.models import DEPARTMENT_ID_PATTERN, Department, Employee
from org.services.checks import (
    clean_text,
    department_ref,
    full_clean,
    org_changed,
    org_lock,
    require_org_admin,
)
from org.services.credentials import challenge_consume

DEPARTMENT_UPDATABLE = frozenset({"name", "parent_id", "sort_order"})
MOVE_POSITIONS = ("first-child", "last-child", "left", "right")


@dataclass(frozen=True)
class DepartmentDeletion:
    department_id: str
    deleted_at: Any
    moved_to: str | None
    moved_employee_ids: tuple[str, ...]
    moved_department_ids: tuple[str, ...]


def _department_for_write(department_id: Any) -> Department:
    """The target of a department write, read fresh under the org lock."""
    department = Department.objects.filter(department_id=str(department_id)).first()
    if department is None:
        raise NotFound(_("部门不存在：%(id)s") % {"id": department_id})
    return department


def _sort_order(value: Any, field: str = "sort_order") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > 2**31 - 1:
        raise BadRequest(_("%(field)s 必须是整数") % {"field": field})
    return value


def _check_not_within(target: Department | None, department: Department, field: str) -> None:
    if target is not None and (target.pk == department.pk or target.is_descendant_of(department)):
        raise BadRequest(_("%(field)s 不能是该部门自身或其下级部门") % {"field": field})


_MPTT_FIELDS = ("lft", "rght", "tree_id", "level")


@transaction.atomic
def department_create(
    *,
    actor: Employee | None,
    name: str,
    parent_id: str | None = None,
    sort_order: int = 0,
    department_id: str | None = None,
) -> Department:
    """department.create (spec 3.6): org admins only. The id is `department_id` when given
    (must be free and match DEPARTMENT_ID_PATTERN), else dept_ + the name's pinyin (+ a
    counter when taken). Siblings are ordered by sort_order, then name."""
    require_org_admin(actor)
    name = clean_text(name, "name", required=True)
    sort_order = _sort_order(sort_order)
    org_lock()
    parent = department_ref(parent_id, field="parent_id")
    if department_id:
        department_id = str(department_id)
        if not re.fullmatch(DEPARTMENT_ID_PATTERN, department_id):
            raise BadRequest(_("department_id 格式不正确：须为小写字母开头的 3-64 位小写字母、数字或下划线"))
        if Department.objects.filter(department_id=department_id).exists():
            raise BadRequest(_("department_id 已存在：%(id)s") % {"id": department_id})
    else:
        department_id = next_department_id(name=name)
    department = Department(department_id=department_id, name=name, parent=parent, sort_order=sort_order)
    full_clean(department, exclude=_MPTT_FIELDS)
    department.save()
    org_changed()
    audit_record(
        action="department_create",
        actor=actor,
        target=department,
        changes=created(auditing.department_snapshot(department)),
    )
    return department


@transaction.atomic
def department_update(
    *, actor: Employee | None, department_id: str, updates: Mapping[str, Any]
) -> Department:
    """department.update (spec 3.6): rename, move (parent_id; never under itself or a
    descendant) and reorder (sort_order) under the org lock."""
    require_org_admin(actor)
    if not isinstance(updates, Mapping) or not updates:
        raise BadRequest(_("updates 不能为空"))
    unknown = sorted(set(updates) - DEPARTMENT_UPDATABLE)
    if unknown:
        raise BadRequest(_("updates.%(field)s 不是可修改的字段") % {"field": unknown[0]})
    org_lock()
    department = _department_for_write(department_id)
    before = auditing.department_snapshot(department)
    changed = False
    if "name" in updates:
        name = clean_text(updates["name"], "name", required=True)
        changed |= name != department.name
        department.name = name
    if "sort_order" in updates:
        sort_order = _sort_order(updates["sort_order"])
        changed |= sort_order != department.sort_order
        department.sort_order = sort_order
    if "parent_id" in updates:
        parent = department_ref(updates["parent_id"], field="parent_id")
        _check_not_within(parent, department, "parent_id")
        changed |= department.parent_id != (parent.pk if parent else None)
        department.parent = parent
    if not changed:
        return department
    full_clean(department, exclude=_MPTT_FIELDS)
    try:
        department.save()  # MPTT moves the node when its parent or sort position changed
    except InvalidMove as exc:
        raise BadRequest(_("parent_id 不能是该部门自身或其下级部门")) from exc
    org_changed()
    audit_record(
        action="department_update",
        actor=actor,
        target=department,
        changes=changes_between(before, auditing.department_snapshot(department)),
    )
    return department


@transaction.atomic
def department_move(
    *, actor: Employee | None, department_id: str, target_id: str, position: str
) -> Department:
    """Drag-and-drop in the admin: put the department as first/last child of the target or
    left/right of it. The new siblings' sort_order is renumbered 1..n to match, so the
    order survives later inserts (siblings are kept ordered by sort_order, then name)."""
    require_org_admin(actor)
    if position not in MOVE_POSITIONS:
        raise BadRequest(_("position 不正确：%(position)s") % {"position": position})
    org_lock()
    department = _department_for_write(department_id)
    target = department_ref(target_id, field="target_id")
    if target is None:
        raise BadRequest(_("target_id 不能为空"))
    if position in ("first-child", "last-child"):
        parent = target
    else:
        parent = target.parent
    _check_not_within(parent, department, "target_id")
    if target.pk == department.pk:
        return department
    before = auditing.department_snapshot(department)

    if parent is None:
        siblings = list(Department.objects.root_nodes().exclude(pk=department.pk))
    else:
        siblings = list(parent.get_children().exclude(pk=department.pk))
    if position == "first-child":
        index = 0
    elif position == "last-child":
        index = len(siblings)
    else:
        at = next(i for i, node in enumerate(siblings) if node.pk == target.pk)
        index = at if position == "left" else at + 1
    order = [*siblings[:index], department, *siblings[index:]]

    # sort_order first (so any re-ordering MPTT does on save agrees), then explicit placement.
    now = timezone.now()
    for number, node in enumerate(order, start=1):
        Department.objects.filter(pk=node.pk).exclude(sort_order=number).update(
            sort_order=number, updated_at=now
        )
    # A fresh instance: MPTT's save() compares with the values loaded, and a stale sort_order
    # would make it re-position the node after the explicit move.
    department = Department.objects.get(pk=department.pk)
    if index < len(siblings):
        anchor, where = siblings[index], "left"
    elif index > 0:
        anchor, where = siblings[index - 1], "right"
    else:
        anchor, where = parent, "last-child"
    if anchor is None:
        if department.parent_id is not None:
            Department._tree_manager.move_node(department, None)
    else:
        Department._tree_manager.move_node(department, Department.objects.get(pk=anchor.pk), where)
    org_changed()
    moved = Department.objects.get(pk=department.pk)
    audit_record(
        action="department_move",
        actor=actor,
        target=moved,
        changes={
            **changes_between(before, auditing.department_snapshot(moved)),
            "position": {"before": None, "after": f"{position} {target.department_id}"},
        },
    )
    return moved


@transaction.atomic
def department_delete(
    *,
    actor: Employee | None,
    department_id: str,
    move_to: str | None = None,
    challenge_id: str | None = None,
    token: str | None = None,
) -> DepartmentDeletion:
    """department.delete (spec 3.6): org admins with a fresh auth.challenge (trusted callers
    need none). A department that still has employees or child departments is refused (400)
    unless `move_to` names where they go; the moved employees get profile events."""
    require_org_admin(actor)
    if actor is not None:
        challenge_consume(actor=actor, challenge_id=challenge_id, token=token)
    org_lock()
    department = _department_for_write(department_id)
    target = department_ref(move_to, field="move_to")
    _check_not_within(target, department, "move_to")
    members = list(Employee.objects.filter(department=department).select_related("manager").order_by("pk"))
    child_pks = list(department.get_children().values_list("pk", flat=True))
    if (members or child_pks) and target is None:
        raise BadRequest(
            _("部门下还有员工或子部门，不能删除；请用 move_to 指定转移到的部门：%(id)s")
            % {"id": department.department_id}
        )
    moved_children = []
    for pk in child_pks:
        child = Department.objects.get(pk=pk)  # fresh: each move shifts the tree
        child.parent = Department.objects.get(pk=target.pk)
        child.save()
        moved_children.append(child.department_id)
    now = timezone.now()
    if members:
        Employee.objects.filter(pk__in=[m.pk for m in members]).update(department=target, updated_at=now)
    for member in members:
        member.department, member.updated_at = target, now
        if member.is_active:
            events.employee_profile_changed(member, fields=["department_id"], event="updated")
    Department.objects.get(pk=department.pk).delete()
    org_changed()
    audit_record(
        action="department_delete",
        actor=actor,
        target=department,
        changes={
            **changes_between(auditing.department_snapshot(department), {}),
            "moved_to": target.department_id if target else None,
            "moved_employee_ids": [m.employee_id for m in members],
            "moved_department_ids": moved_children,
        },
    )
    return DepartmentDeletion(
        department_id=department.department_id,
        deleted_at=now,
        moved_to=target.department_id if target else None,
        moved_employee_ids=tuple(m.employee_id for m in members),
        moved_department_ids=tuple(moved_children),
    )
