"""Notices to many inboxes: spec 3.19 payloads, handed to Celery in batches after commit."""

from __future__ import annotations

from itertools import chain

import pytest
from django.db import transaction
from django.utils.dateparse import parse_datetime

from mchat.errors import BadRequest
from org import notifications, tasks
from org.models import Employee

pytestmark = pytest.mark.django_db


@pytest.fixture
def batches(monkeypatch, settings):
    """Each notice_deliver task call's recipients (the tasks still run, eagerly)."""
    settings.MCHAT_NOTICE_BATCH_SIZE = 500
    calls: list[list[str]] = []
    original = tasks.notice_deliver.delay

    def recording(employee_ids, notification):
        calls.append(list(employee_ids))
        return original(employee_ids, notification)

    monkeypatch.setattr(tasks.notice_deliver, "delay", recording)
    return calls


def people(count: int, *, active: bool = True) -> list[str]:
    start = Employee.objects.count()
    ids = [f"emp_n_{start + n:05d}" for n in range(count)]
    Employee.objects.bulk_create(
        [Employee(employee_id=i, name=i, mqtt_password_hash="x", is_active=active) for i in ids]
    )
    return ids


def test_every_active_employee_in_batches_of_500(batches, published, django_capture_on_commit_callbacks):
    everyone = people(1203)
    people(7, active=False)
    with django_capture_on_commit_callbacks(execute=True):
        notification = notifications.notice_to_inboxes(
            all_active=True, type="maintenance", title="系统维护", body="今晚 22:00 停机维护 30 分钟"
        )
    assert [len(b) for b in batches] == [500, 500, 203]
    assert sorted(chain.from_iterable(batches)) == sorted(everyone)

    assert set(notification) == {"notify_id", "type", "title", "body", "created_at"}
    assert notification["notify_id"].startswith("notify_")
    assert notification["body"] == {"text": "今晚 22:00 停机维护 30 分钟"}
    assert parse_datetime(notification["created_at"]) is not None
    delivered = [m for m in published.messages if m.topic.startswith("mchat/inbox/")]
    assert len(delivered) == 1203
    assert {m.topic for m in delivered} == {f"mchat/inbox/{i}" for i in everyone}
    assert all(m.payload == notification and m.qos == 1 and not m.retain for m in delivered)


def test_named_recipients_without_repeats(batches, published, django_capture_on_commit_callbacks, settings):
    settings.MCHAT_NOTICE_BATCH_SIZE = 2
    with django_capture_on_commit_callbacks(execute=True):
        notification = notifications.notice_to_inboxes(
            employee_ids=["emp_a_001", "emp_b_001", "emp_a_001", "emp_c_001"],
            type="policy_update",
            title="制度更新",
            body={"doc": "报销制度 v3"},
        )
    assert batches == [["emp_a_001", "emp_b_001"], ["emp_c_001"]]
    assert published.to("mchat/inbox/emp_c_001") == [notification]
    assert notification["body"] == {"doc": "报销制度 v3"}


def test_nothing_goes_out_before_commit_or_after_a_rollback(batches, published):
    people(3)
    with pytest.raises(RuntimeError), transaction.atomic():
        notifications.notice_to_inboxes(all_active=True, title="x", body="y")
        raise RuntimeError("rolled back")
    assert batches == [] and published.messages == []


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"title": "  "}, "title 不能为空"),
        ({"title": "t" * 201}, "title 不能为空且不超过 200 个字符"),
        ({"type": "Bad Type"}, "type 必须是"),
        ({"body": 7}, "body 必须是字符串或对象"),
    ],
)
def test_invalid_notices(fields, message):
    with pytest.raises(BadRequest) as error:
        notifications.notice_to_inboxes(all_active=True, **{"title": "t", "body": "b", **fields})
    assert message in str(error.value)


def test_recipients_must_be_named_one_way():
    with pytest.raises(ValueError):
        notifications.notice_to_inboxes(title="t", body="b")
    with pytest.raises(ValueError):
        notifications.notice_to_inboxes(title="t", body="b", employee_ids=["emp_a_001"], all_active=True)
