"""System notifications about groups (spec 3.19) to members' inboxes (DESIGN §5)."""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from messaging import events, ids, payloads
from messaging.models import Group


def group_notify(*, group: Group, employee_ids: Sequence[str], type: str, title: str, **body) -> dict:
    """Tell these employees about a change to `group`, after commit.

    Up to MCHAT_NOTIFY_BATCH_SIZE inboxes are published from the request; more are handed to
    Celery tasks of that size, so a large group never holds the bridge for a long fan-out
    (in eager mode the tasks still run in-process, after commit).
    """
    notification = payloads.system_notification(
        notify_id=ids.notification_id(),
        type=type,
        title=title,
        group=group,
        created_at=timezone.now(),
        **body,
    )
    recipients = list(dict.fromkeys(employee_ids))
    batch = max(1, settings.MCHAT_NOTIFY_BATCH_SIZE)
    if len(recipients) <= batch:
        events.system_notification(employee_ids=recipients, notification=notification)
        return notification

    def hand_over() -> None:
        from messaging import tasks

        for start in range(0, len(recipients), batch):
            tasks.system_notification_deliver.delay(recipients[start : start + batch], notification)

    transaction.on_commit(hand_over, robust=True)  # logged, never a 500 after the commit
    return notification


def system_notification_deliver(*, employee_ids: Sequence[str], notification: dict) -> None:
    """One batch of a large fan-out (run by a Celery task)."""
    events.system_notification(employee_ids=employee_ids, notification=notification)
