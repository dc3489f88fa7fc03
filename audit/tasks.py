"""Celery tasks of the retention jobs (audit.retention); thin: they only call the jobs.

Schedule both periodically (celery beat, or the embedded runstack timer), e.g. hourly: each
run is bounded and the next one continues where it stopped.
"""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5, ignore_result=True)
def message_retention_run() -> None:
    from audit.retention import messages_purge

    messages_purge()


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5, ignore_result=True)
def audit_retention_run() -> None:
    from audit.retention import audit_events_purge

    audit_events_purge()
