"""Celery tasks of the organisation: ids in, one service call."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5, ignore_result=True)
def notice_fan_out(notification: dict) -> None:
    from org.notifications import notice_fan_out as fan_out

    fan_out(notification=notification)


@shared_task(ignore_result=True)
def notice_deliver(employee_ids: list[str], notification: dict) -> None:
    from org.notifications import notice_deliver as deliver

    deliver(employee_ids=employee_ids, notification=notification)


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5, ignore_result=True)
def challenges_purge() -> int:
    """Expired auth challenges (settings.MCHAT_SCHEDULE)."""
    from org.retention import challenges_purge as purge

    return purge()


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5, ignore_result=True)
def web_sessions_purge() -> int:
    """Web sessions that can no longer matter (settings.MCHAT_SCHEDULE)."""
    from org.web_sessions import web_sessions_purge as purge

    return purge()
