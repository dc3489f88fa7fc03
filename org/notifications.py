"""Personal system notifications to many inboxes (spec 3.19), fanned out by Celery.

Organisation-wide news goes to mchat/system/notify (org.services.system_notice_broadcast):
one publish. When every employee must also find a notice in its own inbox (persistent
sessions queue it for those offline), that is one publish per employee, so it never runs on
the request path: after commit the work is handed to Celery in batches of
MCHAT_NOTICE_BATCH_SIZE recipients (in eager mode the tasks run in-process, after commit).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from mchat.errors import BadRequest
from mchat.outbox import publish_json_on_commit
from mchat.wire import inbox_topic, isoformat_z
from org.events import new_notify_id
from org.models import Employee

TYPE_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
TITLE_MAX_CHARS = 200


def notice_to_inboxes(
    *,
    title: str,
    type: str = "system_notice",
    body: str | Mapping[str, Any],
    employee_ids: Iterable[str] | None = None,
    all_active: bool = False,
) -> dict:
    """Spec 3.19 {notify_id, type, title, body, created_at} to each named inbox, or to every
    active employee's; returns the notification. A text body becomes {"text": ...}.

    Published after the surrounding transaction commits, by Celery tasks of at most
    MCHAT_NOTICE_BATCH_SIZE recipients; `all_active` lists the recipients inside the task too.
    """
    if (employee_ids is None) == (not all_active):
        raise ValueError("name employee_ids or set all_active, not both")
    if not isinstance(type, str) or not TYPE_RE.match(type):
        raise BadRequest(_("type 必须是小写字母开头的 snake_case，不超过 40 个字符"))
    title = title.strip() if isinstance(title, str) else ""
    if not title or len(title) > TITLE_MAX_CHARS:
        raise BadRequest(_("title 不能为空且不超过 %(limit)d 个字符") % {"limit": TITLE_MAX_CHARS})
    if isinstance(body, str):
        body = {"text": body}
    if not isinstance(body, Mapping):
        raise BadRequest(_("body 必须是字符串或对象"))
    notification = {
        "notify_id": new_notify_id(),
        "type": type,
        "title": title,
        "body": dict(body),
        "created_at": isoformat_z(timezone.now()),
    }
    from org import tasks

    if all_active:
        transaction.on_commit(lambda: tasks.notice_fan_out.delay(notification))
        return notification
    recipients = list(dict.fromkeys(employee_ids))
    batch = _batch_size()

    def hand_over() -> None:
        for start in range(0, len(recipients), batch):
            tasks.notice_deliver.delay(recipients[start : start + batch], notification)

    transaction.on_commit(hand_over)
    return notification


def notice_fan_out(*, notification: dict) -> int:
    """Every active employee, in batches by primary key (run by a task); returns the batches."""
    from org import tasks

    batch = _batch_size()
    after, batches = 0, 0
    while True:
        rows = list(
            Employee.objects.filter(is_active=True, pk__gt=after)
            .order_by("pk")
            .values_list("pk", "employee_id")[:batch]
        )
        if not rows:
            return batches
        tasks.notice_deliver.delay([employee_id for _pk, employee_id in rows], notification)
        batches += 1
        after = rows[-1][0]


def notice_deliver(*, employee_ids: Iterable[str], notification: dict) -> None:
    """One batch: the notification on each inbox, QoS 1 (queued for persistent sessions)."""
    for employee_id in employee_ids:
        publish_json_on_commit(inbox_topic(employee_id), notification, qos=1)


def _batch_size() -> int:
    return max(1, settings.MCHAT_NOTICE_BATCH_SIZE)
