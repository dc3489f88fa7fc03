"""Writing the audit log: one row per change, in the change's own transaction.

    audit_record(action="employee_update", actor=actor, target=employee,
                 changes=changes_between(before, snapshot(employee, FIELDS)))

Called by services (org, messaging) inside their `transaction.atomic`: if the row cannot be
written the change rolls back with it, so there is no change without its record. The source
(MQTT client id and seq_id, REST token owner, console user, address) comes from
audit.context, set by the entry point. Messages are content, not audit rows: sending one
records nothing.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.utils import timezone

from audit import context
from audit.models import AuditEvent

# Recorded as "changed", never with a value: credentials, token digests, password hashes.
SECRET_FIELDS = frozenset(
    {
        "password",
        "mqtt_password",
        "mqtt_password_hash",
        "web_password",
        "token",
        "token_hash",
        "key",
        "secret",
        "otp_secret",
    }
)
SECRET_MARK = "changed"


@dataclass(frozen=True)
class Target:
    """What a row is about, when it is not a model instance (or not one of those below)."""

    type: str
    id: str
    display: str = ""


# Model label -> (target type, attribute holding its public id).
_TARGETS: dict[str, tuple[str, str]] = {
    "org.employee": ("employee", "employee_id"),
    "org.department": ("department", "department_id"),
    "org.agentprofile": ("agent_profile", "employee.employee_id"),
    "org.systemnotice": ("system_notice", "notify_id"),
    "org.authchallenge": ("challenge", "challenge_id"),
    "messaging.group": ("group", "group_id"),
    "messaging.message": ("message", "msg_id"),
    "messaging.storedfile": ("file", "key"),
    # A REST token is named by its owner, never by its key.
    "authtoken.token": ("rest_token", "user.username"),
    "authtoken.tokenproxy": ("rest_token", "user.username"),
    "auth.user": ("user", "username"),
    "audit.legalhold": ("legal_hold", "pk"),
    "audit.groupretention": ("group_retention", "group.group_id"),
}

_SECRET_STR = frozenset({"authtoken.token", "authtoken.tokenproxy", "org.authchallenge"})


def _attr(instance: Any, path: str) -> Any:
    for name in path.split("."):
        instance = getattr(instance, name)
    return instance


def target_of(target: Any) -> Target:
    if isinstance(target, Target):
        return target
    if isinstance(target, models.Model):
        label = target._meta.label_lower
        kind, id_path = _TARGETS.get(label, (target._meta.model_name, "pk"))
        public_id = str(_attr(target, id_path))
        # A REST token's str() is its key: such targets are shown by their public id only.
        display = public_id if label in _SECRET_STR else str(target)[:200]
        return Target(kind, public_id, display)
    raise TypeError(f"audit target must be a model instance or audit.services.Target, not {target!r}")


def _actor_of(actor: Any, source: context.Source) -> tuple[str, str, str]:
    """(type, id, display): the employee a request runs as, else the console/REST user, else
    the system."""
    if actor is not None:
        return AuditEvent.ActorType.EMPLOYEE, actor.employee_id, actor.name[:200]
    employee = context.operator_employee(source)
    if employee is not None:
        return AuditEvent.ActorType.EMPLOYEE, employee.employee_id, employee.name[:200]
    user_name = source.user_name
    if user_name:
        return AuditEvent.ActorType.USER, user_name, user_name
    return AuditEvent.ActorType.SYSTEM, "", ""


def audit_record(
    *,
    action: str,
    actor: Any,
    target: Any,
    changes: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one row. `actor`: the employee the change runs as, or None for a trusted caller
    (the console/REST user, or the system, is then taken from the context). `changes`: see
    changes_between; plain values are made JSON-safe and secrets masked here too."""
    source = context.current()
    actor_type, actor_id, actor_display = _actor_of(actor, source)
    named = target_of(target)
    return AuditEvent.objects.create(
        occurred_at=timezone.now(),
        actor_type=actor_type,
        actor_id=actor_id,
        actor_display=actor_display,
        action=action,
        target_type=named.type,
        target_id=named.id[:300],
        target_display=named.display[:200],
        changes=_masked(changes or {}),
        source=source.kind,
        client_id=source.client_id[:130],
        source_user=source.user_name[:150],
        address=source.address[:64],
        seq_id=source.seq_id[:128],
    )


# --- before/after ----------------------------------------------------------------------------


def json_value(value: Any) -> Any:
    """A JSON-safe form of a field's value: model instances by their public id."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, models.Model):
        return target_of(value).id
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_value(v) for v in value]
    return str(value)


def snapshot(instance: models.Model, fields: Iterable[str]) -> dict[str, Any]:
    """The named fields' values (dotted paths allowed: "agent_profile.capabilities"), JSON-safe;
    a secret's value is never read into the snapshot, only a digest to tell a change."""
    values = {}
    for name in fields:
        try:
            value = _attr(instance, name)
        except (AttributeError, models.ObjectDoesNotExist):
            value = None
        if name.rsplit(".", 1)[-1] in SECRET_FIELDS:
            values[name] = hash(str(value))  # compared, never stored
        else:
            values[name] = json_value(value)
    return values


def changes_between(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """{"field": {"before": x, "after": y}} for the fields whose value differs; a secret as
    {"field": "changed"}. A field missing on one side counts as None there."""
    changes: dict[str, Any] = {}
    for name in dict.fromkeys([*before, *after]):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if name.rsplit(".", 1)[-1] in SECRET_FIELDS:
            changes[name] = SECRET_MARK
        else:
            changes[name] = {"before": json_value(old), "after": json_value(new)}
    return changes


def created(after: Mapping[str, Any]) -> dict[str, Any]:
    """The changes of a creation: every given field from None."""
    return changes_between({}, {k: v for k, v in after.items() if v not in (None, "", [], {})})


def _masked(changes: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in changes.items():
        name = str(name)
        if name.rsplit(".", 1)[-1] in SECRET_FIELDS:
            out[name] = SECRET_MARK
        else:
            out[name] = json_value(value)
    return out


# --- legal holds and per-group retention (set in the console) ------------------------------


def legal_hold_place(*, employee=None, group=None, reason: str, placed_by: str = ""):
    """Suspend message retention for what an employee wrote or could see, or for a group."""
    from django.db import transaction

    from audit.models import LegalHold
    from mchat.errors import BadRequest

    if (employee is None) == (group is None):
        raise BadRequest(_text("employee 与 group 须且只能指定一个"))
    reason = (reason or "").strip()
    if not reason:
        raise BadRequest(_text("reason 不能为空"))
    with transaction.atomic():
        hold = LegalHold.objects.create(
            employee=employee, group=group, reason=reason[:500], placed_by=placed_by
        )
        audit_record(
            action="legal_hold_place",
            actor=None,
            target=employee or group,
            changes={"legal_hold": {"before": None, "after": hold.pk}, "reason": reason[:500]},
        )
    return hold


def legal_hold_release(*, hold, released_by: str = ""):
    from django.db import transaction

    with transaction.atomic():
        if hold.released_at is not None:
            return hold
        hold.released_at = timezone.now()
        hold.released_by = released_by
        hold.save(update_fields=["released_at", "released_by"])
        audit_record(
            action="legal_hold_release",
            actor=None,
            target=hold.employee or hold.group,
            changes={"legal_hold": {"before": hold.pk, "after": None}},
        )
    return hold


def group_retention_set(*, group, keep_days: int | None, inherit: bool = False):
    """A group's own message retention (None: keep for ever); `inherit` removes the override,
    so MCHAT_MESSAGE_RETENTION_DAYS applies again."""
    from django.db import transaction

    from audit.models import GroupRetention

    with transaction.atomic():
        current = GroupRetention.objects.filter(group=group).first()
        before = "default" if current is None else current.keep_days
        if inherit:
            if current is not None:
                current.delete()
            after = "default"
        else:
            GroupRetention.objects.update_or_create(group=group, defaults={"keep_days": keep_days})
            after = keep_days
        if before != after:
            audit_record(
                action="group_retention_set",
                actor=None,
                target=group,
                changes={"keep_days": {"before": before, "after": after}},
            )


def _text(message: str) -> str:
    from django.utils.translation import gettext

    return gettext(message)
