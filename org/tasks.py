"""Celery tasks of the organisation: ids in, one service call."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError


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
