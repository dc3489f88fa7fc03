"""Adapters from a request to one service call: validate input, call, shape `data`.

A handler is `def handler(request: Request) -> dict | None`; it raises mchat.errors for
anything but success and never publishes itself (services' events do, after commit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rest_framework import serializers

from mchat.errors import BadRequest, validation_message
from org.models import Employee


@dataclass(frozen=True)
class Request:
    client_id: str
    seq_id: str
    action: str
    payload: dict
    employee: Employee

    @property
    def device(self) -> str:
        return self.client_id.rsplit("_", 1)[1]


def validate(serializer_class: type[serializers.Serializer], payload: dict) -> dict[str, Any]:
    """Validated fields, or BadRequest naming the first offending field."""
    serializer = serializer_class(data=payload)
    if not serializer.is_valid():
        raise BadRequest(validation_message(serializer.errors))
    return serializer.validated_data
