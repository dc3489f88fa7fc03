"""Celery tasks: ids in, one service call, retry only what may pass (a busy database)."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from mchat.celery import app


def runs_eagerly() -> bool:
    """No worker (embedded default): tasks run in the caller's process, countdowns ignored."""
    return bool(app.conf.task_always_eager)


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5, ignore_result=True)
def group_receipts_flush(conversation_pk: int) -> None:
    from messaging.services import group_receipts_flush as flush

    flush(conversation_pk=conversation_pk)


@shared_task(ignore_result=True)
def system_notification_deliver(employee_ids: list[str], notification: dict) -> None:
    from messaging.services import system_notification_deliver as deliver

    deliver(employee_ids=employee_ids, notification=notification)


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5, ignore_result=True)
def file_records_purge() -> None:
    """Spent single-use URLs past their expiry and uploads never made (messaging.files);
    meant for a periodic schedule (celery beat), e.g. hourly."""
    from messaging.files import file_records_purge as purge

    purge()
