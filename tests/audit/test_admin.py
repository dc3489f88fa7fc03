"""The console: the audit log is read-only for everyone (superusers too); legal holds and
per-group retention are set there and audited."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from audit.models import AuditEvent, GroupRetention, LegalHold
from tests.audit.conftest import make_event
from tests.factories import EmployeeFactory, GroupFactory

pytestmark = pytest.mark.django_db


def test_audit_permissions_are_view_only():
    codenames = set(
        Permission.objects.filter(
            content_type__app_label="audit", content_type__model="auditevent"
        ).values_list("codename", flat=True)
    )
    assert codenames == {"view_auditevent"}


def test_superuser_can_list_filter_and_search_but_never_change(admin_client):
    event = make_event(action="group_dismiss", target_id="grp_sales")
    make_event(action="employee_update")
    listing = admin_client.get("/admin/audit/auditevent/", {"action": "group_dismiss"})
    assert listing.status_code == 200
    assert b"grp_sales" in listing.content
    found = admin_client.get("/admin/audit/auditevent/", {"q": "grp_sales"})
    assert found.status_code == 200 and found.context["cl"].result_count == 1
    assert admin_client.get("/admin/audit/auditevent/add/").status_code == 403
    detail = admin_client.get(f"/admin/audit/auditevent/{event.pk}/change/")
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
    changed = admin_client.post(f"/admin/audit/auditevent/{event.pk}/change/", {"action": "forged"})
    assert changed.status_code == 403
    assert (
        admin_client.post(f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    bulk = admin_client.post(
        "/admin/audit/auditevent/", {"action": "delete_selected", "_selected_action": [event.pk]}
    )
    assert bulk.status_code in (200, 302)
    assert AuditEvent.objects.filter(pk=event.pk, action="group_dismiss").exists()


def test_placing_and_releasing_a_legal_hold_in_the_console_is_audited(admin_client):
    bob = EmployeeFactory(employee_id="emp_bob_001")
    response = admin_client.post("/admin/audit/legalhold/add/", {"employee": bob.pk, "reason": "诉讼保全"})
    assert response.status_code == 302
    hold = LegalHold.objects.get()
    assert hold.employee == bob and hold.placed_by == "admin" and hold.is_active
    placed = AuditEvent.objects.get(action="legal_hold_place")
    assert (placed.actor_type, placed.actor_id, placed.source) == ("user", "admin", "console")
    assert placed.target_id == "emp_bob_001"
    admin_client.post("/admin/audit/legalhold/", {"action": "release_holds", "_selected_action": [hold.pk]})
    hold.refresh_from_db()
    assert not hold.is_active and hold.released_by == "admin"
    assert AuditEvent.objects.filter(action="legal_hold_release", target_id="emp_bob_001").count() == 1


def test_a_hold_names_exactly_one_subject(admin_client):
    response = admin_client.post("/admin/audit/legalhold/add/", {"reason": "x"})
    assert LegalHold.objects.count() == 0
    assert response.status_code in (200, 302)


def test_group_retention_set_in_the_console_is_audited(admin_client):
    group = GroupFactory(group_id="grp_sales")
    response = admin_client.post("/admin/audit/groupretention/add/", {"group": group.pk, "keep_days": 30})
    assert response.status_code == 302
    assert GroupRetention.objects.get(group=group).keep_days == 30
    event = AuditEvent.objects.get(action="group_retention_set")
    assert event.target_id == "grp_sales" and event.changes == {
        "keep_days": {"before": "default", "after": 30}
    }


def test_rest_tokens_created_and_revoked_in_the_console_are_audited_without_the_key(admin_client):
    from django.contrib.auth.models import User
    from rest_framework.authtoken.models import Token

    hr = User.objects.create_user("hr-system", is_staff=True)
    assert admin_client.post("/admin/authtoken/tokenproxy/add/", {"user": hr.pk}).status_code == 302
    key = Token.objects.get(user=hr).key
    created = AuditEvent.objects.get(action="rest_token_create")
    assert (created.target_type, created.target_id, created.source) == ("rest_token", "hr-system", "console")
    response = admin_client.post(f"/admin/authtoken/tokenproxy/{hr.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not Token.objects.filter(user=hr).exists()
    revoked = AuditEvent.objects.get(action="rest_token_revoke")
    assert revoked.target_id == "hr-system" and revoked.actor_id == "admin"
    assert key not in str(list(AuditEvent.objects.values_list("changes", "target_id", "target_display")))
