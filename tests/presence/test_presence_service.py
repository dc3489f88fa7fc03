"""org.presence: devices per employee, the aggregate, its republication, last_seen; the
bridge's decoding of status messages."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from bridge import status as bridge_status
from mchat.wire import isoformat_z
from org import presence, services
from org.models import DevicePresence, Employee
from tests.factories import EmployeeFactory

pytestmark = pytest.mark.django_db

TOPIC = "mchat/status/emp_pat_001"


@pytest.fixture
def pat(db):
    return EmployeeFactory(employee_id="emp_pat_001", name="Pat")


def received(django_capture_on_commit_callbacks, **report):
    with django_capture_on_commit_callbacks(execute=True):
        return presence.presence_status_received(employee_id="emp_pat_001", **report)


def online(client_id, **extra):
    return {"status": "online", "client_id": client_id, **extra}


def test_one_device_online_then_offline(pat, published, django_capture_on_commit_callbacks):
    came = received(django_capture_on_commit_callbacks, **online("emp_pat_001_phone", device="ios"))
    assert (came.status, came.online_devices, came.republished) == ("online", 1, False)
    row = DevicePresence.objects.get(client_id="emp_pat_001_phone")
    assert (row.online, row.device, row.employee_id) == (True, "ios", pat.pk)

    went = received(django_capture_on_commit_callbacks, status="offline", client_id="emp_pat_001_phone")
    assert (went.status, went.online_devices, went.republished) == ("offline", 0, False)
    # What the device said is already the truth: nothing is republished either time.
    assert published.to(TOPIC) == []
    pat.refresh_from_db()
    assert pat.last_seen_at is not None and went.last_seen == pat.last_seen_at
    assert DevicePresence.objects.get(client_id="emp_pat_001_phone").last_seen_at == pat.last_seen_at


def test_a_will_while_another_device_is_online_is_corrected(
    pat, published, django_capture_on_commit_callbacks
):
    received(django_capture_on_commit_callbacks, **online("emp_pat_001_phone"))
    received(django_capture_on_commit_callbacks, **online("emp_pat_001_laptop"))
    assert published.to(TOPIC) == []

    went = received(django_capture_on_commit_callbacks, status="offline", client_id="emp_pat_001_phone")
    assert (went.status, went.online_devices, went.republished) == ("online", 1, True)
    [message] = [m for m in published.messages if m.topic == TOPIC]
    assert message.retain and message.qos == 1
    assert message.payload["status"] == "online"
    assert message.payload["source"] == "server"
    assert message.payload["online_devices"] == 1
    assert "updated_at" in message.payload
    pat.refresh_from_db()
    assert pat.last_seen_at is None  # the employee never went offline

    published.clear()
    last = received(django_capture_on_commit_callbacks, status="offline", client_id="emp_pat_001_laptop")
    assert (last.status, last.republished) == ("offline", False)
    assert published.to(TOPIC) == []
    pat.refresh_from_db()
    assert pat.last_seen_at == last.last_seen


def test_server_payloads_change_no_device_and_converge(pat, published, django_capture_on_commit_callbacks):
    received(django_capture_on_commit_callbacks, **online("emp_pat_001_phone"))
    # The bridge's own republication coming back, agreeing: nothing more.
    agree = received(django_capture_on_commit_callbacks, status="online", from_server=True)
    assert (agree.status, agree.republished) == ("online", False)
    # A stale one (it raced with a later Will): corrected once.
    stale = received(django_capture_on_commit_callbacks, status="offline", from_server=True)
    assert (stale.status, stale.republished) == ("online", True)
    assert [p["status"] for p in published.to(TOPIC)] == ["online"]
    assert DevicePresence.objects.filter(online=True).count() == 1
    pat.refresh_from_db()
    assert pat.last_seen_at is None


def test_an_offline_payload_without_client_id_takes_every_device_offline(
    pat, published, django_capture_on_commit_callbacks
):
    received(django_capture_on_commit_callbacks, **online("emp_pat_001_phone"))
    received(django_capture_on_commit_callbacks, **online("emp_pat_001_laptop"))
    went = received(django_capture_on_commit_callbacks, status="offline")
    assert (went.status, went.online_devices, went.republished) == ("offline", 0, False)
    assert not DevicePresence.objects.filter(online=True).exists()


def test_another_employees_client_id_and_unknown_employees_are_ignored(
    pat, published, django_capture_on_commit_callbacks
):
    assert received(django_capture_on_commit_callbacks, **online("emp_other_001_phone")) is None
    assert presence.presence_status_received(employee_id="emp_nobody_001", status="online") is None
    inactive = EmployeeFactory(employee_id="emp_gone_001", is_active=False)
    assert presence.presence_status_received(employee_id=inactive.employee_id, status="online") is None
    assert not DevicePresence.objects.exists()


def test_a_deactivated_employees_wills_still_take_its_devices_offline(
    pat, published, django_capture_on_commit_callbacks
):
    received(django_capture_on_commit_callbacks, **online("emp_pat_001_phone"))
    Employee.objects.filter(pk=pat.pk).update(is_active=False)  # the kick fires the Will
    went = received(django_capture_on_commit_callbacks, status="offline", client_id="emp_pat_001_phone")
    assert (went.status, went.online_devices) == ("offline", 0)
    assert not DevicePresence.objects.filter(online=True).exists()


def test_redelivery_is_harmless(pat, published, django_capture_on_commit_callbacks):
    first = received(django_capture_on_commit_callbacks, **online("emp_pat_001_phone"))
    since = DevicePresence.objects.get().online_since
    again = received(django_capture_on_commit_callbacks, **online("emp_pat_001_phone"))
    assert (first.online_devices, again.online_devices) == (1, 1)
    assert DevicePresence.objects.get().online_since == since


def test_presence_of(pat, django_capture_on_commit_callbacks):
    other = EmployeeFactory(employee_id="emp_quinn_001")
    never = EmployeeFactory(employee_id="emp_rae_001")
    received(django_capture_on_commit_callbacks, **online("emp_pat_001_phone"))
    seen = timezone.now() - timedelta(hours=2)
    Employee.objects.filter(pk=other.pk).update(last_seen_at=seen)

    result = presence.presence_of([pat.employee_id, other.employee_id, never.employee_id, "emp_missing_001"])
    assert result == {
        "emp_pat_001": {"status": "online", "last_seen": None, "online_devices": 1},
        "emp_quinn_001": {
            "status": "offline",
            "last_seen": isoformat_z(seen),
            "online_devices": 0,
        },
        "emp_rae_001": {"status": "offline", "last_seen": None, "online_devices": 0},
    }
    assert set(presence.presence_of()) == {"emp_pat_001", "emp_quinn_001", "emp_rae_001"}
    assert presence.presence_of([]) == {}


def test_presence_of_many_ids_in_chunks(db):
    ids = [f"emp_bulk_{n:04d}" for n in range(2000)]
    Employee.objects.bulk_create([Employee(employee_id=i, name=i, mqtt_password_hash="x") for i in ids])
    assert len(presence.presence_of(ids)) == 2000


# --- decoding on the bridge -----------------------------------------------------------------


def raw(payload) -> bytes:
    return json.dumps(payload).encode()


def test_decode_device_and_server_payloads():
    report = bridge_status.decode_status(
        TOPIC,
        raw({"status": "online", "updated_at": "x", "device": "web", "client_id": "emp_pat_001_device1"}),
    )
    assert report == bridge_status.StatusReport("emp_pat_001", "online", "emp_pat_001_device1", "web", False)
    server = bridge_status.decode_status(
        TOPIC, raw({"status": "online", "source": "server", "client_id": "x"})
    )
    assert server == bridge_status.StatusReport("emp_pat_001", "online", None, "", True)
    will = bridge_status.decode_status(TOPIC, raw({"status": "offline", "updated_at": "x"}))
    assert will == bridge_status.StatusReport("emp_pat_001", "offline", None, "", False)


@pytest.mark.parametrize(
    "topic, payload",
    [
        (TOPIC, b""),  # a retained message being cleared
        (TOPIC, b"\xff"),
        (TOPIC, b"[]"),
        (TOPIC, raw({"status": "away"})),
        (TOPIC, raw({"status": "online", "client_id": "emp_other_001_phone"})),
        (TOPIC, raw({"status": "online", "client_id": 7})),
        (TOPIC, raw({"status": "online", "client_id": "emp_pat_001"})),  # no device part
        ("mchat/status/Bad-Id", raw({"status": "online"})),
        ("mchat/status/emp_pat_001/x", raw({"status": "online"})),
        (TOPIC, raw({"status": "online", "pad": "x" * 5000})),
    ],
)
def test_decode_ignores_what_cannot_be_applied(topic, payload):
    assert bridge_status.decode_status(topic, payload) is None


def test_handle_status_message_never_raises(pat, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("database gone")

    monkeypatch.setattr(presence, "presence_status_received", broken)
    assert (
        bridge_status.handle_status_message(TOPIC, raw({"status": "online", "client_id": "emp_pat_001_a"}))
        is None
    )


def test_deactivation_says_offline_for_the_wills_mosquitto_does_not_send(
    pat, published, django_capture_on_commit_callbacks
):
    received(django_capture_on_commit_callbacks, **online("emp_pat_001_phone"))
    received(django_capture_on_commit_callbacks, **online("emp_pat_001_laptop"))
    with django_capture_on_commit_callbacks(execute=True):
        services.employee_update(actor=None, employee_id="emp_pat_001", updates={"is_active": False})
    [said] = [m for m in published.messages if m.topic == TOPIC]
    assert said.retain and said.payload["status"] == "offline" and said.payload["source"] == "server"
    assert not DevicePresence.objects.filter(online=True).exists()
    assert presence.presence_of(["emp_pat_001"])["emp_pat_001"]["status"] == "offline"
