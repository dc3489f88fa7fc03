"""What the organisation's services record in the audit log (audit.services.audit_record):
the audited fields of employees (with their agent profile) and departments, by public name."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from audit.services import SECRET_MARK, audit_record, changes_between, created, json_value
from org.models import AgentProfile, Department, Employee

EMPLOYEE_FIELDS = (
    "name",
    "title",
    "email",
    "phone",
    "avatar",
    "signature",
    "is_ai_agent",
    "is_org_admin",
    "is_active",
)
AGENT_FIELDS = ("description", "capabilities", "skills_badge", "ack_deadline_seconds")


def employee_snapshot(employee: Employee, *, agent: bool = False) -> dict[str, Any]:
    """Public names and JSON values; `agent`: also the agent profile (one query)."""
    values = {name: json_value(getattr(employee, name)) for name in EMPLOYEE_FIELDS}
    values["department_id"] = employee.department.department_id if employee.department_id else None
    values["manager_id"] = employee.manager.employee_id if employee.manager_id else None
    if agent:
        profile = AgentProfile.objects.filter(employee_id=employee.pk).first()
        for name in AGENT_FIELDS:
            values[f"agent.{name}"] = json_value(getattr(profile, name, None))
        values["agent.owner"] = _employee_id(profile.owner_id) if profile else None
    return values


def employee_created(*, actor: Employee | None, employee: Employee) -> None:
    changes = created(employee_snapshot(employee, agent=employee.is_ai_agent))
    changes["mqtt_password_hash"] = SECRET_MARK  # a credential was issued
    audit_record(action="employee_create", actor=actor, target=employee, changes=changes)


def employee_changed(
    *, actor: Employee | None, employee: Employee, before: dict[str, Any], changed: Iterable[str]
) -> None:
    """employee_update; a change of is_active is recorded as employee_deactivate/_reactivate."""
    after = employee_snapshot(employee, agent=any(k.startswith("agent.") for k in before))
    action = "employee_update"
    if "is_active" in changed:
        action = "employee_reactivate" if employee.is_active else "employee_deactivate"
    audit_record(action=action, actor=actor, target=employee, changes=changes_between(before, after))


def console_user_changed(
    *, actor: Employee | None, employee: Employee, before: str | None, after: str | None
) -> None:
    """The console account an employee acts through (by user name), linked or unlinked."""
    audit_record(
        action="employee_console_user_set",
        actor=actor,
        target=employee,
        changes={"console_user": {"before": before, "after": after}},
    )


def department_snapshot(department: Department) -> dict[str, Any]:
    return {
        "name": department.name,
        "parent_id": department.parent.department_id if department.parent_id else None,
        "sort_order": department.sort_order,
    }


def _employee_id(pk: int | None) -> str | None:
    if pk is None:
        return None
    return Employee.objects.filter(pk=pk).values_list("employee_id", flat=True).first()
