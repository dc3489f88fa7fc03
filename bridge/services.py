from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from bridge.models import ProcessedRequest


def processed_requests_purge() -> int:
    """Forget answers older than the idempotency window (DESIGN §4: kept at least 24 h)."""
    cutoff = timezone.now() - timedelta(hours=settings.MCHAT_IDEMPOTENCY_TTL_HOURS)
    deleted, _ = ProcessedRequest.objects.filter(created_at__lt=cutoff).delete()
    return deleted
