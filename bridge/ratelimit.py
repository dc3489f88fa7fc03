"""Token buckets per (employee, action class), per bridge process (DESIGN §4 step 5)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from mchat.errors import RateLimited


class RateLimiter:
    def __init__(self, limits: dict[str, list[float]], clock: Callable[[], float] = time.monotonic):
        self._limits = {name: (float(rate), float(burst)) for name, (rate, burst) in limits.items()}
        self._clock = clock
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, *, employee_id: str, action_class: str) -> None:
        """Spend one token or raise RateLimited with the wait until the next one."""
        limit = self._limits.get(action_class)
        if limit is None:
            return
        rate, _burst = limit
        key = (employee_id, action_class)
        now = self._clock()
        with self._lock:
            tokens = self._refilled(key, now)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                raise RateLimited(retry_after_ms=max(1, int((1 - tokens) / rate * 1000)))
            self._buckets[key] = (tokens - 1, now)
            if len(self._buckets) > 100_000:
                self._forget_full(now)

    def take_all(self, keys: list[tuple[str, str]]) -> bool:
        """Spend one token for each (employee_id, action_class), a key once per time it is
        listed, if every bucket has them; otherwise spend none and return False."""
        now = self._clock()
        wanted: dict[tuple[str, str], int] = {}
        for key in keys:
            if key[1] in self._limits:
                wanted[key] = wanted.get(key, 0) + 1
        with self._lock:
            left = {}
            for key, n in wanted.items():
                tokens = self._refilled(key, now)
                if tokens < n:
                    return False
                left[key] = tokens - n
            for key, tokens in left.items():
                self._buckets[key] = (tokens, now)
            if len(self._buckets) > 100_000:
                self._forget_full(now)
        return True

    def _refilled(self, key: tuple[str, str], now: float) -> float:
        """The bucket's tokens at `now` (a new bucket is full); call with the lock held."""
        rate, burst = self._limits[key[1]]
        tokens, stamp = self._buckets.get(key, (burst, now))
        return min(burst, tokens + (now - stamp) * rate)

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled completely: they carry no information."""
        for key, (tokens, stamp) in list(self._buckets.items()):
            rate, burst = self._limits[key[1]]
            if tokens + (now - stamp) * rate >= burst:
                del self._buckets[key]
