"""Presence (spec 2.4, 3.17): which devices of an employee are online, and so the employee.

Clients publish a retained `{"status": "online", "client_id": ..., "device": ...}` on
mchat/status/{employee_id} when they connect, and leave a Will `{"status": "offline",
"client_id": ...}` that the broker publishes there when the connection drops. The bridge hands
both to `presence_status_received`. An employee is online while any of its devices is.

The topic holds whatever was published last, so when one device's Will says "offline" while
another device is still online, the aggregate is republished (retained, `"source": "server"`):
subscribers see the Will and then the correction, and a later subscriber only the correction.

The bridge also receives its own republications (and those of other bridge processes). A
server payload changes no device; it is answered only when it no longer matches the aggregate,
so the exchange stops at once when they agree, and a republication that raced with a later Will
is corrected by the next one. Devices are never trusted with `"source": "server"`-only effects:
a payload on an employee's topic can only be the employee's own (broker ACL
`pattern write mchat/status/%u`) or the bridge's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from mchat.outbox import publish_json_on_commit
from mchat.wire import ClientId, isoformat_z, status_topic
from org.models import DevicePresence, Employee

ONLINE = "online"
OFFLINE = "offline"
STATUSES = (ONLINE, OFFLINE)
SERVER_SOURCE = "server"
# Ids per query of presence_of: well under SQLite's limit on bound parameters.
_CHUNK = 900


@dataclass(frozen=True)
class Presence:
    employee_id: str
    status: str  # ONLINE or OFFLINE
    online_devices: int
    last_seen: datetime | None  # when the employee was last seen going offline
    republished: bool  # the aggregate was (re)published on the status topic


def presence_status_received(
    *,
    employee_id: str,
    status: str,
    client_id: str | None = None,
    device: str = "",
    from_server: bool = False,
    at: datetime | None = None,
) -> Presence | None:
    """Apply one payload seen on mchat/status/{employee_id}; None for an unknown employee (or
    an inactive one coming online).

    Device payloads: `client_id` (which must be one of this employee's, `{employee_id}_{device}`)
    goes online or offline. An offline payload without `client_id` (an older client's Will)
    says the employee as a whole is offline: every device is marked offline. An online payload
    without it counts as one unnamed device.
    Server payloads (`from_server`) change nothing; they are only compared with the aggregate.
    Times are the server's: a Will's own `updated_at` is the time its connection was made.
    """
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}")
    if client_id is not None and not client_id_of_employee(client_id, employee_id):
        return None  # another employee's device: not this topic's business
    at = at or timezone.now()
    with transaction.atomic():
        # The employee row serialises concurrent reports (several bridge processes).
        employee = (
            # NO KEY: a message insert takes KEY SHARE on its sender's row (docs/architecture.md).
            Employee.objects.select_for_update(no_key=True)
            .filter(employee_id=employee_id)
            .only("id", "employee_id", "is_active", "last_seen_at")
            .first()
        )
        # A deactivated employee's sessions are kicked: their Wills still take devices offline.
        if employee is None or (not employee.is_active and status == ONLINE):
            return None
        devices = DevicePresence.objects.filter(employee=employee)
        was_online = devices.filter(online=True).count()
        if not from_server:
            _device_report(employee, status, client_id=client_id, device=device, at=at)
        online_devices = devices.filter(online=True).count() if not from_server else was_online
        if was_online and not online_devices:
            employee.last_seen_at = at
            employee.save(update_fields=["last_seen_at"])
        aggregate = ONLINE if online_devices else OFFLINE
        republish = aggregate != status
        if republish:
            publish_json_on_commit(
                status_topic(employee_id),
                _aggregate_payload(aggregate, online_devices, employee.last_seen_at, at),
                qos=1,
                retain=True,
            )
    return Presence(employee_id, aggregate, online_devices, employee.last_seen_at, republish)


def presence_signed_off(*, employee: Employee, at: datetime | None = None) -> None:
    """Every device of a deactivated employee is offline now. Mosquitto drops their sessions
    on reload without publishing their Wills, so the server says it (retained, after commit)."""
    at = at or timezone.now()
    went_offline = DevicePresence.objects.filter(employee=employee, online=True).update(
        online=False, online_since=None, last_seen_at=at, updated_at=at
    )
    if went_offline:
        employee.last_seen_at = at
        employee.save(update_fields=["last_seen_at"])
    publish_json_on_commit(
        status_topic(employee.employee_id),
        _aggregate_payload(OFFLINE, 0, employee.last_seen_at, at),
        qos=1,
        retain=True,
    )


def presence_of(employee_ids: Iterable[str] | None = None) -> dict[str, dict]:
    """{employee_id: {"status", "last_seen", "online_devices"}} for org.tree, agent lists...

    `employee_ids` None: every active employee. Unknown ids are left out. `last_seen` (spec
    timestamp or None) is when the employee last went offline; it is None while online.
    """
    employees = (
        Employee.objects.all() if employee_ids is not None else Employee.objects.filter(is_active=True)
    )
    employees = employees.annotate(
        online_devices=Count("device_presences", filter=Q(device_presences__online=True))
    ).values_list("employee_id", "last_seen_at", "online_devices")
    if employee_ids is None:
        rows = list(employees.order_by("employee_id"))
    else:
        wanted = list(dict.fromkeys(employee_ids))
        rows = []
        for start in range(0, len(wanted), _CHUNK):
            rows += employees.filter(employee_id__in=wanted[start : start + _CHUNK])
    return {
        employee_id: {
            "status": ONLINE if online else OFFLINE,
            "last_seen": None if online or last_seen is None else isoformat_z(last_seen),
            "online_devices": online,
        }
        for employee_id, last_seen, online in rows
    }


def client_id_of_employee(client_id: str, employee_id: str) -> bool:
    """`client_id` is a connection id of this employee ({employee_id}_{device}, DESIGN §2)."""
    parts = ClientId.of(client_id)
    return parts is not None and parts.employee_id == employee_id


def _device_report(
    employee: Employee, status: str, *, client_id: str | None, device: str, at: datetime
) -> None:
    if status == OFFLINE and client_id is None:
        DevicePresence.objects.filter(employee=employee, online=True).update(
            online=False, online_since=None, last_seen_at=at, updated_at=at
        )
        return
    key = client_id or employee.employee_id  # an online payload that names no device
    current = DevicePresence.objects.filter(client_id=key).first()
    if current is None:
        current = DevicePresence(employee=employee, client_id=key)
    if status == ONLINE:
        if not current.online:
            current.online_since = at
        current.online = True
        current.device = (device or current.device)[:64]
    else:
        current.online = False
        current.online_since = None
    current.last_seen_at = at
    current.updated_at = at
    current.save()


def _aggregate_payload(status: str, online_devices: int, last_seen: datetime | None, at: datetime) -> dict:
    payload = {
        "status": status,
        "updated_at": isoformat_z(at),
        "source": SERVER_SOURCE,
        "online_devices": online_devices,
    }
    if status == OFFLINE and last_seen is not None:
        payload["last_seen"] = isoformat_z(last_seen)
    return payload
