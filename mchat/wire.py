"""The wire contract (spec 1.1, 2.x; DESIGN §2): topic names, ids, timestamps, the response
shape. Every layer speaks it; nothing here knows MQTT clients, Django models or the bridge.

Parsing a request's topic and envelope is the bridge's (bridge/protocol.py); what a topic,
an id or an answer looks like is here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# --- ids -------------------------------------------------------------------------------------

# Employee ids are MQTT usernames and topic levels: lowercase ASCII, digits and "_" only.
# A client id is "{employee_id}_{device}" with no "_" in device (DESIGN §2).
EMPLOYEE_ID = r"[a-z][a-z0-9_]{2,63}"
EMPLOYEE_ID_PATTERN = rf"^{EMPLOYEE_ID}$"
EMPLOYEE_ID_RE = re.compile(EMPLOYEE_ID_PATTERN)
DEVICE_PATTERN = r"[A-Za-z0-9-]{1,64}"
CLIENT_ID_RE = re.compile(rf"^({EMPLOYEE_ID})_({DEVICE_PATTERN})$")
SEQ_ID_RE = re.compile(r"^[!-\"$-*,-.0-~]{1,128}$")  # printable ASCII without "/", "+", "#"


@dataclass(frozen=True, slots=True)
class ClientId:
    """A connection's id, `{employee_id}_{device}`: the device is what follows the last "_"."""

    employee_id: str
    device: str

    @classmethod
    def parse(cls, client_id: str) -> ClientId:
        """Split without checking the shape (the broker's plugin already did, DESIGN §2)."""
        employee_id, _, device = client_id.rpartition("_")
        return cls(employee_id, device)

    @classmethod
    def of(cls, client_id: str) -> ClientId | None:
        """The parts of a well-formed client id; None for anything else."""
        return cls.parse(client_id) if CLIENT_ID_RE.match(client_id) else None

    def __str__(self) -> str:
        return f"{self.employee_id}_{self.device}"


# --- topics ----------------------------------------------------------------------------------

REQUEST_PREFIX = "mchat/msg/req/"
RESPONSE_PREFIX = "mchat/msg/resp/"
# "#" rather than "+/+": malformed topics (missing or extra levels) still reach the bridge and
# get a 400 instead of silence.
REQUEST_FILTER = "mchat/msg/req/#"
SHARED_GROUP = "mchat-bridge"
SYSTEM_NOTIFY_TOPIC = "mchat/system/notify"
STATUS_PREFIX = "mchat/status/"
STATUS_FILTER = "mchat/status/+"


def inbox_topic(employee_id: str) -> str:
    return f"mchat/inbox/{employee_id}"


def group_topic(group_id: str) -> str:
    return f"mchat/group/{group_id}"


def status_topic(employee_id: str) -> str:
    return f"{STATUS_PREFIX}{employee_id}"


def profile_topic(employee_id: str) -> str:
    return f"mchat/profile/{employee_id}"


def response_topic(client_id: str, seq_id: str) -> str:
    return f"{RESPONSE_PREFIX}{client_id}/{seq_id}"


# --- values ----------------------------------------------------------------------------------


def isoformat_z(moment: datetime) -> str:
    """Spec timestamps: UTC, milliseconds, "Z" (2025-02-03T10:00:00.000Z)."""
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    if utc.year < 1000:  # strftime's year is not zero-padded there: the old output, kept
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    # isoformat truncates to milliseconds as the old `microsecond // 1000` did, 3x faster.
    return utc.isoformat(timespec="milliseconds") + "Z"


def encode(payload: Any) -> bytes:
    # "replace": JSON may smuggle in lone surrogates ("\ud800"), which UTF-8 cannot carry;
    # an answer that echoes one must still go out.
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")


def response_payload(seq_id: str, code: int, message: str, data: Any) -> dict:
    """Every answer's shape (spec 1.2): {seq_id, code, message, data}."""
    return {"seq_id": seq_id, "code": code, "message": message, "data": data}
