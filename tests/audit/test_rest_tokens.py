"""REST tokens created or revoked outside the console's token page leave one audit row each,
with the source of the path (manage.py's `command`, a console request) and never the key."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import transaction
from rest_framework.authtoken.models import Token

from audit import context
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

REPO_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture
def under_manage_py(monkeypatch):
    """What manage.py sets for every command it runs (checked on its own below)."""
    monkeypatch.setattr(context, "_process_default", "command")


@pytest.fixture
def integration_user(db):
    return User.objects.create_user("hr-system", is_staff=True)


def _rows():
    return list(
        AuditEvent.objects.filter(target_type="rest_token")
        .order_by("id")
        .values_list("action", "target_id", "source", "actor_type")
    )


def _no_key_anywhere(*keys: str) -> None:
    everything = str(list(AuditEvent.objects.values()))
    for key in keys:
        assert key not in everything


def test_drf_create_token_and_its_reset_are_audited_as_a_command(under_manage_py, integration_user):
    out = io.StringIO()
    call_command("drf_create_token", "hr-system", stdout=out)
    first = Token.objects.get(user=integration_user).key
    assert first in out.getvalue()
    assert _rows() == [("rest_token_create", "hr-system", "command", "system")]

    call_command("drf_create_token", "hr-system", stdout=out)  # the same token again: no change
    assert len(_rows()) == 1

    call_command("drf_create_token", "hr-system", "--reset", stdout=out)
    second = Token.objects.get(user=integration_user).key
    assert second != first
    assert _rows()[1:] == [
        ("rest_token_revoke", "hr-system", "command", "system"),
        ("rest_token_create", "hr-system", "command", "system"),
    ]
    _no_key_anywhere(first, second)


def test_a_shell_creating_and_deleting_a_token_is_audited(under_manage_py, integration_user):
    with transaction.atomic():  # as a careful script does; the rows are written either way
        token = Token.objects.create(user=integration_user)
    Token.objects.filter(user=integration_user).delete()
    assert _rows() == [
        ("rest_token_create", "hr-system", "command", "system"),
        ("rest_token_revoke", "hr-system", "command", "system"),
    ]
    _no_key_anywhere(token.key)


def test_deleting_a_user_in_the_console_revokes_its_token_on_the_record(admin_client, integration_user):
    Token.objects.create(user=integration_user)
    response = admin_client.post(f"/admin/auth/user/{integration_user.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Token.objects.exists()
    revoked = AuditEvent.objects.get(action="rest_token_revoke")
    assert (revoked.target_id, revoked.source, revoked.actor_id, revoked.source_user) == (
        "hr-system",
        "console",
        "admin",
        "admin",
    )


def test_no_token_change_without_its_row(under_manage_py, integration_user, monkeypatch):
    other = User.objects.create_user("crm-sync", is_staff=True)
    kept = Token.objects.create(user=other)

    def broken(**fields):
        raise RuntimeError("audit table unavailable")

    monkeypatch.setattr(AuditEvent.objects, "create", broken)
    with pytest.raises(RuntimeError):
        call_command("drf_create_token", "hr-system", stdout=io.StringIO())
    assert not Token.objects.filter(user=integration_user).exists()
    with pytest.raises(RuntimeError):
        # Django deletes in one transaction without a savepoint: the test's own transaction
        # around it needs one, as a real caller's autocommit would not.
        with transaction.atomic():
            Token.objects.filter(pk=kept.pk).delete()
    assert Token.objects.filter(pk=kept.pk).exists()


def test_manage_py_makes_command_the_default_source(tmp_path):
    """Every process manage.py starts audits what no entry point claims as `command`."""
    code = "from audit import context; print(context.current().kind, context.is_set())"
    result = subprocess.run(
        [sys.executable, str(REPO_DIR / "manage.py"), "shell", "-c", code],
        cwd=REPO_DIR,
        env={"PATH": "/usr/bin:/bin", "MCHAT_VAR_DIR": str(tmp_path), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    # A scheduled job inside such a process still says "system" (is_set: no entry point did).
    assert result.stdout.splitlines()[-1].split() == ["command", "False"]
