"""Reading the audit log: filters shared by the console, REST and `audit.list`, newest first,
paged by an opaque cursor (the last row's id: ids only grow, so a page never repeats or skips
a row when new ones arrive)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.translation import gettext as _

from audit.models import AuditEvent
from mchat.errors import BadRequest

FILTERS = ("actor", "actor_type", "action", "target_type", "target_id", "source", "since", "until", "q")
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
_NAME = re.compile(r"^[A-Za-z0-9_.:@+\-]{1,300}$")

# Columns of an export (CSV header, JSON lines keys), in this order.
EXPORT_FIELDS = (
    "id",
    "occurred_at",
    "actor_type",
    "actor_id",
    "actor_display",
    "action",
    "target_type",
    "target_id",
    "target_display",
    "changes",
    "source",
    "client_id",
    "source_user",
    "address",
    "seq_id",
)


@dataclass(frozen=True)
class AuditPage:
    events: list[AuditEvent]
    next_cursor: str | None


def _bad(field: str, prefix: str) -> BadRequest:
    return BadRequest(_("%(field)s 格式不正确") % {"field": f"{prefix}{field}"})


def _when(value: Any, field: str, prefix: str, *, end: bool):
    if not isinstance(value, str) or len(value) > 40:
        raise _bad(field, prefix)
    try:  # well-formed but impossible values (month 13) raise ValueError
        moment = parse_datetime(value) if "T" in value or " " in value else None
        day = parse_date(value) if moment is None and len(value) == 10 else None
    except ValueError:
        raise _bad(field, prefix) from None
    if moment is None:
        if day is None:
            raise _bad(field, prefix)
        moment = datetime.combine(day, datetime.min.time())
        if end:
            moment += timedelta(days=1)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_current_timezone())
    return moment


def audit_events(*, filters: Mapping[str, Any] | None = None, prefix: str = "") -> QuerySet[AuditEvent]:
    """Rows matching `filters`, newest first. Unknown filters or bad values: 400 naming the
    field (`prefix` + name, e.g. "filters.since"). Dates: ISO 8601 datetimes or YYYY-MM-DD
    (`until` a date: the whole day)."""
    filters = filters or {}
    if not isinstance(filters, Mapping):
        raise BadRequest(_("%(field)s 必须是对象") % {"field": prefix.rstrip(".") or "filters"})
    unknown = sorted(set(filters) - set(FILTERS))
    if unknown:
        raise BadRequest(_("%(field)s 不是可用的筛选条件") % {"field": f"{prefix}{unknown[0]}"})
    rows = AuditEvent.objects.all()
    for name in ("actor", "action", "target_type", "target_id"):
        value = filters.get(name)
        if value in (None, ""):
            continue
        if not isinstance(value, str) or not _NAME.match(value):
            raise _bad(name, prefix)
        rows = rows.filter(**{"actor_id" if name == "actor" else name: value})
    for name, choices in (("actor_type", AuditEvent.ActorType), ("source", AuditEvent.Source)):
        value = filters.get(name)
        if value in (None, ""):
            continue
        if value not in choices.values:
            raise BadRequest(
                _("%(field)s 必须是以下之一：%(values)s")
                % {"field": f"{prefix}{name}", "values": ", ".join(choices.values)}
            )
        rows = rows.filter(**{name: value})
    if filters.get("since") not in (None, ""):
        rows = rows.filter(occurred_at__gte=_when(filters["since"], "since", prefix, end=False))
    if filters.get("until") not in (None, ""):
        until = filters["until"]
        rows = rows.filter(occurred_at__lt=_when(until, "until", prefix, end=True))
    search = filters.get("q")
    if search not in (None, ""):
        if not isinstance(search, str) or len(search) > 200:
            raise _bad("q", prefix)
        rows = rows.filter(
            Q(actor_id__icontains=search)
            | Q(actor_display__icontains=search)
            | Q(target_id__icontains=search)
            | Q(target_display__icontains=search)
            | Q(action__icontains=search)
            | Q(client_id__icontains=search)
            | Q(source_user__icontains=search)
        )
    return rows.order_by("-id")


def audit_page(
    *,
    filters: Mapping[str, Any] | None = None,
    cursor: Any = None,
    limit: Any = None,
    prefix: str = "",
) -> AuditPage:
    """One page, newest first; `next_cursor` for the next (older) page, None at the end."""
    if limit in (None, ""):
        limit = DEFAULT_LIMIT
    if isinstance(limit, str) and limit.isdigit():
        limit = int(limit)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(_("limit 必须是 1 到 %(max)d 之间的整数") % {"max": MAX_LIMIT})
    rows = audit_events(filters=filters, prefix=prefix)
    if cursor not in (None, ""):
        if not isinstance(cursor, str) or not cursor.isdigit() or len(cursor) > 20:
            raise BadRequest(_("cursor 格式不正确"))
        rows = rows.filter(id__lt=int(cursor))
    events = list(rows[: limit + 1])
    more = len(events) > limit
    events = events[:limit]
    return AuditPage(events=events, next_cursor=str(events[-1].id) if more else None)


def event_fields(event: AuditEvent) -> dict[str, Any]:
    """One row as the wire and the exports show it."""
    return {
        "id": str(event.id),
        "occurred_at": _iso(event.occurred_at),
        "actor_type": event.actor_type,
        "actor_id": event.actor_id,
        "actor_display": event.actor_display,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "target_display": event.target_display,
        "changes": event.changes,
        "source": event.source,
        "client_id": event.client_id,
        "source_user": event.source_user,
        "address": event.address,
        "seq_id": event.seq_id,
    }


def export_rows(rows: QuerySet[AuditEvent], *, chunk_size: int = 2000) -> Iterator[tuple]:
    """Every matching row as a tuple in EXPORT_FIELDS order, fetched `chunk_size` at a time (a
    server-side cursor on PostgreSQL), so memory stays bounded whatever the count. `changes`
    stays the database's JSON text: an export copies it, it need not parse it."""
    columns = [name for name in EXPORT_FIELDS if name != "changes"]
    changes_at = EXPORT_FIELDS.index("changes")
    time_at = EXPORT_FIELDS.index("occurred_at")
    source = rows.annotate(changes_text=Cast("changes", TextField())).values_list(
        *columns[:changes_at], "changes_text", *columns[changes_at:]
    )
    for values in source.iterator(chunk_size=chunk_size):
        row = list(values)
        row[0] = str(row[0])
        row[time_at] = _iso(row[time_at])
        yield row


def _iso(moment) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
