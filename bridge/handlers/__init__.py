"""Adapters from a request to one service call: validate input, call, shape `data`.

A handler is `def handler(request: Request) -> dict | None`; it raises mchat.errors for
anything but success and never publishes itself (services' events do, after commit).
"""

from __future__ import annotations

from collections.abc import Sequence
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


def validate_many(
    serializer_class: type[serializers.Serializer], requests: Sequence[Request]
) -> list[dict[str, Any] | BadRequest]:
    """`validate` for each request's payload: its fields, or the BadRequest it would raise.

    One serializer checks them all (building one per payload costs more than checking it);
    only when something is wrong is each payload checked on its own, for its own message.
    """
    serializer = serializer_class(data=[r.payload for r in requests], many=True)
    if serializer.is_valid():
        return list(serializer.validated_data)
    results: list[dict[str, Any] | BadRequest] = []
    for request in requests:
        try:
            results.append(validate(serializer_class, request.payload))
        except BadRequest as exc:
            results.append(exc)
    return results
