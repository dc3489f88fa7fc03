"""Writes and business rules of the organisation: employees, credentials, challenges."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from bridge.broker import hash_password
from mchat.errors import BadRequest, PermissionDenied, Unauthenticated
from org import events
from org.employee_ids import employee_id_stem, next_employee_id
from org.models import AuthChallenge, Device, Employee


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


def require_org_admin(actor: Employee | None) -> None:
    """None means a trusted caller (management command, admin console)."""
    if actor is not None and not actor.is_org_admin:
        raise PermissionDenied()


def employee_create(
    *,
    actor: Employee | None,
    name: str,
    is_ai_agent: bool = False,
    is_org_admin: bool = False,
    id_slug: str | None = None,
    **fields,
) -> IssuedCredential:
    require_org_admin(actor)
    name = (name or "").strip()
    if not name:
        raise BadRequest(_("name 不能为空"))
    password = _new_password()
    stem = employee_id_stem(name=name, is_ai_agent=is_ai_agent, slug=id_slug)
    for _attempt in range(5):
        try:
            with transaction.atomic():
                employee = Employee.objects.create(
                    employee_id=next_employee_id(stem),
                    name=name,
                    is_ai_agent=is_ai_agent,
                    is_org_admin=is_org_admin,
                    mqtt_password_hash=hash_password(password),
                    **fields,
                )
            break
        except IntegrityError:
            continue  # another writer took the same counter; take the next one
    else:
        raise BadRequest(_("无法生成唯一的员工编号，请重试"))
    events.broker_credentials_changed()
    return IssuedCredential(employee=employee, password=password)


def employee_credential_reset(*, actor: Employee | None, employee: Employee) -> IssuedCredential:
    """A new password; the old one stops working and live sessions are disconnected."""
    require_org_admin(actor)
    password = _new_password()
    employee.mqtt_password_hash = hash_password(password)
    employee.save(update_fields=["mqtt_password_hash", "updated_at"])
    events.credential_reset(employee.employee_id)
    return IssuedCredential(employee=employee, password=password)


def device_bind(*, actor: Employee, client_id: str, employee_id: str) -> Device:
    """auth.bind: confirm that the connection belongs to the claimed employee."""
    if employee_id != actor.employee_id:
        raise PermissionDenied(_("employee_id 与当前连接身份不一致"))
    device = client_id.rsplit("_", 1)[1]
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
