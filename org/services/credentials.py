"""Credentials and sessions: the MQTT password (issued once, stored hashed), device binding
(auth.bind) and the one-time challenges of sensitive actions (auth.challenge)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from audit.services import SECRET_MARK, audit_record
from mchat.errors import PermissionDenied, Unauthenticated
from mchat.wire import ClientId
from org import events
from org.credentials import hash_password
from org.models import AuthChallenge, Device, Employee
from org.services.checks import require_org_admin


@dataclass(frozen=True)
class IssuedCredential:
    employee: Employee
    password: str  # shown once; only its hash is stored

    def mqtt_connection(self) -> dict:
        """The spec 3.3 `mqtt_connection` object."""
        return {
            "broker_host": settings.MCHAT_PUBLIC_MQTT_HOST,
            "broker_port": settings.MCHAT_PUBLIC_MQTT_PORT,
            "use_tls": settings.MCHAT_PUBLIC_MQTT_TLS,
            "mqtt_username": self.employee.employee_id,
            "mqtt_password": self.password,
        }


def _new_password() -> str:
    return secrets.token_urlsafe(24)


@transaction.atomic
def employee_credential_reset(*, actor: Employee | None, employee: Employee) -> IssuedCredential:
    """A new password; the old one stops working and live sessions are disconnected."""
    require_org_admin(actor)
    password = _new_password()
    employee.mqtt_password_hash = hash_password(password)
    employee.save(update_fields=["mqtt_password_hash", "updated_at"])
    audit_record(
        action="employee_credential_reset",
        actor=actor,
        target=employee,
        changes={"mqtt_password_hash": SECRET_MARK},
    )
    events.credential_reset(employee.employee_id)
    return IssuedCredential(employee=employee, password=password)


def device_bind(*, actor: Employee, client_id: str, employee_id: str) -> Device:
    """auth.bind: confirm that the connection belongs to the claimed employee."""
    if employee_id != actor.employee_id:
        raise PermissionDenied(_("employee_id 与当前连接身份不一致"))
    device = ClientId.parse(client_id).device
    bound, _created = Device.objects.update_or_create(
        client_id=client_id, defaults={"employee": actor, "device": device}
    )
    return bound


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def challenge_issue(*, actor: Employee) -> tuple[AuthChallenge, str]:
    token = secrets.token_urlsafe(32)
    challenge = AuthChallenge.objects.create(
        challenge_id=f"ch_{secrets.token_hex(10)}",
        employee=actor,
        token_hash=_token_digest(token),
        expires_at=timezone.now() + timedelta(seconds=settings.MCHAT_CHALLENGE_TTL_SECONDS),
    )
    return challenge, token


def challenge_consume(*, actor: Employee, challenge_id, token) -> None:
    """Spend a challenge for a sensitive action: one-time, bound to actor, unexpired."""
    if not isinstance(challenge_id, str) or not isinstance(token, str) or not challenge_id:
        raise Unauthenticated(_("该操作需要有效的二次验证（challenge_id 与 token）"))
    used = AuthChallenge.objects.filter(
        challenge_id=challenge_id,
        employee=actor,
        used_at__isnull=True,
        expires_at__gt=timezone.now(),
    )
    challenge = used.select_for_update().first()
    if challenge is None or not hmac.compare_digest(challenge.token_hash, _token_digest(token)):
        raise Unauthenticated(_("二次验证无效、已过期或已使用"))
    challenge.used_at = timezone.now()
    challenge.save(update_fields=["used_at"])
    audit_record(action="challenge_consume", actor=actor, target=challenge)
