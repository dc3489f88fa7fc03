"""Reads of the organisation."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.utils.translation import gettext as _

from mchat.errors import BadRequest, NotFound
from org.models import Department, Employee, OrgVersion

INITIAL_VERSION = "0."


def org_version() -> str:
    """The current org version: "{counter}.{random}", an opaque string that changes with every
    change org.tree shows (one query)."""
    row = OrgVersion.objects.filter(pk=1).values_list("counter", "token").first()
    return f"{row[0]}.{row[1]}" if row else INITIAL_VERSION


def org_tree(*, known_version: str | None = None) -> dict:
    """org.tree (spec 3.5) plus `version`.

    With the current version as `known_version` the answer is {"version", "unchanged": true}
    after one query. Otherwise: departments in tree order (parents before children, siblings
    by sort_order then name) and the active employees. The version is read before the data,
    so a concurrent change can only make the data newer than its version (the client re-fetches
    once), never older.
    """
    version = org_version()
    if known_version is not None and str(known_version) == version:
        return {"version": version, "unchanged": True}
    departments = [
        {
            "department_id": department_id,
            "name": name,
            "parent_id": parent_id,
            "sort_order": sort_order,
        }
        for department_id, name, parent_id, sort_order in Department.objects.order_by(
            "tree_id", "lft"
        ).values_list("department_id", "name", "parent__department_id", "sort_order")
    ]
    employees = [
        {
            "employee_id": employee_id,
            "name": name,
            "department_id": department_id,
            "manager_id": manager_id,
            "is_ai_agent": is_ai_agent,
        }
        for employee_id, name, department_id, manager_id, is_ai_agent in Employee.objects.filter(
            is_active=True
        )
        .order_by("department__tree_id", "department__lft", "employee_id")
        .values_list(
            "employee_id",
            "name",
            "department__department_id",
            "manager__employee_id",
            "is_ai_agent",
        )
    ]
    return {"version": version, "departments": departments, "employees": employees}


def employee_get(*, employee_id: str, active: bool = False) -> Employee:
    """The employee (only an active one if `active`), with its department, manager and agent
    profile; NotFound otherwise."""
    employees = Employee.objects.select_related("department", "manager", "agent_profile__owner")
    if active:
        employees = employees.filter(is_active=True)
    employee = employees.filter(employee_id=employee_id).first()
    if employee is None:
        raise NotFound(_("员工不存在：%(id)s") % {"id": employee_id})
    return employee


def employee_list(
    *,
    department_id: str | None = None,
    include_subdepartments: bool = False,
    is_ai_agent: bool | None = None,
    is_active: bool | None = None,
    search: str | None = None,
) -> QuerySet[Employee]:
    employees = Employee.objects.select_related("department", "manager", "agent_profile__owner").order_by(
        "employee_id"
    )
    if department_id:
        department = Department.objects.filter(department_id=department_id).first()
        if department is None:
            raise BadRequest(_("department_id 不存在：%(id)s") % {"id": department_id})
        if include_subdepartments:
            employees = employees.filter(department__in=department.get_descendants(include_self=True))
        else:
            employees = employees.filter(department=department)
    if is_ai_agent is not None:
        employees = employees.filter(is_ai_agent=is_ai_agent)
    if is_active is not None:
        employees = employees.filter(is_active=is_active)
    if search:
        employees = employees.filter(
            Q(name__icontains=search) | Q(employee_id__icontains=search) | Q(email__icontains=search)
        )
    return employees


def department_get(*, department_id: str) -> Department:
    department = Department.objects.select_related("parent").filter(department_id=department_id).first()
    if department is None:
        raise NotFound(_("部门不存在：%(id)s") % {"id": department_id})
    return department


def department_list() -> QuerySet[Department]:
    return Department.objects.select_related("parent").order_by("tree_id", "lft")
