"""mchat/status/+ as the bridge receives it: decode, then org.presence decides.

Status messages are not requests: nobody is answered, nothing is recorded for idempotency
(every payload is applied as the latest word of its device, so a redelivery changes nothing).
Every bridge process subscribes without sharing, so each sees one employee's status messages
in the broker's order; what they write is idempotent and their republications converge
(org.presence). Malformed payloads are ignored: they can only come from the employee itself.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from django.db import DatabaseError, connection

from mchat.wire import EMPLOYEE_ID_RE, STATUS_PREFIX
from org import presence

logger = logging.getLogger("mchat.bridge.status")

_MAX_PAYLOAD = 4096


@dataclass(frozen=True)
class StatusReport:
    employee_id: str
    status: str
    client_id: str | None
    device: str
    from_server: bool


def is_status_topic(topic: str) -> bool:
    return topic.startswith(STATUS_PREFIX)


def decode_status(topic: str, raw: bytes) -> StatusReport | None:
    """The report a status message carries, or None when there is nothing to apply
    (an empty payload clears a retained message; anything malformed is dropped)."""
    employee_id = topic[len(STATUS_PREFIX) :]
    if not is_status_topic(topic) or not EMPLOYEE_ID_RE.match(employee_id):
        return None
    if not raw or len(raw) > _MAX_PAYLOAD:
        return None
    try:
        payload = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(payload, dict) or payload.get("status") not in presence.STATUSES:
        return None
    from_server = payload.get("source") == presence.SERVER_SOURCE
    client_id = payload.get("client_id")
    if from_server:
        client_id = None
    elif client_id is not None and (
        not isinstance(client_id, str) or not presence.client_id_of_employee(client_id, employee_id)
    ):
        return None
    device = payload.get("device")
    return StatusReport(
        employee_id=employee_id,
        status=payload["status"],
        client_id=client_id,
        device=device[:64] if isinstance(device, str) else "",
        from_server=from_server,
    )


def handle_status_message(topic: str, raw: bytes) -> presence.Presence | None:
    """Never raises: the bridge's loop must survive any input."""
    try:
        report = decode_status(topic, raw)
        if report is None:
            logger.debug("ignored a status message on %r", topic[:200])
            return None
        return presence.presence_status_received(
            employee_id=report.employee_id,
            status=report.status,
            client_id=report.client_id,
            device=report.device,
            from_server=report.from_server,
        )
    except Exception:  # logged; the loop goes on and the next status message may succeed
        logger.exception("status message on %r failed", topic[:200])
        try:
            connection.close_if_unusable_or_obsolete()
        except DatabaseError:
            pass
        return None
