"""Retention: old messages (with their files) and old audit rows deleted by periodic jobs.

- Messages: older than MCHAT_MESSAGE_RETENTION_DAYS (unset: kept for ever), or than their
  group's own GroupRetention.keep_days (None there: that group's are kept for ever).
- A legal hold suspends it: on a group, for its conversation; on an employee, for everything
  the employee sent and every conversation the employee is in (private pairs, groups it is a
  member of now).
- Audit rows: older than MCHAT_AUDIT_RETENTION_DAYS (default 365).

Each job deletes in batches of `batch_size` rows, one short transaction per batch, and at most
`max_batches` per run, so a run never holds locks for long; the next run continues. Each run
that deleted anything is itself audited, with counts only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit import context
from audit.models import AuditEvent, GroupRetention, LegalHold
from audit.services import Target, audit_record

logger = logging.getLogger("mchat.audit.retention")

DEFAULT_AUDIT_RETENTION_DAYS = 365


@dataclass(frozen=True)
class MessagePurge:
    messages: int
    files: int
    conversations: int


def _days(name: str, default: int | None) -> int | None:
    value = getattr(settings, name, default)
    return None if value in (None, "", 0) else int(value)


def _expiring_messages(now: datetime):
    """Messages past their retention, holds not yet applied; None when nothing expires."""
    from messaging.models import Message

    default_days = _days("MCHAT_MESSAGE_RETENTION_DAYS", None)
    overrides: dict[int | None, list[int]] = {}
    for group_pk, keep_days in GroupRetention.objects.values_list("group_id", "keep_days"):
        overrides.setdefault(keep_days or None, []).append(group_pk)
    overridden = [pk for pks in overrides.values() for pk in pks]
    expiring = Q()
    if default_days:
        rule = Q(sent_at__lt=now - timedelta(days=default_days))
        if overridden:
            rule &= ~Q(conversation__group_id__in=overridden)
        expiring |= rule
    for keep_days, group_pks in overrides.items():
        if keep_days:
            expiring |= Q(conversation__group_id__in=group_pks, sent_at__lt=now - timedelta(days=keep_days))
    if not expiring:
        return None
    return Message.objects.filter(expiring)


def _held(messages):
    """Remove what a legal hold protects."""
    from messaging.models import Conversation, GroupMember

    holds = LegalHold.objects.filter(released_at__isnull=True)
    employees = list(holds.filter(employee__isnull=False).values_list("employee_id", flat=True))
    groups = list(holds.filter(group__isnull=False).values_list("group_id", flat=True))
    if not employees and not groups:
        return messages
    seen_groups = GroupMember.objects.filter(employee_id__in=employees).values("group_id")
    held_conversations = Conversation.objects.filter(
        Q(group_id__in=groups)
        | Q(group_id__in=seen_groups)
        | Q(employee_low_id__in=employees)
        | Q(employee_high_id__in=employees)
    ).values("pk")
    return messages.exclude(conversation_id__in=held_conversations).exclude(sender_id__in=employees)


def messages_purge(
    *, now: datetime | None = None, batch_size: int = 500, max_batches: int = 20
) -> MessagePurge:
    """Delete expired messages not under a legal hold, and the files only they referenced."""
    from messaging import storage
    from messaging.models import Message, StoredFile

    now = now or timezone.now()
    expiring = _expiring_messages(now)
    if expiring is None:
        return MessagePurge(0, 0, 0)
    candidates = _held(expiring).order_by("pk")
    deleted = files = 0
    conversations: set[int] = set()
    with _system_source():
        for _batch in range(max_batches):
            with transaction.atomic():
                batch = list(candidates.values_list("pk", "conversation_id", "file_key")[:batch_size])
                if not batch:
                    break
                Message.objects.filter(pk__in=[pk for pk, _c, _k in batch]).delete()
                keys = {key for _pk, _c, key in batch if key}
                still_used = set(
                    # exclude(""): the partial index message_file_key, also to a prepared plan
                    Message.objects.filter(file_key__in=keys)
                    .exclude(file_key="")
                    .values_list("file_key", flat=True)
                )
                orphans = list(StoredFile.objects.filter(key__in=keys - still_used))
                StoredFile.objects.filter(pk__in=[f.pk for f in orphans]).delete()
            deleted += len(batch)
            conversations.update(c for _pk, c, _k in batch)
            files += len(orphans)
            backend = storage.current() if orphans else None
            for stored in orphans:
                try:
                    backend.delete(stored.key)
                except Exception:  # the row is gone; stray bytes are logged, not fatal
                    logger.exception("retention: could not delete the bytes of %s", stored.key)
            if len(batch) < batch_size:
                break
        result = MessagePurge(deleted, files, len(conversations))
        if deleted:
            audit_record(
                action="message_retention_purge",
                actor=None,
                target=Target("messages", "", ""),
                changes={
                    "messages": result.messages,
                    "files": result.files,
                    "conversations": result.conversations,
                },
            )
    return result


def audit_events_purge(*, now: datetime | None = None, batch_size: int = 2000, max_batches: int = 50) -> int:
    """Delete audit rows older than MCHAT_AUDIT_RETENTION_DAYS; returns how many."""
    days = _days("MCHAT_AUDIT_RETENTION_DAYS", DEFAULT_AUDIT_RETENTION_DAYS)
    if not days:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    deleted = 0
    with _system_source():
        for _batch in range(max_batches):
            with transaction.atomic():
                pks = list(
                    AuditEvent.objects.filter(occurred_at__lt=cutoff)
                    .order_by("pk")
                    .values_list("pk", flat=True)[:batch_size]
                )
                if pks:
                    AuditEvent.objects.filter(pk__in=pks)._retention_delete()
            deleted += len(pks)
            if len(pks) < batch_size:
                break
        if deleted:
            audit_record(
                action="audit_retention_purge",
                actor=None,
                target=Target("audit_events", "", ""),
                changes={"audit_events": deleted, "before": cutoff.isoformat()},
            )
    return deleted


def _system_source():
    """A job started by a scheduler is the system's; one started by a command keeps its source."""
    if context.is_set():
        return context.source(context.current().kind)
    return context.source("system")
