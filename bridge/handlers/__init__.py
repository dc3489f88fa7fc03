"""Adapters from a request to one service call: validate input, call, shape `data`.

A handler is `def handler(request: Request) -> dict | None`; it raises mchat.errors for
anything but success and never publishes itself (services' events do, after commit).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rest_framework import serializers

from mchat.errors import BadRequest, validation_message
from mchat.wire import ClientId
from org.models import Employee


@dataclass(frozen=True)
class Request:
    client_id: str
    seq_id: str
    action: str
    payload: dict
    employee: Employee  # None only for a BatchExecutor's serve_known (bridge.routes)
    # The employees named by the route executor's payload_employees fields, by employee_id, as the
    # dispatcher found them: None for one that is unknown or no longer active.
    employees: Mapping[str, Employee | None] = field(default_factory=dict)

    @property
    def device(self) -> str:
        return ClientId.parse(self.client_id).device

    @property
    def employee_id(self) -> str:
        return ClientId.parse(self.client_id).employee_id


def validate(serializer_class: type[serializers.Serializer], payload: dict) -> dict[str, Any]:
    """Validated fields, or BadRequest naming the first offending field."""
    try:
        return _checker(serializer_class).run_validation(payload)
    except serializers.ValidationError as exc:
        # exc.detail is what serializer.errors would hold after is_valid().
        raise BadRequest(validation_message(exc.detail)) from None


def validate_many(
    serializer_class: type[serializers.Serializer], requests: Sequence[Request]
) -> list[dict[str, Any] | BadRequest]:
    """`validate` for each request's payload: its fields, or the BadRequest it would raise."""
    results: list[dict[str, Any] | BadRequest] = []
    for request in requests:
        try:
            results.append(validate(serializer_class, request.payload))
        except BadRequest as exc:
            results.append(exc)
    return results


_checkers = threading.local()


def _checker(serializer_class: type[serializers.Serializer]) -> serializers.Serializer:
    """One serializer of the class per thread, reused for every payload.

    A new serializer deep-copies its declared fields and binds them, which took more than
    checking a payload (a third of a lone msg.send_private's Python time). Only
    run_validation is called on it (what is_valid calls, and what a parent serializer calls
    on a nested one), which keeps nothing between calls.
    """
    by_class = getattr(_checkers, "by_class", None)
    if by_class is None:
        by_class = _checkers.by_class = {}
    checker = by_class.get(serializer_class)
    if checker is None:
        checker = by_class[serializer_class] = serializer_class()
    return checker
