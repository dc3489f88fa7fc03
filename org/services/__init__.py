"""Writes and business rules of the organisation, by subdomain: employees (and agents),
departments, credentials (passwords, devices, challenges) and notices.

Every caller (MQTT handlers, the admin console, the REST API, imports, management commands)
goes through these functions. `actor` is the employee on whose behalf a request runs; None
means a trusted caller that did its own permission check (Django staff permissions in the admin
and the REST API, a shell user for management commands).

Public ids in arguments: references inside a write (department_id, manager_id, parent_id,
move_to, agent.owner) that do not exist are 400 "department_id 不存在：x"; the target of the
action itself (employee_id of employee.update, department_id of department.update/delete) that
does not exist is 404.
"""

from org.services.checks import require_org_admin
from org.services.credentials import (
    IssuedCredential,
    challenge_consume,
    challenge_issue,
    device_bind,
    employee_credential_reset,
)
from org.services.departments import (
    DepartmentDeletion,
    department_create,
    department_delete,
    department_move,
    department_update,
)
from org.services.employees import (
    AGENT_FIELDS,
    EmployeeChange,
    employee_console_user_set,
    employee_create,
    employee_deactivate,
    employee_update,
)
from org.services.notices import system_notice_broadcast

__all__ = [
    "AGENT_FIELDS",
    "DepartmentDeletion",
    "EmployeeChange",
    "IssuedCredential",
    "challenge_consume",
    "challenge_issue",
    "department_create",
    "department_delete",
    "department_move",
    "department_update",
    "device_bind",
    "employee_console_user_set",
    "employee_create",
    "employee_credential_reset",
    "employee_deactivate",
    "employee_update",
    "require_org_admin",
    "system_notice_broadcast",
]
