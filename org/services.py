"""Writes and business rules of the organisation: employees, agents, departments, credentials,
challenges and system notices.

Every caller (MQTT handlers, the admin console, the REST API, imports, management commands)
goes through these functions. `actor` is the employee on whose behalf a request runs; None
means a trusted caller that did its own permission check (Django staff permissions in the admin
and the REST API, a shell user for management commands).

Public ids in arguments: references inside a write (department_id, manager_id, parent_id,
move_to, agent.owner) that do not exist are 400 "department_id 不存在：x"; the target of the
action itself (employee_id of employee.update, department_id of department.update/delete) that
does not exist is 404.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _
from mptt.exceptions import InvalidMove

from bridge.broker import hash_password
from mchat.errors import BadRequest, NotFound, PermissionDenied, Unauthenticated
from org import agent_cards, events
from org.employee_ids import employee_id_stem, next_department_id, next_employee_id
from org.models import (
    DEPARTMENT_ID_PATTERN,
    EMPLOYEE_ID_PATTERN,
    AgentProfile,
    AuthChallenge,
    Department,
    Device,
    Employee,
    OrgVersion,
    SystemNotice,
)

# --- the fields of an employee, by their public (wire) names -------------------------------

TEXT_FIELDS = ("name", "title", "email", "phone", "avatar", "signature")
AGENT_FIELDS = (
    "description",
    "capabilities",
    "skills_badge",
    "owner",
    "ack_deadline_seconds",
    "skills",
)
UPDATABLE_FIELDS = frozenset(
    {*TEXT_FIELDS, "department_id", "manager_id", "is_org_admin", "is_active", "agent"}
)
# What an employee may change on its own profile; everything else is organisational.
SELF_EDITABLE = frozenset({"avatar", "signature"})
# An agent's owner may also describe what the agent can do (not its badges: those are awarded).
AGENT_OWNER_EDITABLE = SELF_EDITABLE | {
    "agent.description",
    "agent.capabilities",
    "agent.ack_deadline_seconds",
}
# Changes org.tree shows; they bump the org version.
TREE_FIELDS = frozenset({"name", "department_id", "manager_id", "is_active"})
DEPARTMENT_UPDATABLE = frozenset({"name", "parent_id", "sort_order"})
MOVE_POSITIONS = ("first-child", "last-child", "left", "right")
MANAGER_CHAIN_LIMIT = 1000

# Model field -> public name, to name the field in validation errors.
_PUBLIC_NAMES = {
    "department": "department_id",
    "manager": "manager_id",
    "parent": "parent_id",
}


@dataclass(frozen=True)
class IssuedCredential:
    employee: Employee
    password: str  # shown once; only its hash is stored

    def mqtt_connection(self) -> dict:
        """The spec 3.3 `mqtt_connection` object."""
        return {
            "broker_host": settings.MCHAT_PUBLIC_MQTT_HOST,
            "broker_port": settings.MCHAT_PUBLIC_MQTT_PORT,
            "use_tls": settings.MCHAT_PUBLIC_MQTT_TLS,
            "mqtt_username": self.employee.employee_id,
            "mqtt_password": self.password,
        }


@dataclass(frozen=True)
class EmployeeChange:
    employee: Employee
    fields: tuple[str, ...]  # public names that changed, "agent.xxx" for agent settings


@dataclass(frozen=True)
class DepartmentDeletion:
    department_id: str
    deleted_at: Any
    moved_to: str | None
    moved_employee_ids: tuple[str, ...]
    moved_department_ids: tuple[str, ...]


# --- helpers ---------------------------------------------------------------------------------


def _new_password() -> str:
    return secrets.token_urlsafe(24)


def require_org_admin(actor: Employee | None) -> None:
    """None means a trusted caller (management command, admin console, REST API)."""
    if actor is not None and not actor.is_org_admin:
        raise PermissionDenied()


def _org_lock() -> None:
    """Serialise org writes: the OrgVersion row lock on PostgreSQL (SQLite writers are
    serialised by the database). Take it before reading what the write depends on."""
    if not OrgVersion.objects.select_for_update().filter(pk=1).exists():
        try:
            with transaction.atomic():
                OrgVersion.objects.create(pk=1)
        except IntegrityError:
            pass  # created concurrently
        OrgVersion.objects.select_for_update().filter(pk=1).exists()


def _org_changed() -> None:
    """A change org.tree shows: new version, in the same transaction as the change."""
    OrgVersion.objects.filter(pk=1).update(counter=F("counter") + 1, token=secrets.token_hex(4))


def _clean_text(value: Any, field: str, *, required: bool = False) -> str:
    text = "" if value is None else str(value).strip()
    if required and not text:
        raise BadRequest(_("%(field)s 不能为空") % {"field": field})
    # Control characters (NUL cannot even be stored by PostgreSQL) have no place in a profile.
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise BadRequest(_("%(field)s 不能包含控制字符") % {"field": field})
    return text


def _full_clean(instance, *, exclude: Iterable[str] = ()) -> None:
    """Model validation (lengths, formats) as a 400 naming the public field."""
    try:
        instance.full_clean(exclude=list(exclude), validate_unique=False)
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        name = _PUBLIC_NAMES.get(field, field)
        raise BadRequest(f"{name} {messages[0]}") from None


def _department_ref(department_id: Any, *, field: str) -> Department | None:
    if department_id in (None, ""):
        return None
    department = Department.objects.filter(department_id=str(department_id)).first()
    if department is None:
        raise BadRequest(_("%(field)s 不存在：%(id)s") % {"field": field, "id": department_id})
    return department


def _active_employee_ref(employee_id: Any, *, field: str) -> Employee | None:
    if employee_id in (None, ""):
        return None
    employee = Employee.objects.filter(employee_id=str(employee_id), is_active=True).first()
    if employee is None:
        raise BadRequest(_("%(field)s 不存在或已停用：%(id)s") % {"field": field, "id": employee_id})
    return employee


def _check_manager(manager: Employee | None, subject: Employee | None) -> None:
    """No one manages themselves, directly or through a chain of managers."""
    if manager is None or subject is None or subject.pk is None:
        return
    if manager.pk == subject.pk:
        raise BadRequest(_("manager_id 不能是员工本人"))
    seen, current = set(), manager.manager_id
    while current is not None and current not in seen and len(seen) < MANAGER_CHAIN_LIMIT:
        if current == subject.pk:
            raise BadRequest(_("manager_id 会形成循环的汇报关系"))
        seen.add(current)
        current = Employee.objects.filter(pk=current).values_list("manager_id", flat=True).first()


def _string_list(value: Any, field: str) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise BadRequest(_("%(field)s 必须是字符串列表") % {"field": field})
    items = [v.strip() for v in value if v.strip()]
    return list(dict.fromkeys(items))  # unique, in the given order


def _apply_agent_settings(profile: AgentProfile, agent: Mapping[str, Any]) -> list[str]:
    """Set the given agent settings; the public names ("agent.xxx") that changed."""
    unknown = sorted(set(agent) - set(AGENT_FIELDS))
    if unknown:
        raise BadRequest(_("agent.%(field)s 不是可修改的字段") % {"field": unknown[0]})
    changed = []
    for key, value in agent.items():
        if key in ("capabilities", "skills_badge"):
            value = _string_list(value, f"agent.{key}")
        elif key == "owner":
            value = _active_employee_ref(value, field="agent.owner")
            if value is not None and value.is_ai_agent:
                raise BadRequest(_("agent.owner 必须是人类员工：%(id)s") % {"id": value.employee_id})
            if getattr(profile, "owner_id", None) != (value.pk if value else None):
                profile.owner = value
                changed.append("agent.owner")
            continue
        elif key == "description":
            value = _clean_text(value, "agent.description")
        elif key == "skills":
            value = agent_cards.skills_clean(value)
        elif key == "ack_deadline_seconds" and (
            isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 600
        ):
            raise BadRequest(_("agent.ack_deadline_seconds 必须是 1 到 600 之间的整数"))
        if getattr(profile, key) != value:
            setattr(profile, key, value)
            changed.append(f"agent.{key}")
    try:
        profile.full_clean(exclude=["employee", "owner"], validate_unique=False)
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise BadRequest(f"agent.{field} {messages[0]}") from None
    return changed


def _public_fields(changed: Iterable[str]) -> set[str]:
    """Profile names for the profile event: agent.capabilities -> capabilities."""
    return {name.removeprefix("agent.") for name in changed}


# --- employees -------------------------------------------------------------------------------


@transaction.atomic
def employee_create(
    *,
    actor: Employee | None,
    name: str,
    is_ai_agent: bool = False,
    is_org_admin: bool = False,
    department_id: str | None = None,
    manager_id: str | None = None,
    title: str = "",
    email: str = "",
    phone: str = "",
    avatar: str = "",
    signature: str = "",
    id_slug: str | None = None,
    employee_id: str | None = None,
    agent: Mapping[str, Any] | None = None,
) -> IssuedCredential:
    """employee.create (spec 3.3): org admins only. The id is readable (emp_zhangsan_001,
    ai_sales_001 with id_slug "sales"), or `employee_id` when given (an HR system's own id,
    e.g. on import: must be free and match EMPLOYEE_ID_PATTERN). The password is returned
    once and stored hashed.

    An agent gets an AgentProfile; its owner defaults to the creating employee (a human).
    Publishes a "created" profile event (spec 3.18 shape) so clients watching
    mchat/profile/+ learn about newcomers without polling org.tree.
    """
    require_org_admin(actor)
    name = _clean_text(name, "name", required=True)
    if agent is not None and not is_ai_agent:
        raise BadRequest(_("agent 仅适用于 AI Agent（is_ai_agent 为 true）"))
    _org_lock()
    employee = Employee(
        name=name,
        is_ai_agent=bool(is_ai_agent),
        is_org_admin=bool(is_org_admin),
        department=_department_ref(department_id, field="department_id"),
        manager=_active_employee_ref(manager_id, field="manager_id"),
        title=_clean_text(title, "title"),
        email=_clean_text(email, "email"),
        phone=_clean_text(phone, "phone"),
        avatar=_clean_text(avatar, "avatar"),
        signature=_clean_text(signature, "signature"),
    )
    password = _new_password()
    employee.mqtt_password_hash = hash_password(password)
    _full_clean(employee, exclude=["employee_id", "mqtt_password_hash"])
    if employee_id:
        employee.employee_id = _free_employee_id(employee_id)
        employee.save(force_insert=True)
    else:
        stem = employee_id_stem(name=name, is_ai_agent=bool(is_ai_agent), slug=id_slug)
        for _attempt in range(5):
            employee.employee_id = next_employee_id(stem)
            try:
                with transaction.atomic():
                    employee.save(force_insert=True)
                break
            except IntegrityError:
                employee.pk = None  # another writer took the same counter; take the next one
        else:
            raise BadRequest(_("无法生成唯一的员工编号，请重试"))
    if is_ai_agent:
        settings_ = dict(agent or {})
        if "owner" not in settings_ and actor is not None and not actor.is_ai_agent:
            settings_["owner"] = actor.employee_id
        profile = AgentProfile(employee=employee)
        _apply_agent_settings(profile, settings_)
        profile.save()
    _org_changed()
    events.employee_profile_changed(employee, fields=events.PROFILE_FIELDS, event="created")
    events.broker_credentials_changed()
    return IssuedCredential(employee=employee, password=password)


def _free_employee_id(employee_id: Any) -> str:
    employee_id = str(employee_id)
    if not re.fullmatch(EMPLOYEE_ID_PATTERN, employee_id):
        raise BadRequest(_("employee_id 格式不正确：须为小写字母开头的 3-64 位小写字母、数字或下划线"))
    if Employee.objects.filter(employee_id=employee_id).exists():
        raise BadRequest(_("employee_id 已存在：%(id)s") % {"id": employee_id})
    return employee_id


def _check_update_allowed(
    actor: Employee | None,
    employee: Employee,
    updates: Mapping[str, Any],
    requested: set[str],
) -> None:
    if actor is None:
        return
    if actor.is_org_admin:
        if actor.pk == employee.pk and False in (
            updates.get("is_active"),
            updates.get("is_org_admin"),
        ):
            raise PermissionDenied(_("不能停用自己或撤销自己的组织管理员身份"))
        return
    if actor.pk == employee.pk:
        allowed = SELF_EDITABLE
    elif employee.is_ai_agent and AgentProfile.objects.filter(employee=employee, owner=actor).exists():
        allowed = AGENT_OWNER_EDITABLE
    else:
        raise PermissionDenied()
    refused = sorted(requested - allowed)
    if refused:
        raise PermissionDenied(_("无权修改字段：%(field)s") % {"field": refused[0]})


@transaction.atomic
def employee_update(
    *, actor: Employee | None, employee_id: str, updates: Mapping[str, Any]
) -> EmployeeChange:
    """employee.update (spec 3.4). Org admins may change anyone (not their own activation or
    admin role); an employee only its own avatar and signature; an agent's owner also the
    agent's description, capabilities and acknowledgement deadline.

    Deactivation (is_active false) removes the broker login and kicks live sessions; the
    employee leaves org.tree. Reactivation restores the login with the existing credential.
    Publishes a profile event naming the changed public fields, after commit.
    """
    if not isinstance(updates, Mapping) or not updates:
        raise BadRequest(_("updates 不能为空"))
    unknown = sorted(set(updates) - UPDATABLE_FIELDS)
    if unknown:
        raise BadRequest(_("updates.%(field)s 不是可修改的字段") % {"field": unknown[0]})
    agent = updates.get("agent")
    if agent is not None and not isinstance(agent, Mapping):
        raise BadRequest(_("updates.agent 必须是对象"))
    requested = (set(updates) - {"agent"}) | {f"agent.{key}" for key in (agent or {})}
    if requested & TREE_FIELDS:
        _org_lock()  # before reading: a department may be deleted or a manager moved meanwhile

    employee = (
        Employee.objects.select_related("department", "manager").filter(employee_id=str(employee_id)).first()
    )
    if employee is None:
        raise NotFound(_("员工不存在：%(id)s") % {"id": employee_id})
    _check_update_allowed(actor, employee, updates, requested)

    changed: list[str] = []
    for field in TEXT_FIELDS:
        if field in updates:
            value = _clean_text(updates[field], field, required=field == "name")
            if getattr(employee, field) != value:
                setattr(employee, field, value)
                changed.append(field)
    if "department_id" in updates:
        department = _department_ref(updates["department_id"], field="department_id")
        if employee.department_id != (department.pk if department else None):
            employee.department = department
            changed.append("department_id")
    if "manager_id" in updates:
        manager = _active_employee_ref(updates["manager_id"], field="manager_id")
        _check_manager(manager, employee)
        if employee.manager_id != (manager.pk if manager else None):
            employee.manager = manager
            changed.append("manager_id")
    for flag in ("is_org_admin", "is_active"):
        if flag in updates:
            value = updates[flag]
            if not isinstance(value, bool):
                raise BadRequest(_("%(field)s 必须是布尔值") % {"field": flag})
            if getattr(employee, flag) != value:
                setattr(employee, flag, value)
                changed.append(flag)

    agent_changed: list[str] = []
    if agent is not None:
        if not employee.is_ai_agent:
            raise BadRequest(_("agent 仅适用于 AI Agent 员工"))
        profile, _created = AgentProfile.objects.get_or_create(employee=employee)
        agent_changed = _apply_agent_settings(profile, agent)
        if agent_changed:
            profile.save()

    if not changed and not agent_changed:
        return EmployeeChange(employee=employee, fields=())
    _full_clean(employee, exclude=["employee_id", "mqtt_password_hash"])
    # Saved even when only agent settings changed: updated_at dates the profile event.
    employee.save(update_fields=[*_model_fields(changed), "updated_at"])
    if TREE_FIELDS.intersection(changed):
        _org_changed()
    if "is_active" in changed:
        if employee.is_active:
            events.broker_credentials_changed()
        else:
            events.employee_deactivated(employee)
    event = "updated"
    if "is_active" in changed:
        event = "reactivated" if employee.is_active else "deactivated"
    all_changed = (*changed, *agent_changed)
    events.employee_profile_changed(employee, fields=_public_fields(all_changed), event=event)
    return EmployeeChange(employee=employee, fields=all_changed)


def _model_fields(public: Iterable[str]) -> list[str]:
    names = {"department_id": "department", "manager_id": "manager"}
    return [names.get(name, name) for name in public]


def employee_deactivate(*, actor: Employee | None, employee_id: str) -> EmployeeChange:
    return employee_update(actor=actor, employee_id=employee_id, updates={"is_active": False})


def employee_reactivate(*, actor: Employee | None, employee_id: str) -> EmployeeChange:
    return employee_update(actor=actor, employee_id=employee_id, updates={"is_active": True})


@transaction.atomic
def employee_credential_reset(*, actor: Employee | None, employee: Employee) -> IssuedCredential:
    """A new password; the old one stops working and live sessions are disconnected."""
    require_org_admin(actor)
    password = _new_password()
    employee.mqtt_password_hash = hash_password(password)
    employee.save(update_fields=["mqtt_password_hash", "updated_at"])
    events.credential_reset(employee.employee_id)
    return IssuedCredential(employee=employee, password=password)


# --- departments -----------------------------------------------------------------------------


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
    name = _clean_text(name, "name", required=True)
    sort_order = _sort_order(sort_order)
    _org_lock()
    parent = _department_ref(parent_id, field="parent_id")
    if department_id:
        department_id = str(department_id)
        if not re.fullmatch(DEPARTMENT_ID_PATTERN, department_id):
            raise BadRequest(_("department_id 格式不正确：须为小写字母开头的 3-64 位小写字母、数字或下划线"))
        if Department.objects.filter(department_id=department_id).exists():
            raise BadRequest(_("department_id 已存在：%(id)s") % {"id": department_id})
    else:
        department_id = next_department_id(name=name)
    department = Department(department_id=department_id, name=name, parent=parent, sort_order=sort_order)
    _full_clean(department, exclude=_MPTT_FIELDS)
    department.save()
    _org_changed()
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
    _org_lock()
    department = _department_for_write(department_id)
    changed = False
    if "name" in updates:
        name = _clean_text(updates["name"], "name", required=True)
        changed |= name != department.name
        department.name = name
    if "sort_order" in updates:
        sort_order = _sort_order(updates["sort_order"])
        changed |= sort_order != department.sort_order
        department.sort_order = sort_order
    if "parent_id" in updates:
        parent = _department_ref(updates["parent_id"], field="parent_id")
        _check_not_within(parent, department, "parent_id")
        changed |= department.parent_id != (parent.pk if parent else None)
        department.parent = parent
    if not changed:
        return department
    _full_clean(department, exclude=_MPTT_FIELDS)
    try:
        department.save()  # MPTT moves the node when its parent or sort position changed
    except InvalidMove as exc:
        raise BadRequest(_("parent_id 不能是该部门自身或其下级部门")) from exc
    _org_changed()
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
    _org_lock()
    department = _department_for_write(department_id)
    target = _department_ref(target_id, field="target_id")
    if target is None:
        raise BadRequest(_("target_id 不能为空"))
    if position in ("first-child", "last-child"):
        parent = target
    else:
        parent = target.parent
    _check_not_within(parent, department, "target_id")
    if target.pk == department.pk:
        return department

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
    _org_changed()
    return Department.objects.get(pk=department.pk)


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
    _org_lock()
    department = _department_for_write(department_id)
    target = _department_ref(move_to, field="move_to")
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
    _org_changed()
    return DepartmentDeletion(
        department_id=department.department_id,
        deleted_at=now,
        moved_to=target.department_id if target else None,
        moved_employee_ids=tuple(m.employee_id for m in members),
        moved_department_ids=tuple(moved_children),
    )


# --- system notices --------------------------------------------------------------------------


@transaction.atomic
def system_notice_broadcast(
    *,
    actor: Employee | None,
    title: str,
    body: str | Mapping[str, Any],
    sent_by: str = "",
) -> SystemNotice:
    """A notice to every employee on mchat/system/notify (spec 3.19, type "system_notice",
    body {"text": ...}). `sent_by` records who published it (a staff user's name in the admin)."""
    require_org_admin(actor)
    title = _clean_text(title, "title", required=True)
    text = body.get("text", "") if isinstance(body, Mapping) else body
    text = _clean_text(text, "body", required=True)
    notice = SystemNotice(
        notify_id=events.new_notify_id(),
        title=title,
        text=text,
        sent_by=sent_by or (actor.employee_id if actor else ""),
    )
    _full_clean(notice, exclude=["notify_id", "sent_by"])
    notice.save()
    events.system_notice_published(notice)
    return notice


# --- sessions and challenges -----------------------------------------------------------------


def device_bind(*, actor: Employee, client_id: str, employee_id: str) -> Device:
    """auth.bind: confirm that the connection belongs to the claimed employee."""
    if employee_id != actor.employee_id:
        raise PermissionDenied(_("employee_id 与当前连接身份不一致"))
    device = client_id.rsplit("_", 1)[1]
    bound, _created = Device.objects.update_or_create(
        client_id=client_id, defaults={"employee": actor, "device": device}
    )
    return bound


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def challenge_issue(*, actor: Employee) -> tuple[AuthChallenge, str]:
    token = secrets.token_urlsafe(32)
    challenge = AuthChallenge.objects.create(
        challenge_id=f"ch_{secrets.token_hex(10)}",
        employee=actor,
        token_hash=_token_digest(token),
        expires_at=timezone.now() + timedelta(seconds=settings.MCHAT_CHALLENGE_TTL_SECONDS),
    )
    return challenge, token


def challenge_consume(*, actor: Employee, challenge_id, token) -> None:
    """Spend a challenge for a sensitive action: one-time, bound to actor, unexpired."""
    if not isinstance(challenge_id, str) or not isinstance(token, str) or not challenge_id:
        raise Unauthenticated(_("该操作需要有效的二次验证（challenge_id 与 token）"))
    used = AuthChallenge.objects.filter(
        challenge_id=challenge_id,
        employee=actor,
        used_at__isnull=True,
        expires_at__gt=timezone.now(),
    )
    challenge = used.select_for_update().first()
    if challenge is None or not hmac.compare_digest(challenge.token_hash, _token_digest(token)):
        raise Unauthenticated(_("二次验证无效、已过期或已使用"))
    challenge.used_at = timezone.now()
    challenge.save(update_fields=["used_at"])
