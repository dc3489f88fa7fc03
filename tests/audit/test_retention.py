"""Retention: old messages (and files only they used) and old audit rows go, in bounded
batches; legal holds and per-group overrides are honoured; each run is audited by counts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit import retention
from audit.models import AuditEvent, GroupRetention, LegalHold
from audit.tasks import audit_retention_run, message_retention_run
from messaging import services, storage
from messaging.models import Message, StoredFile
from messaging.storage.keys import object_key
from tests.audit.conftest import make_event
from tests.factories import EmployeeFactory, private_message_send

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(db):
    return {
        name: EmployeeFactory(employee_id=f"emp_{name}_001", name=name)
        for name in ("alice", "bob", "carol", "dave")
    }


def _private(sender, recipient, text, *, age_days):
    message = private_message_send(sender, recipient, text)
    Message.objects.filter(pk=message.pk).update(sent_at=timezone.now() - timedelta(days=age_days))
    return message.msg_id


def _group_message(sender, group_id, text, *, age_days):
    message = services.message_send_group(actor=sender, group_id=group_id, content=text)
    Message.objects.filter(pk=message.pk).update(sent_at=timezone.now() - timedelta(days=age_days))
    return message.msg_id


def _left() -> set[str]:
    return set(Message.objects.values_list("msg_id", flat=True))


def test_nothing_is_deleted_by_default(people):
    _private(people["alice"], people["bob"], "old", age_days=5000)
    assert retention.messages_purge() == retention.MessagePurge(0, 0, 0)
    assert len(_left()) == 1
    assert not AuditEvent.objects.filter(action="message_retention_purge").exists()


def test_old_messages_go_in_batches_and_the_run_is_audited_by_counts(settings, people):
    settings.MCHAT_MESSAGE_RETENTION_DAYS = 30
    alice, bob = people["alice"], people["bob"]
    old = {_private(alice, bob, f"old {i}", age_days=40) for i in range(5)}
    recent = _private(bob, alice, "recent", age_days=1)
    result = retention.messages_purge(batch_size=2, max_batches=2)
    assert result.messages == 4  # bounded: two batches of two this run
    assert retention.messages_purge(batch_size=2).messages == 1  # the next run continues
    assert _left() == {recent}
    assert old.isdisjoint(_left())
    rows = list(AuditEvent.objects.filter(action="message_retention_purge").order_by("pk"))
    assert [r.changes["messages"] for r in rows] == [4, 1]
    assert rows[0].changes == {"messages": 4, "files": 0, "conversations": 1}
    assert rows[0].actor_type == "system" and rows[0].source == "system"
    assert "old" not in str(rows[0].changes)


def test_group_override_replaces_the_default(settings, people):
    settings.MCHAT_MESSAGE_RETENTION_DAYS = 30
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    short = services.group_create(actor=alice, name="短", member_ids=[bob.employee_id]).group
    forever = services.group_create(actor=alice, name="永久", member_ids=[carol.employee_id]).group
    GroupRetention.objects.create(group=short, keep_days=7)
    GroupRetention.objects.create(group=forever, keep_days=None)
    gone = _group_message(alice, short.group_id, "ten days", age_days=10)
    kept_short = _group_message(alice, short.group_id, "three days", age_days=3)
    kept_forever = _group_message(alice, forever.group_id, "ancient", age_days=900)
    private_gone = _private(alice, bob, "old private", age_days=31)
    retention.messages_purge()
    assert _left() == {kept_short, kept_forever}
    assert gone not in _left() and private_gone not in _left()


def test_legal_holds_on_an_employee_and_on_a_group(settings, people):
    settings.MCHAT_MESSAGE_RETENTION_DAYS = 30
    alice, bob, carol, dave = (people[n] for n in ("alice", "bob", "carol", "dave"))
    held_group = services.group_create(actor=alice, name="保全", member_ids=[bob.employee_id]).group
    seen_by_carol = services.group_create(actor=alice, name="有carol", member_ids=[carol.employee_id]).group
    other_group = services.group_create(actor=alice, name="其他", member_ids=[dave.employee_id]).group
    LegalHold.objects.create(group=held_group, reason="诉讼")
    LegalHold.objects.create(employee=carol, reason="调查")
    released = LegalHold.objects.create(employee=dave, reason="结案", released_at=timezone.now())
    assert not released.is_active
    kept = {
        _group_message(alice, held_group.group_id, "held group", age_days=99),
        _group_message(alice, seen_by_carol.group_id, "carol could see it", age_days=99),
        _private(carol, alice, "carol wrote it", age_days=99),
        _private(bob, carol, "carol received it", age_days=99),
    }
    deleted = {
        _group_message(alice, other_group.group_id, "no hold", age_days=99),
        _private(alice, dave, "hold released", age_days=99),
        _private(alice, bob, "no hold either", age_days=99),
    }
    result = retention.messages_purge()
    assert result.messages == 3
    assert _left() == kept
    assert deleted.isdisjoint(_left())


def test_files_only_expired_messages_used_are_deleted_with_their_bytes(settings, tmp_path, people):
    settings.MCHAT_MESSAGE_RETENTION_DAYS = 30
    settings.MCHAT_STORAGE = "local"
    settings.MCHAT_STORAGE_DIR = tmp_path / "files"
    alice, bob = people["alice"], people["bob"]
    backend = storage.current()
    keys = {}
    for name in ("only-old", "shared"):
        key = object_key(employee_id="emp_alice_001", file_name=f"{name}.txt", at=timezone.now())
        StoredFile.objects.create(
            key=key,
            owner=alice,
            name=f"{name}.txt",
            content_type="text/plain",
            size=3,
            backend="local",
            uploaded_at=timezone.now(),
        )
        path = backend.path_of(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"abc")
        keys[name] = key
    old_only = _private(alice, bob, "a", age_days=40)
    old_shared = _private(alice, bob, "b", age_days=40)
    new_shared = _private(alice, bob, "c", age_days=1)
    Message.objects.filter(msg_id=old_only).update(file_key=keys["only-old"])
    Message.objects.filter(msg_id__in=[old_shared, new_shared]).update(file_key=keys["shared"])
    result = retention.messages_purge()
    assert (result.messages, result.files) == (2, 1)
    assert set(StoredFile.objects.values_list("key", flat=True)) == {keys["shared"]}
    assert not backend.path_of(keys["only-old"]).exists()
    assert backend.path_of(keys["shared"]).exists()


def test_audit_rows_older_than_the_retention_go_and_that_is_audited(settings):
    settings.MCHAT_AUDIT_RETENTION_DAYS = 365
    now = timezone.now()
    old = [make_event(occurred_at=now - timedelta(days=400)) for _ in range(3)]
    young = make_event(occurred_at=now - timedelta(days=10))
    assert retention.audit_events_purge(batch_size=2) == 3
    assert not AuditEvent.objects.filter(pk__in=[e.pk for e in old]).exists()
    assert AuditEvent.objects.filter(pk=young.pk).exists()
    purge = AuditEvent.objects.get(action="audit_retention_purge")
    assert purge.changes["audit_events"] == 3


def test_celery_tasks_run_the_jobs(settings, people):
    settings.MCHAT_MESSAGE_RETENTION_DAYS = 1
    settings.MCHAT_AUDIT_RETENTION_DAYS = 1
    _private(people["alice"], people["bob"], "x", age_days=2)
    make_event(occurred_at=timezone.now() - timedelta(days=2))
    message_retention_run.delay()
    audit_retention_run.delay()
    assert not Message.objects.exists()
    assert (
        AuditEvent.objects.filter(action__in=["message_retention_purge", "audit_retention_purge"]).count()
        == 2
    )
