"""Broker files rendered from the database (bridge/acl.py) and the commands around them."""

import json
import threading
from io import StringIO

import pytest
from django.core.management import call_command

from bridge import acl
from org import services
from org.credentials import verify_password
from tests.factories import EmployeeFactory, GroupFactory, GroupMemberFactory

pytestmark = pytest.mark.django_db


def _passwd(directory):
    lines = (directory / "passwd").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines)


def test_passwd_has_the_bridge_and_active_employees_only(settings):
    issued = services.employee_create(actor=None, name="张三")
    EmployeeFactory(employee_id="emp_gone_001", is_active=False)
    acl.sync()
    users = _passwd(settings.MCHAT_BROKER_DIR)
    assert set(users) == {settings.MCHAT_BRIDGE_USERNAME, issued.employee.employee_id}
    assert verify_password(issued.password, users[issued.employee.employee_id])
    assert verify_password(settings.MCHAT_BRIDGE_PASSWORD, users[settings.MCHAT_BRIDGE_USERNAME])


def test_groups_file_lists_current_memberships_of_live_groups(settings):
    member = GroupMemberFactory(group__group_id="grp_live_001", employee__employee_id="emp_in_001")
    GroupMemberFactory(group=member.group, employee__employee_id="emp_off_001", employee__is_active=False)
    dismissed = GroupFactory(group_id="grp_gone_001", dismissed_at="2025-01-01T00:00:00Z")
    GroupMemberFactory(group=dismissed, employee=member.employee)
    acl.sync()
    assert (settings.MCHAT_BROKER_DIR / "groups").read_text() == "grp_live_001 emp_in_001\n"


def test_sync_rewrites_only_what_changed():
    first = acl.sync()
    assert set(first.changed) == {"passwd", "acl", "groups"}
    assert acl.sync().changed == ()  # the bridge's line is kept, not re-salted
    EmployeeFactory()
    assert acl.sync().changed == ("passwd",)


def test_sync_signals_the_broker_when_passwd_changes(monkeypatch):
    signalled = []
    monkeypatch.setattr(acl, "reload_broker", lambda pid_file: signalled.append(pid_file) or True)
    assert acl.sync().reloaded
    EmployeeFactory()
    assert acl.sync().reloaded
    assert len(signalled) == 2


def test_membership_only_change_needs_no_signal(settings, monkeypatch):
    group = GroupFactory()
    employee = EmployeeFactory()
    acl.sync()
    signalled = []
    monkeypatch.setattr(acl, "reload_broker", lambda pid_file: signalled.append(pid_file) or True)
    GroupMemberFactory(group=group, employee=employee)
    result = acl.sync()
    assert result.changed == ("groups",)
    assert signalled == []  # the plugin watches the groups file itself


def test_debouncer_coalesces_a_burst_into_one_render(settings, monkeypatch):
    settings.MCHAT_BROKER_SYNC_DEBOUNCE = 0.2
    renders = []
    done = threading.Event()

    def fake_sync():
        renders.append(1)
        done.set()

    monkeypatch.setattr(acl, "sync", fake_sync)
    debouncer = acl._Debouncer()
    for _ in range(50):
        debouncer.request()
    assert done.wait(5)
    assert renders == [1]
    done.clear()
    debouncer.request()  # a later change gets its own render
    assert done.wait(5)
    assert renders == [1, 1]


def test_broker_sync_command_reports_changes():
    out = StringIO()
    call_command("broker_sync", stdout=out)
    assert "changed: passwd, acl, groups" in out.getvalue()
    out = StringIO()
    call_command("broker_sync", stdout=out)
    assert "changed: nothing" in out.getvalue()


def test_createemployee_prints_the_connection_once(settings, django_capture_on_commit_callbacks):
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("createemployee", "--name", "王五", "--org-admin", "--json", stdout=out)
    printed = json.loads(out.getvalue())
    assert printed["employee_id"] == "emp_wangwu_001"
    connection = printed["mqtt_connection"]
    assert connection["mqtt_username"] == "emp_wangwu_001"
    assert connection["broker_port"] == settings.MCHAT_PUBLIC_MQTT_PORT
    users = _passwd(settings.MCHAT_BROKER_DIR)  # rendered on commit
    assert verify_password(connection["mqtt_password"], users["emp_wangwu_001"])


def test_sync_can_render_the_groups_file_alone(settings):
    acl.sync()
    passwd_before = (settings.MCHAT_BROKER_DIR / "passwd").read_text()
    GroupMemberFactory(group__group_id="grp_one_001", employee__employee_id="emp_one_001")
    result = acl.sync(files=("groups",))
    assert result.changed == ("groups",) and not result.reloaded
    assert (settings.MCHAT_BROKER_DIR / "passwd").read_text() == passwd_before  # not re-read
    assert "grp_one_001 emp_one_001" in (settings.MCHAT_BROKER_DIR / "groups").read_text()


def test_a_reset_names_the_employee_for_the_plugin_to_disconnect(
    settings, django_capture_on_commit_callbacks
):
    issued = services.employee_create(actor=None, name="赵六")
    with django_capture_on_commit_callbacks(execute=True):
        services.employee_credential_reset(actor=None, employee=issued.employee)
    assert (settings.MCHAT_BROKER_DIR / "kick").read_text() == f"{issued.employee.employee_id}\n"
    assert not verify_password(
        issued.password, _passwd(settings.MCHAT_BROKER_DIR)[issued.employee.employee_id]
    )
