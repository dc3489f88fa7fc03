"""audit_record, the source context, before/after with secrets masked, append-only rows."""

from __future__ import annotations

import pytest
from django.db import transaction

from audit import context
from audit.models import AuditEvent, AuditLogIsAppendOnly
from audit.services import SECRET_MARK, Target, audit_record, changes_between, snapshot
from tests.factories import EmployeeFactory

pytestmark = pytest.mark.django_db


def test_record_names_actor_target_and_mqtt_source():
    admin = EmployeeFactory(employee_id="emp_admin_001", name="管理员")
    bob = EmployeeFactory(employee_id="emp_bob_001", name="Bob")
    with context.source("mqtt", client_id="emp_admin_001_dev1", seq_id="s-1"):
        event = audit_record(
            action="employee_update",
            actor=admin,
            target=bob,
            changes={"title": {"before": "", "after": "经理"}},
        )
    event.refresh_from_db()
    assert (event.actor_type, event.actor_id, event.actor_display) == ("employee", "emp_admin_001", "管理员")
    assert (event.target_type, event.target_id) == ("employee", "emp_bob_001")
    assert (event.source, event.client_id, event.seq_id) == ("mqtt", "emp_admin_001_dev1", "s-1")
    assert event.changes == {"title": {"before": "", "after": "经理"}}


def test_without_an_entry_point_the_system_acts():
    event = audit_record(action="job", actor=None, target=Target("messages", "", ""))
    assert (event.actor_type, event.actor_id, event.source) == ("system", "", "system")


def test_console_user_is_the_actor_of_a_trusted_call(django_user_model):
    user = django_user_model.objects.create_user("hr-lee", is_staff=True)
    bob = EmployeeFactory()
    with context.source("console", user=user, address="10.0.0.7"):
        with context.source("import"):  # nested: keeps the user and the address
            event = audit_record(action="employee_create", actor=None, target=bob)
    assert (event.actor_type, event.actor_id) == ("user", "hr-lee")
    assert (event.source, event.source_user, event.address) == ("import", "hr-lee", "10.0.0.7")
    assert context.current().kind == "system"  # reset after the blocks


def test_source_as_decorator_and_unknown_kind():
    @context.source("command")
    def run():
        return audit_record(action="x", actor=None, target=Target("t", "1")).source

    assert run() == "command"
    with pytest.raises(ValueError):
        context.source("carrier-pigeon")


def test_secrets_are_recorded_as_changed_never_their_value():
    bob = EmployeeFactory(mqtt_password_hash="$7$old")
    before = snapshot(bob, ["name", "mqtt_password_hash"])
    bob.mqtt_password_hash = "$7$new-secret-hash"
    bob.name = "Robert"
    changes = changes_between(before, snapshot(bob, ["name", "mqtt_password_hash"]))
    event = audit_record(action="employee_credential_reset", actor=None, target=bob, changes=changes)
    assert event.changes["mqtt_password_hash"] == SECRET_MARK
    assert event.changes["name"]["after"] == "Robert"
    # a secret passed in by mistake is masked too
    event = audit_record(action="x", actor=None, target=bob, changes={"password": "hunter2", "token": "t0k"})
    assert event.changes == {"password": SECRET_MARK, "token": SECRET_MARK}
    stored = str(list(AuditEvent.objects.values_list("changes", flat=True)))
    assert "secret-hash" not in stored and "hunter2" not in stored and "t0k" not in stored


def test_unchanged_fields_are_left_out_and_values_are_json_safe():
    manager = EmployeeFactory(employee_id="emp_mgr_001")
    bob = EmployeeFactory()
    before = snapshot(bob, ["name", "manager", "title"])
    bob.manager = manager
    changes = changes_between(before, snapshot(bob, ["name", "manager", "title"]))
    assert changes == {"manager": {"before": None, "after": "emp_mgr_001"}}


def test_rows_cannot_be_changed_or_deleted_through_the_orm():
    event = audit_record(action="x", actor=None, target=Target("t", "1"))
    event.action = "y"
    with pytest.raises(AuditLogIsAppendOnly):
        event.save()
    with pytest.raises(AuditLogIsAppendOnly):
        event.delete()
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEvent.objects.filter(pk=event.pk).update(action="y")
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get(pk=event.pk).action == "x"


def test_a_failed_audit_write_rolls_back_the_change(monkeypatch):
    bob = EmployeeFactory(name="Bob")

    def broken(*args, **kwargs):
        raise RuntimeError("audit table unavailable")

    monkeypatch.setattr(AuditEvent.objects, "create", broken)
    with pytest.raises(RuntimeError), transaction.atomic():
        bob.name = "Robert"
        bob.save()
        audit_record(action="employee_update", actor=None, target=bob)
    bob.refresh_from_db()
    assert bob.name == "Bob"


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/login/", "web"),
        ("/login/sso/callback/", "web"),
        ("/password/", "web"),
        ("/logout/", "web"),
        ("/api/web/sessions/3/end", "web"),
        ("/api/v1/employees/", "rest"),
        ("/admin/org/employee/", "console"),
        ("/admin/login/", "console"),
    ],
)
def test_http_requests_are_sourced_by_entry_point(path, kind):
    assert context.request_kind(path) == kind
