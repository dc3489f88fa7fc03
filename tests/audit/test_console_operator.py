"""A console account linked to an employee (Employee.console_user) acts as that employee: the
deliveries of its dismissals, recalls and notices name the employee, its audit rows too (with
the account as source_user); an account linked to no one acts as "system" (protocol §12.3)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from messaging import services as messaging_services
from messaging.models import Message
from org.models import Employee, SystemNotice
from tests.audit.conftest import employee_change_form
from tests.factories import EmployeeFactory

pytestmark = pytest.mark.django_db


def _console(user: User, django_capture_on_commit_callbacks):
    client = Client()
    client.force_login(user)

    class Committing:
        def get(self, *args, **kwargs):
            return client.get(*args, **kwargs)

        def post(self, *args, **kwargs):
            with django_capture_on_commit_callbacks(execute=True):
                return client.post(*args, **kwargs)

    return Committing()


@pytest.fixture
def lee(db):
    """HR's console account, a superuser."""
    return User.objects.create_superuser("hr-lee", "lee@example.com", "pw-not-used")


@pytest.fixture
def lee_employee(db):
    return EmployeeFactory(employee_id="emp_lisi_001", name="李四", is_org_admin=True)


@pytest.fixture
def team(alice, bob, published, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        group = messaging_services.group_create(
            actor=alice, name="项目组", member_ids=[bob.employee_id]
        ).group
        message = messaging_services.message_send_group(actor=bob, group_id=group.group_id, content="hi")
    return group, message


def test_linking_a_console_account_in_the_employee_form_is_audited(
    lee, lee_employee, django_capture_on_commit_callbacks
):
    console = _console(lee, django_capture_on_commit_callbacks)
    url = reverse("admin:org_employee_change", args=[lee_employee.pk])
    page = console.get(url).content.decode()
    assert 'name="console_user"' in page and "hr-lee" in page

    response = console.post(url, employee_change_form(lee_employee, console_user=lee.pk))
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Employee.objects.get(pk=lee_employee.pk).console_user == lee
    (row,) = AuditEvent.objects.filter(action="employee_console_user_set")
    assert (row.target_type, row.target_id) == ("employee", "emp_lisi_001")
    assert row.changes == {"console_user": {"before": None, "after": "hr-lee"}}
    assert (row.source, row.source_user, row.address) == ("console", "hr-lee", "127.0.0.1")
    # The row names whom the account acted as when it made the change: itself, not yet 李四.
    assert (row.actor_type, row.actor_id) == ("user", "hr-lee")

    # Unlinking is audited too; saving the form unchanged records nothing.
    console.post(url, employee_change_form(Employee.objects.get(pk=lee_employee.pk)))
    console.post(url, employee_change_form(Employee.objects.get(pk=lee_employee.pk), console_user=""))
    assert Employee.objects.get(pk=lee_employee.pk).console_user is None
    rows = AuditEvent.objects.filter(action="employee_console_user_set").order_by("id")
    assert [(r.actor_id, r.changes["console_user"]) for r in rows] == [
        ("hr-lee", {"before": None, "after": "hr-lee"}),
        ("emp_lisi_001", {"before": "hr-lee", "after": None}),  # unlinked by 李四's account
    ]


def test_one_account_one_employee_and_only_console_accounts(
    lee, lee_employee, alice, django_capture_on_commit_callbacks
):
    lee_employee.console_user = lee
    lee_employee.save()
    console = _console(lee, django_capture_on_commit_callbacks)
    refused = console.post(
        reverse("admin:org_employee_change", args=[alice.pk]),
        employee_change_form(alice, console_user=lee.pk),
    )
    assert refused.status_code == 200  # the form again, with the error
    assert Employee.objects.get(pk=alice.pk).console_user is None

    not_staff = User.objects.create_user("web-someone")
    refused = console.post(
        reverse("admin:org_employee_change", args=[alice.pk]),
        employee_change_form(alice, console_user=not_staff.pk),
    )
    assert refused.status_code == 200
    assert Employee.objects.get(pk=alice.pk).console_user is None
    assert not AuditEvent.objects.filter(action="employee_console_user_set").exists()


def test_without_auth_change_user_the_link_is_read_only(lee, alice, django_capture_on_commit_callbacks):
    hr = User.objects.create_user("hr-wang", is_staff=True)
    hr.user_permissions.add(*Permission.objects.filter(content_type__app_label="org"))
    console = _console(hr, django_capture_on_commit_callbacks)
    url = reverse("admin:org_employee_change", args=[alice.pk])
    assert 'name="console_user"' not in console.get(url).content.decode()
    response = console.post(url, employee_change_form(alice, console_user=lee.pk, title="经理"))
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.title == "经理" and alice.console_user is None


def test_a_linked_account_dismisses_recalls_and_notifies_as_its_employee(
    lee, lee_employee, team, bob, published, django_capture_on_commit_callbacks
):
    lee_employee.console_user = lee
    lee_employee.save()
    group, message = team
    console = _console(lee, django_capture_on_commit_callbacks)
    published.clear()

    console.post(
        reverse("admin:messaging_message_changelist"),
        {"action": "recall_messages", "_selected_action": [message.pk]},
    )
    assert Message.objects.get(pk=message.pk).recalled_by == lee_employee
    (recall,) = [p for p in published.to(f"mchat/group/{group.group_id}") if p.get("type") == "recall"]
    assert recall["recalled_by"] == "emp_lisi_001"

    console.post(
        reverse("admin:messaging_group_changelist"),
        {"action": "dismiss_groups", "_selected_action": [group.pk]},
    )
    (dismissed,) = [
        p for p in published.to(f"mchat/inbox/{bob.employee_id}") if p.get("type") == "group_dismissed"
    ]
    assert dismissed["body"]["operator_id"] == "emp_lisi_001"

    console.post(reverse("admin:org_systemnotice_add"), {"title": "维护通知", "text": "今晚维护"})
    (notice,) = [m.payload for m in published.messages if m.topic == "mchat/system/notify"]
    assert notice["body"] == {"text": "今晚维护", "operator_id": "emp_lisi_001"}
    assert SystemNotice.objects.get().sent_by == "hr-lee"

    rows = {r.action: r for r in AuditEvent.objects.filter(source="console")}
    assert set(rows) == {"message_recall", "group_dismiss", "system_notice_broadcast"}
    for row in rows.values():
        assert (row.actor_type, row.actor_id, row.actor_display) == ("employee", "emp_lisi_001", "李四")
        assert row.source_user == "hr-lee"


def test_an_unlinked_account_acts_as_the_system(
    lee, team, bob, published, django_capture_on_commit_callbacks
):
    group, message = team
    console = _console(lee, django_capture_on_commit_callbacks)
    published.clear()
    console.post(
        reverse("admin:messaging_message_changelist"),
        {"action": "recall_messages", "_selected_action": [message.pk]},
    )
    console.post(
        reverse("admin:messaging_group_changelist"),
        {"action": "dismiss_groups", "_selected_action": [group.pk]},
    )
    console.post(reverse("admin:org_systemnotice_add"), {"title": "维护通知", "text": "今晚维护"})
    (recall,) = [p for p in published.to(f"mchat/group/{group.group_id}") if p.get("type") == "recall"]
    (dismissed,) = [
        p for p in published.to(f"mchat/inbox/{bob.employee_id}") if p.get("type") == "group_dismissed"
    ]
    (notice,) = [m.payload for m in published.messages if m.topic == "mchat/system/notify"]
    assert (
        recall["recalled_by"] == dismissed["body"]["operator_id"] == notice["body"]["operator_id"] == "system"
    )
    rows = AuditEvent.objects.filter(source="console")
    assert {(r.actor_type, r.actor_id, r.source_user) for r in rows} == {("user", "hr-lee", "hr-lee")}
    assert rows.count() == 3


def test_a_linked_rest_account_acts_as_its_employee(lee_employee, django_capture_on_commit_callbacks):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    user = User.objects.create_user("hr-system", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["change_employee", "view_employee"]))
    lee_employee.console_user = user
    lee_employee.save()
    bob = EmployeeFactory(employee_id="emp_bob_009")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.patch(f"/api/v1/employees/{bob.employee_id}/", {"title": "经理"}, format="json")
    assert response.status_code == 200, response.content
    (row,) = AuditEvent.objects.filter(action="employee_update")
    assert (row.actor_type, row.actor_id, row.source, row.source_user) == (
        "employee",
        "emp_lisi_001",
        "rest",
        "hr-system",
    )
