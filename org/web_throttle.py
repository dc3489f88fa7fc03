"""Rate limits of web sign-in: failed attempts per account and per address.

Failures only, so that an office behind one address can still sign in at nine o'clock; past a
limit every attempt is refused (429), the right password included, until the window ends.

Fixed windows counted in Django's cache (the default per-process memory cache counts per web
process; configure a shared cache such as Redis for several processes). Lock-out after
repeated failures (django-axes) is a separate, later layer.
"""

from __future__ import annotations

import hashlib
import time

from django.conf import settings
from django.core.cache import cache

ACCOUNT = "account"
ADDRESS = "address"


def _key(kind: str, value: str, window: int, now: float) -> str:
    digest = hashlib.sha256(value.strip().lower().encode()).hexdigest()[:32]
    return f"mchat:signin:{kind}:{digest}:{int(now // window)}"


def _limits(kind: str) -> tuple[int, int]:
    count, window = settings.MCHAT_WEB_SIGNIN_LIMITS[kind]
    return int(count), int(window)


def sign_in_retry_after(*, address: str, login: str) -> int | None:
    """Seconds to wait if this address or this account is over its limit, else None."""
    now = time.time()
    for kind, value in ((ADDRESS, address), (ACCOUNT, login)):
        if not value:
            continue
        count, window = _limits(kind)
        if (cache.get(_key(kind, value, window, now)) or 0) >= count:
            return int(window - now % window) + 1
    return None


def _count(kind: str, value: str) -> None:
    now = time.time()
    _limit, window = _limits(kind)
    key = _key(kind, value, window, now)
    cache.add(key, 0, window)
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, window)


def sign_in_failed(*, address: str, login: str) -> None:
    if address:
        _count(ADDRESS, address)
    if login:
        _count(ACCOUNT, login)
