"""Organisation-wide notices (spec 3.19) on mchat/system/notify."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import transaction

from audit.context import SYSTEM_OPERATOR_ID, operator_employee
from audit.services import audit_record, created
from org import events
from org.models import Employee, SystemNotice
from org.services.checks import clean_text, full_clean, require_org_admin


@transaction.atomic
def system_notice_broadcast(
    *,
    actor: Employee | None,
    title: str,
    body: str | Mapping[str, Any],
    sent_by: str = "",
) -> SystemNotice:
    """A notice to every employee on mchat/system/notify (spec 3.19, type "system_notice",
    body {"text": ...}). `sent_by` records who published it (a staff user's name in the admin)."""
    require_org_admin(actor)
    title = clean_text(title, "title", required=True)
    text = body.get("text", "") if isinstance(body, Mapping) else body
    text = clean_text(text, "body", required=True)
    notice = SystemNotice(
        notify_id=events.new_notify_id(),
        title=title,
        text=text,
        sent_by=sent_by or (actor.employee_id if actor else ""),
    )
    full_clean(notice, exclude=["notify_id", "sent_by"])
    notice.save()
    audit_record(
        action="system_notice_broadcast",
        actor=actor,
        target=notice,
        changes=created({"title": notice.title, "text": notice.text, "sent_by": notice.sent_by}),
    )
    # Who published it, for the delivery: the employee, else the console user's employee, else
    # "system" (docs/protocol.md §12.3).
    operator = actor if actor is not None else operator_employee()
    events.system_notice_published(
        notice, operator_id=operator.employee_id if operator is not None else SYSTEM_OPERATOR_ID
    )
    return notice
