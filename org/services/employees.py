"""Employees and agents: employee.create / employee.update (spec 3.3, 3.4) and deactivation.

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

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from audit.context import operator_employee
from mchat import broker_policy
from mchat.errors import BadRequest, NotFound, PermissionDenied
from org import agent_cards, auditing, events
from org.credentials import hash_password
from org.employee_ids import employee_id_stem, next_employee_id
from org.models import EMPLOYEE_ID_PATTERN, AgentProfile, Employee
from org.services.checks import (
    active_employee_ref,
    clean_text,
    department_ref,
    full_clean,
    org_changed,
    org_lock,
    require_org_admin,
)
from org.services.credentials import IssuedCredential, _new_password

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
MANAGER_CHAIN_LIMIT = 1000


@dataclass(frozen=True)
class EmployeeChange:
    employee: Employee
    fields: tuple[str, ...]  # public names that changed, "agent.xxx" for agent settings


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
            value = active_employee_ref(value, field="agent.owner")
            if value is not None and value.is_ai_agent:
                raise BadRequest(_("agent.owner 必须是人类员工：%(id)s") % {"id": value.employee_id})
            if getattr(profile, "owner_id", None) != (value.pk if value else None):
                profile.owner = value
                changed.append("agent.owner")
            continue
        elif key == "description":
            value = clean_text(value, "agent.description")
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
    name = clean_text(name, "name", required=True)
    if agent is not None and not is_ai_agent:
        raise BadRequest(_("agent 仅适用于 AI Agent（is_ai_agent 为 true）"))
    org_lock()
    employee = Employee(
        name=name,
        is_ai_agent=bool(is_ai_agent),
        is_org_admin=bool(is_org_admin),
        department=department_ref(department_id, field="department_id"),
        manager=active_employee_ref(manager_id, field="manager_id"),
        title=clean_text(title, "title"),
        email=clean_text(email, "email"),
        phone=clean_text(phone, "phone"),
        avatar=clean_text(avatar, "avatar"),
        signature=clean_text(signature, "signature"),
    )
    password = _new_password()
    employee.mqtt_password_hash = hash_password(password)
    full_clean(employee, exclude=["employee_id", "mqtt_password_hash"])
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
    org_changed()
    auditing.employee_created(actor=actor, employee=employee)
    events.employee_profile_changed(employee, fields=events.PROFILE_FIELDS, event="created")
    broker_policy.access_changed()
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
        org_lock()  # before reading: a department may be deleted or a manager moved meanwhile

    employee = (
        Employee.objects.select_related("department", "manager").filter(employee_id=str(employee_id)).first()
    )
    if employee is None:
        raise NotFound(_("员工不存在：%(id)s") % {"id": employee_id})
    _check_update_allowed(actor, employee, updates, requested)
    before = auditing.employee_snapshot(employee, agent=agent is not None)

    changed: list[str] = []
    for field in TEXT_FIELDS:
        if field in updates:
            value = clean_text(updates[field], field, required=field == "name")
            if getattr(employee, field) != value:
                setattr(employee, field, value)
                changed.append(field)
    if "department_id" in updates:
        department = department_ref(updates["department_id"], field="department_id")
        if employee.department_id != (department.pk if department else None):
            employee.department = department
            changed.append("department_id")
    if "manager_id" in updates:
        manager = active_employee_ref(updates["manager_id"], field="manager_id")
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
    full_clean(employee, exclude=["employee_id", "mqtt_password_hash"])
    # Saved even when only agent settings changed: updated_at dates the profile event.
    employee.save(update_fields=[*_model_fields(changed), "updated_at"])
    if TREE_FIELDS.intersection(changed):
        org_changed()
    if "is_active" in changed:
        if employee.is_active:
            broker_policy.access_changed()
        else:
            events.employee_deactivated(employee)
    event = "updated"
    if "is_active" in changed:
        event = "reactivated" if employee.is_active else "deactivated"
    all_changed = (*changed, *agent_changed)
    auditing.employee_changed(actor=actor, employee=employee, before=before, changed=all_changed)
    events.employee_profile_changed(employee, fields=_public_fields(all_changed), event=event)
    return EmployeeChange(employee=employee, fields=all_changed)


def _model_fields(public: Iterable[str]) -> list[str]:
    names = {"department_id": "department", "manager_id": "manager"}
    return [names.get(name, name) for name in public]


def employee_deactivate(*, actor: Employee | None, employee_id: str) -> EmployeeChange:
    return employee_update(actor=actor, employee_id=employee_id, updates={"is_active": False})


@transaction.atomic
def employee_console_user_set(*, employee_id: str, user: Any) -> Employee:
    """Link a console account (a staff Django user; None unlinks) to an employee: what that
    account then does in the console or over REST is done as this employee (the audit log's
    actor, operator_id / recalled_by of the deliveries). Console only: a trusted caller."""
    employee = Employee.objects.select_for_update().filter(employee_id=str(employee_id)).first()
    if employee is None:
        raise NotFound(_("员工不存在：%(id)s") % {"id": employee_id})
    if user is not None and not user.is_staff:
        raise BadRequest(_("console_user 必须是可登录管理控制台的账号"))
    if user is not None:
        linked = Employee.objects.filter(console_user=user).exclude(pk=employee.pk).first()
        if linked is not None:
            raise BadRequest(
                _("控制台账号 %(user)s 已关联员工 %(id)s")
                % {"user": user.get_username(), "id": linked.employee_id}
            )
    before = employee.console_user.get_username() if employee.console_user else None
    after = user.get_username() if user is not None else None
    if before == after:
        return employee
    # The row names whom the account making the change acted as before it (an account may
    # link itself); operator_employee() reads the link once per request.
    acting = operator_employee()
    employee.console_user = user
    employee.save(update_fields=["console_user"])  # not public: no profile event, no org version
    auditing.console_user_changed(actor=acting, employee=employee, before=before, after=after)
    return employee
