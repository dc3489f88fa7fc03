"""Audit rows to read, and REST clients with and without the right to read them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from audit.models import AuditEvent


def make_event(**fields) -> AuditEvent:
    values = {
        "occurred_at": timezone.now(),
        "actor_type": "employee",
        "actor_id": "emp_admin_001",
        "actor_display": "管理员",
        "action": "employee_update",
        "target_type": "employee",
        "target_id": "emp_bob_001",
        "target_display": "Bob",
        "changes": {"title": {"before": "", "after": "经理"}},
        "source": "mqtt",
        "client_id": "emp_admin_001_dev1",
    }
    values.update(fields)
    return AuditEvent.objects.create(**values)


@pytest.fixture
def events(db):
    now = timezone.now()
    return [
        make_event(
            occurred_at=now - timedelta(days=3), action="group_create", target_type="group", target_id="grp_1"
        ),
        make_event(occurred_at=now - timedelta(days=2), source="rest", client_id="", source_user="hr"),
        make_event(
            occurred_at=now - timedelta(days=1),
            actor_type="user",
            actor_id="hr-lee",
            actor_display="hr-lee",
            source="console",
            action="group_dismiss",
            target_type="group",
            target_id="grp_1",
        ),
        make_event(
            occurred_at=now, action="employee_credential_reset", changes={"mqtt_password_hash": "changed"}
        ),
    ]


def token_client(*, staff: bool = True, can_read: bool = True) -> APIClient:
    user = User.objects.create_user(f"auditor-{User.objects.count()}", is_staff=staff)
    if can_read:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="audit", codename="view_auditevent")
        )
    # bulk_create sends no signal: this token leaves no audit row among the rows under test
    # (creating tokens is audited: tests/audit/test_rest_tokens.py).
    (token,) = Token.objects.bulk_create([Token(user=user, key=Token.generate_key())])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def employee_change_form(employee, **fields) -> dict:
    """A person's console change form as the browser posts it, with `fields` changed (None:
    left out, as an unticked box is)."""
    form = {
        "name": employee.name,
        "is_active": "on" if employee.is_active else None,
        "is_org_admin": "on" if employee.is_org_admin else None,
        "department": employee.department_id or "",
        "manager": employee.manager_id or "",
        "title": employee.title,
        "email": employee.email,
        "phone": employee.phone,
        "avatar": employee.avatar,
        "signature": employee.signature,
        "console_user": employee.console_user_id or "",
    }
    form.update(fields)
    return {k: v for k, v in form.items() if v is not None}
