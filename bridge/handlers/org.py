"""Organisation actions (spec 3.3-3.6): validate, call one service or selector, shape `data`."""

from __future__ import annotations

from bridge.handlers import Request, validate
from mchat.wire import isoformat_z
from org import selectors, services
from org.models import Department
from org.serializers import (
    DepartmentCreateInput,
    DepartmentDeleteInput,
    DepartmentUpdateInput,
    EmployeeCreateInput,
    EmployeeUpdateInput,
    OrgTreeInput,
)


def employee_create(request: Request) -> dict:
    fields = validate(EmployeeCreateInput, request.payload)
    issued = services.employee_create(actor=request.employee, **fields)
    return {
        "employee_id": issued.employee.employee_id,
        "name": issued.employee.name,
        "is_ai_agent": issued.employee.is_ai_agent,
        "created_at": isoformat_z(issued.employee.created_at),
        "mqtt_connection": issued.mqtt_connection(),
    }


def employee_update(request: Request) -> dict:
    fields = validate(EmployeeUpdateInput, request.payload)
    change = services.employee_update(
        actor=request.employee,
        employee_id=fields["employee_id"],
        updates=fields["updates"],
    )
    return {
        "employee_id": change.employee.employee_id,
        "updated_at": isoformat_z(change.employee.updated_at),
        "fields": list(change.fields),
    }


def org_tree(request: Request) -> dict:
    fields = validate(OrgTreeInput, request.payload)
    return selectors.org_tree(known_version=fields.get("version"))


def _department(department: Department) -> dict:
    return {
        "department_id": department.department_id,
        "name": department.name,
        "parent_id": department.parent.department_id if department.parent else None,
        "sort_order": department.sort_order,
        "created_at": isoformat_z(department.created_at),
        "updated_at": isoformat_z(department.updated_at),
    }


def department_create(request: Request) -> dict:
    fields = validate(DepartmentCreateInput, request.payload)
    return _department(services.department_create(actor=request.employee, **fields))


def department_update(request: Request) -> dict:
    fields = validate(DepartmentUpdateInput, request.payload)
    department = services.department_update(
        actor=request.employee,
        department_id=fields["department_id"],
        updates=fields["updates"],
    )
    return _department(department)


def department_delete(request: Request) -> dict:
    fields = validate(DepartmentDeleteInput, request.payload)
    deletion = services.department_delete(actor=request.employee, **fields)
    return {
        "department_id": deletion.department_id,
        "deleted_at": isoformat_z(deletion.deleted_at),
        "moved_to": deletion.moved_to,
        "moved_employee_ids": list(deletion.moved_employee_ids),
        "moved_department_ids": list(deletion.moved_department_ids),
    }
