from rest_framework import serializers

from bridge.handlers import Request, validate
from mchat.wire import isoformat_z
from org import services


class BindInput(serializers.Serializer):
    employee_id = serializers.CharField(max_length=64)


def bind(request: Request) -> dict:
    fields = validate(BindInput, request.payload)
    services.device_bind(
        actor=request.employee, client_id=request.client_id, employee_id=fields["employee_id"]
    )
    return {}


def challenge(request: Request) -> dict:
    issued, token = services.challenge_issue(actor=request.employee)
    return {
        "challenge_id": issued.challenge_id,
        "token": token,
        "expires_at": isoformat_z(issued.expires_at),
    }
