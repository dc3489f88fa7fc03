"""Group read receipts, coalesced: counts, at most one event per message per interval.

A group ack marks the messages it newly covers as `pending` in their ReceiptTally rows and,
after commit, asks the Celery task `group_receipts_flush` to look at the conversation. The
flush (one process at a time per tally, by row locks) emits a count for every pending tally
whose last event is at least MCHAT_RECEIPT_INTERVAL_SECONDS old; the others wait for one
delayed flush at the earliest due time (`scheduled_for` keeps it to one). The database holds
all the state, so any number of bridge processes and workers agree.

In Celery's eager mode a countdown is not honoured (the task would run at once); the delayed
flush is then a daemon timer in the process that noticed, which runs the same task. If that
process exits first, the next ack in the conversation flushes what is due.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from messaging import events
from messaging.models import (
    Conversation,
    GroupMember,
    Message,
    ReadPosition,
    ReceiptTally,
)
from org.models import Employee

logger = logging.getLogger("mchat.messaging.receipts")

# An ack that jumps far ahead touches only the newest messages it covers; older ones get
# their count with the next event that concerns them.
MAX_MESSAGES_PER_ACK = 100


def group_receipts_note(
    *, conversation: Conversation, reader: Employee, after_seq: int, up_to_seq: int
) -> None:
    """`reader` moved its position from `after_seq` to `up_to_seq`: tallies changed."""
    message_pks = list(
        Message.objects.filter(
            conversation=conversation,
            seq__gt=after_seq,
            seq__lte=up_to_seq,
            recalled_at__isnull=True,
        )
        .exclude(sender=reader)
        .order_by("-seq")
        .values_list("pk", flat=True)[:MAX_MESSAGES_PER_ACK]
    )
    if not message_pks:
        return
    # Rows locked in ascending order, as the flush locks them: no deadlock between the two.
    ReceiptTally.objects.bulk_create(
        [ReceiptTally(message_id=pk, conversation=conversation, pending=True) for pk in sorted(message_pks)],
        update_conflicts=True,
        unique_fields=["message"],
        update_fields=["pending"],
    )
    conversation_pk = conversation.pk
    # robust: the ack has committed; a queue that is down must not turn its answer into a 500.
    transaction.on_commit(lambda: _flush_now(conversation_pk), robust=True)


def group_receipts_flush(*, conversation_pk: int) -> int:
    """Emit every due pending tally of the conversation; schedule one flush for the rest.

    Returns the number of events emitted.
    """
    now = timezone.now()
    interval = timedelta(seconds=settings.MCHAT_RECEIPT_INTERVAL_SECONDS)
    emitted = 0
    with transaction.atomic():
        tallies = list(
            ReceiptTally.objects.select_for_update(of=("self",))
            .filter(conversation_id=conversation_pk, pending=True)
            .select_related("message", "message__sender", "conversation__group")
            .order_by("message_id")
        )
        waiting = []
        for tally in tallies:
            if tally.emitted_at is not None and tally.emitted_at + interval > now:
                waiting.append(tally)
            else:
                _emit(tally, now)
                emitted += 1
        _schedule(conversation_pk, waiting, interval=interval, now=now)
    return emitted


def group_receipt_counts(message: Message, *, group_pk: int) -> tuple[int, int]:
    """(read_count, member_count) of a group message: among the current members who were in
    the group when it was sent, other than its sender, how many have read it."""
    members = GroupMember.objects.filter(group_id=group_pk, joined_at__lte=message.sent_at).exclude(
        employee_id=message.sender_id
    )
    read = ReadPosition.objects.filter(
        conversation_id=message.conversation_id,
        last_read_seq__gte=message.seq,
        employee_id__in=members.values("employee_id"),
    )
    return read.count(), members.count()


def _emit(tally: ReceiptTally, now: datetime) -> None:
    message = tally.message
    group = tally.conversation.group
    read_count, member_count = group_receipt_counts(message, group_pk=group.pk)
    events.read_receipt(
        to_employee_id=message.sender.employee_id,
        receipt={
            "type": "read_receipt",
            "conversation_type": "group",
            "group_id": group.group_id,
            "msg_id": message.msg_id,
            "seq": message.seq,
            "read_count": read_count,
            "member_count": member_count,
        },
    )
    tally.pending = False
    tally.emitted_at = now
    tally.emitted_count = read_count
    tally.scheduled_for = None
    tally.save(update_fields=["pending", "emitted_at", "emitted_count", "scheduled_for"])


def _schedule(
    conversation_pk: int, waiting: list[ReceiptTally], *, interval: timedelta, now: datetime
) -> None:
    # A tally whose scheduled flush time has come is served by nobody any more (that flush is
    # this one, or it was lost): it needs a new one.
    uncovered = [t for t in waiting if t.scheduled_for is None or t.scheduled_for <= now]
    if not uncovered:
        return
    due = min(t.emitted_at + interval for t in uncovered)
    ReceiptTally.objects.filter(pk__in=[t.pk for t in uncovered]).update(scheduled_for=due)
    delay = max(0.0, (due - now).total_seconds())
    transaction.on_commit(lambda: _flush_later(conversation_pk, delay), robust=True)


def _flush_now(conversation_pk: int) -> None:
    from messaging import tasks

    tasks.group_receipts_flush.delay(conversation_pk)


def _flush_later(conversation_pk: int, delay: float) -> None:
    from messaging import tasks

    if tasks.runs_eagerly():
        eager_wakeup(conversation_pk, delay)
    else:
        tasks.group_receipts_flush.apply_async(args=[conversation_pk], countdown=delay)


def eager_wakeup(conversation_pk: int, delay: float) -> None:
    """Eager mode only: run the flush task after `delay` seconds on a daemon timer."""
    timer = threading.Timer(delay, _run_flush_task, args=[conversation_pk])
    timer.daemon = True
    timer.start()


def _run_flush_task(conversation_pk: int) -> None:
    from messaging import tasks

    try:
        tasks.group_receipts_flush.delay(conversation_pk)
    except Exception:  # a timer thread has nobody to report to but the log
        logger.exception("delayed receipt flush of conversation %s failed", conversation_pk)
    finally:
        connections.close_all()
