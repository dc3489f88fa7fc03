"""Token buckets per (employee, action class) (DESIGN §4 step 5): per bridge process, or shared
by every bridge through Redis (SharedRateLimiter, MCHAT_RATE_LIMIT_REDIS_URL)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from mchat.errors import RateLimited

logger = logging.getLogger("mchat.bridge")


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


# One bucket per (employee, action class) in Redis, shared by every bridge process; Redis's
# clock, so bridges on several hosts agree. KEYS: the buckets; ARGV: rate, burst, wanted for
# each key, then the buckets' lifetime in ms. All or nothing: {1} when every bucket had its
# tokens (and they are spent), else {0, index, tokens} of the first one short (nothing spent).
_TAKE_ALL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl = tonumber(ARGV[#ARGV])
local left = {}
for i, key in ipairs(KEYS) do
  local rate, burst, want = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  local b = redis.call('HMGET', key, 'tokens', 'stamp')
  local tokens = tonumber(b[1]) or burst
  local stamp = tonumber(b[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
  if tokens < want then
    return {0, i, tostring(tokens)}
  end
  left[i] = tokens - want
end
for i, key in ipairs(KEYS) do
  redis.call('HSET', key, 'tokens', tostring(left[i]), 'stamp', tostring(now))
  redis.call('PEXPIRE', key, ttl)
end
return {1}
"""


class SharedRateLimiter(RateLimiter):
    """The same buckets kept in Redis, so N bridge processes give one employee the documented
    rate in total, not N times it. One round trip per `take` or `take_all`. When Redis does not
    answer, the per-process buckets serve (logged once) and Redis is tried again after
    RETRY_SECONDS; requests keep being served either way."""

    RETRY_SECONDS = 10.0
    KEY_PREFIX = "mchat:rate:"

    def __init__(
        self, limits: dict[str, list[float]], *, url: str, clock: Callable[[], float] = time.monotonic
    ):
        import redis

        super().__init__(limits, clock=clock)
        self._errors = redis.RedisError
        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._script = self._redis.register_script(_TAKE_ALL)
        self._local_until = 0.0  # Redis failed: per-process buckets until then
        self._fallback_logged = False

    def take(self, *, employee_id: str, action_class: str) -> None:
        limit = self._limits.get(action_class)
        if limit is None:
            return
        outcome = self._shared([(employee_id, action_class)])
        if outcome is None:
            super().take(employee_id=employee_id, action_class=action_class)
        elif outcome is not True:
            rate = limit[0]
            raise RateLimited(retry_after_ms=max(1, int((1 - outcome) / rate * 1000)))

    def take_all(self, keys: list[tuple[str, str]]) -> bool:
        outcome = self._shared(keys)
        if outcome is None:
            return super().take_all(keys)
        return outcome is True

    def _shared(self, keys: list[tuple[str, str]]) -> bool | float | None:
        """True: spent; a float: refused, the first short bucket's tokens; None: Redis is not
        available (use the process's own buckets)."""
        wanted: dict[tuple[str, str], int] = {}
        for key in keys:
            if key[1] in self._limits:
                wanted[key] = wanted.get(key, 0) + 1
        if not wanted:
            return True
        if self._clock() < self._local_until:
            return None
        names, args, lifetime = [], [], 1.0
        for (employee_id, action_class), n in wanted.items():
            rate, burst = self._limits[action_class]
            names.append(f"{self.KEY_PREFIX}{action_class}:{employee_id}")
            args += [rate, burst, n]
            lifetime = max(lifetime, burst / rate + 1)
        try:
            result = self._script(keys=names, args=[*args, int(lifetime * 1000)])
        except self._errors as exc:
            self._local_until = self._clock() + self.RETRY_SECONDS
            if not self._fallback_logged:
                logger.warning(
                    "rate limit: Redis does not answer (%s); per-process limits until it does", exc
                )
                self._fallback_logged = True
            return None
        if self._fallback_logged:
            logger.info("rate limit: Redis answers again; limits are shared")
            self._fallback_logged = False
        return True if int(result[0]) == 1 else float(result[2])


def limiter_from_settings() -> RateLimiter:
    """Shared through Redis when MCHAT_RATE_LIMIT_REDIS_URL is set, per process otherwise."""
    from django.conf import settings

    if settings.MCHAT_RATE_LIMIT_REDIS_URL:
        return SharedRateLimiter(settings.MCHAT_RATE_LIMITS, url=settings.MCHAT_RATE_LIMIT_REDIS_URL)
    return RateLimiter(settings.MCHAT_RATE_LIMITS)
