"""Where and as whom a client connects: the spec 3.3 `mqtt_connection` object."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def utc_now() -> str:
    """Spec timestamps: UTC with milliseconds and "Z"."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class ConnectionInfo:
    """Spec 3.3 `mqtt_connection`: where and as whom to connect."""

    broker_host: str
    broker_port: int
    use_tls: bool
    mqtt_username: str
    mqtt_password: str

    @classmethod
    def from_mapping(cls, value: Mapping[str, Any]) -> ConnectionInfo:
        """Accepts the `mqtt_connection` object itself, or anything holding it: an
        employee.create response or its `data`, or {"employee_id": ..., "mqtt_connection": ...}."""
        found = _find_connection(value)
        if found is None:
            raise ValueError("no mqtt_connection (broker_host, mqtt_username, mqtt_password) found")
        try:
            return cls(
                broker_host=str(found["broker_host"]),
                broker_port=int(found.get("broker_port") or (8883 if found.get("use_tls") else 1883)),
                use_tls=bool(found.get("use_tls", False)),
                mqtt_username=str(found["mqtt_username"]),
                mqtt_password=str(found["mqtt_password"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid mqtt_connection: {exc}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> ConnectionInfo:
        return cls.from_mapping(json.loads(Path(path).read_text(encoding="utf-8")))

    @property
    def employee_id(self) -> str:
        return self.mqtt_username


def _find_connection(value: Any) -> Mapping[str, Any] | None:
    if not isinstance(value, Mapping):
        return None
    if "mqtt_username" in value and "broker_host" in value:
        return value
    for key in ("mqtt_connection", "data"):
        found = _find_connection(value.get(key))
        if found is not None:
            return found
    return None
