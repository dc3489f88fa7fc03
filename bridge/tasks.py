"""The bridge's periodic clean-ups as Celery tasks (settings.MCHAT_SCHEDULE): run by Celery beat
and a worker, or by `manage.py runschedule` without Redis; never on a bridge's request thread,
so a large purge does not stall requests."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5, ignore_result=True)
def processed_requests_purge() -> int:
    """Idempotency records past MCHAT_IDEMPOTENCY_TTL_HOURS."""
    from bridge.services import processed_requests_purge as purge

    return purge()


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5, ignore_result=True)
def agent_waits_purge() -> int:
    """Resolved agent acknowledgement waits past the idempotency window."""
    from bridge.deferred import resolved_waits_purge as purge

    return purge()
