"""CSV/XLSX import and export of departments and employees (django-import-export).

Rows are saved through org.services, never with Model.save(): ids, the tree lock, the org
version, profile events and broker credentials follow as for any other write. A service's
refusal becomes a row validation error ("第 N 行: department_id 不存在：x") in the dry-run
preview, not a traceback. Imports run in one transaction; the preview is rolled back.

New employees get a credential nobody has seen: hand out logins with the admin's
"重置 MQTT 凭证" action afterwards.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _
from import_export import fields, resources, widgets

from audit.context import source as audit_source
from mchat.db import instance_adopt
from mchat.errors import MChatError
from org import services
from org.models import Department, Employee


class ChineseBooleanWidget(widgets.BooleanWidget):
    """Also 是/否 (what HR spreadsheets say); empty means "not given"."""

    TRUE_VALUES = [
        *widgets.BooleanWidget.TRUE_VALUES,
        "是",
        "yes",
        "Yes",
        "YES",
        "y",
        "Y",
    ]
    FALSE_VALUES = [
        *widgets.BooleanWidget.FALSE_VALUES,
        "否",
        "no",
        "No",
        "NO",
        "n",
        "N",
    ]

    def clean(self, value, row=None, **kwargs):
        if isinstance(value, str):
            value = value.strip()
        if value not in (None, "", *self.TRUE_VALUES, *self.FALSE_VALUES, True, False):
            raise ValueError(_("应为 是/否、true/false 或 1/0"))
        return super().clean(value, row=row, **kwargs)


def _text(row: dict, column: str) -> str | None:
    """A cell as text; None when the column is absent (so an update leaves the field alone)."""
    if column not in row:
        return None
    value = row[column]
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():  # XLSX numbers: 12.0 -> "12"
        value = int(value)
    return str(value).strip()


class ServiceResource(resources.ModelResource):
    """save_instance calls a service; MChatError -> a row validation error."""

    def save_instance(self, instance, is_create, row, **kwargs):
        try:
            with audit_source("import"):  # keeps the console user and address of the request
                saved = self.save_through_service(instance, is_create, row)
        except MChatError as exc:
            raise ValidationError(str(exc.message)) from None
        instance_adopt(instance, saved)

    def save_through_service(self, instance, is_create: bool, row: dict):
        raise NotImplementedError

    def delete_instance(self, instance, row, **kwargs):
        raise ValidationError(_("导入不能删除数据"))


class DepartmentResource(ServiceResource):
    department_id = fields.Field(attribute="department_id", column_name="department_id")
    name = fields.Field(attribute="name", column_name="name")
    parent_id = fields.Field(column_name="parent_id", dehydrate_method="dehydrate_parent_id")
    sort_order = fields.Field(
        attribute="sort_order", column_name="sort_order", widget=widgets.IntegerWidget()
    )

    class Meta:
        model = Department
        fields = ("department_id", "name", "parent_id", "sort_order")
        import_id_fields = ("department_id",)
        use_transactions = True
        skip_unchanged = False
        clean_model_instances = False

    def get_export_queryset(self, request=None):
        return Department.objects.select_related("parent").order_by("tree_id", "lft")

    def dehydrate_parent_id(self, department: Department) -> str:
        return department.parent.department_id if department.parent_id else ""

    def save_through_service(self, instance, is_create, row):
        name, parent_id = _text(row, "name"), _text(row, "parent_id")
        if is_create:
            return services.department_create(
                actor=None,
                name=name or "",
                parent_id=parent_id or None,
                sort_order=instance.sort_order or 0,
                department_id=_text(row, "department_id") or None,
            )
        updates: dict[str, Any] = {}
        if name is not None:
            updates["name"] = name
        if parent_id is not None:
            updates["parent_id"] = parent_id or None
        if _text(row, "sort_order"):
            updates["sort_order"] = instance.sort_order
        if not updates:
            return Department.objects.get(pk=instance.pk)
        return services.department_update(actor=None, department_id=instance.department_id, updates=updates)


EMPLOYEE_TEXT_COLUMNS = ("name", "title", "email", "phone")
EMPLOYEE_FLAG_COLUMNS = ("is_ai_agent", "is_org_admin", "is_active")


class EmployeeResource(ServiceResource):
    employee_id = fields.Field(attribute="employee_id", column_name="employee_id")
    name = fields.Field(attribute="name", column_name="name")
    department_id = fields.Field(column_name="department_id", dehydrate_method="dehydrate_department_id")
    manager_id = fields.Field(column_name="manager_id", dehydrate_method="dehydrate_manager_id")
    title = fields.Field(attribute="title", column_name="title")
    email = fields.Field(attribute="email", column_name="email")
    phone = fields.Field(attribute="phone", column_name="phone")
    is_ai_agent = fields.Field(
        attribute="is_ai_agent",
        column_name="is_ai_agent",
        widget=ChineseBooleanWidget(),
    )
    is_org_admin = fields.Field(
        attribute="is_org_admin",
        column_name="is_org_admin",
        widget=ChineseBooleanWidget(),
    )
    is_active = fields.Field(attribute="is_active", column_name="is_active", widget=ChineseBooleanWidget())

    class Meta:
        model = Employee
        fields = (
            "employee_id",
            "name",
            "department_id",
            "manager_id",
            "title",
            "email",
            "phone",
            "is_ai_agent",
            "is_org_admin",
            "is_active",
        )
        import_id_fields = ("employee_id",)
        use_transactions = True
        skip_unchanged = False
        clean_model_instances = False

    def get_export_queryset(self, request=None):
        return Employee.objects.select_related("department", "manager").order_by("employee_id")

    def dehydrate_department_id(self, employee: Employee) -> str:
        return employee.department.department_id if employee.department_id else ""

    def dehydrate_manager_id(self, employee: Employee) -> str:
        return employee.manager.employee_id if employee.manager_id else ""

    def _flag(self, row: dict, column: str) -> bool | None:
        if not _text(row, column):
            return None
        return self.fields[column].clean(row)

    def save_through_service(self, instance, is_create, row):
        texts = {column: _text(row, column) for column in EMPLOYEE_TEXT_COLUMNS}
        flags = {column: self._flag(row, column) for column in EMPLOYEE_FLAG_COLUMNS}
        refs = {column: _text(row, column) for column in ("department_id", "manager_id")}
        if is_create:
            issued = services.employee_create(
                actor=None,
                employee_id=_text(row, "employee_id") or None,
                name=texts["name"] or "",
                is_ai_agent=bool(flags["is_ai_agent"]),
                is_org_admin=bool(flags["is_org_admin"]),
                department_id=refs["department_id"] or None,
                manager_id=refs["manager_id"] or None,
                **{c: texts[c] or "" for c in ("title", "email", "phone")},
            )
            if flags["is_active"] is False:
                return services.employee_deactivate(
                    actor=None, employee_id=issued.employee.employee_id
                ).employee
            return issued.employee
        if flags["is_ai_agent"] is not None and flags["is_ai_agent"] != instance.is_ai_agent:
            raise ValidationError({"is_ai_agent": _("创建后不可修改")})
        updates: dict[str, Any] = {k: v for k, v in texts.items() if v is not None}
        updates |= {k: (v or None) for k, v in refs.items() if v is not None}
        updates |= {k: v for k, v in flags.items() if v is not None and k != "is_ai_agent"}
        if not updates:
            return Employee.objects.get(pk=instance.pk)
        return services.employee_update(
            actor=None, employee_id=instance.employee_id, updates=updates
        ).employee
