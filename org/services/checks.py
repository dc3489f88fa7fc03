"""What every org write shares: the org admin check, the org lock and version, and input
checks that name the public field in their 400."""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils.translation import gettext as _

from mchat.errors import BadRequest, PermissionDenied
from org.models import Department, Employee, OrgVersion

# Model field -> public name, to name the field in validation errors.
_PUBLIC_NAMES = {
    "department": "department_id",
    "manager": "manager_id",
    "parent": "parent_id",
}


def require_org_admin(actor: Employee | None) -> None:
    """None means a trusted caller (management command, admin console, REST API)."""
    if actor is not None and not actor.is_org_admin:
        raise PermissionDenied()


def org_lock() -> None:
    """Serialise org writes: the OrgVersion row lock on PostgreSQL (SQLite writers are
    serialised by the database). Take it before reading what the write depends on."""
    if not OrgVersion.objects.select_for_update().filter(pk=1).exists():
        try:
            with transaction.atomic():
                OrgVersion.objects.create(pk=1)
        except IntegrityError:
            pass  # created concurrently
        OrgVersion.objects.select_for_update().filter(pk=1).exists()


def org_changed() -> None:
    """A change org.tree shows: new version, in the same transaction as the change."""
    OrgVersion.objects.filter(pk=1).update(counter=F("counter") + 1, token=secrets.token_hex(4))


def clean_text(value: Any, field: str, *, required: bool = False) -> str:
    text = "" if value is None else str(value).strip()
    if required and not text:
        raise BadRequest(_("%(field)s 不能为空") % {"field": field})
    # Control characters (NUL cannot even be stored by PostgreSQL) have no place in a profile.
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise BadRequest(_("%(field)s 不能包含控制字符") % {"field": field})
    return text


def full_clean(instance, *, exclude: Iterable[str] = ()) -> None:
    """Model validation (lengths, formats) as a 400 naming the public field."""
    try:
        instance.full_clean(exclude=list(exclude), validate_unique=False)
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        name = _PUBLIC_NAMES.get(field, field)
        raise BadRequest(f"{name} {messages[0]}") from None


def department_ref(department_id: Any, *, field: str) -> Department | None:
    if department_id in (None, ""):
        return None
    department = Department.objects.filter(department_id=str(department_id)).first()
    if department is None:
        raise BadRequest(_("%(field)s 不存在：%(id)s") % {"field": field, "id": department_id})
    return department


def active_employee_ref(employee_id: Any, *, field: str) -> Employee | None:
    if employee_id in (None, ""):
        return None
    employee = Employee.objects.filter(employee_id=str(employee_id), is_active=True).first()
    if employee is None:
        raise BadRequest(_("%(field)s 不存在或已停用：%(id)s") % {"field": field, "id": employee_id})
    return employee
