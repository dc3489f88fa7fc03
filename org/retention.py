"""Periodic clean-up of the organisation's short-lived rows (scheduled in settings.MCHAT_SCHEDULE)."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from org.models import AuthChallenge


def challenges_purge(*, now: datetime | None = None) -> int:
    """Forget auth challenges past their expiry, used or not: neither can be spent any more."""
    deleted, _ = AuthChallenge.objects.filter(expires_at__lt=now or timezone.now()).delete()
    return deleted
