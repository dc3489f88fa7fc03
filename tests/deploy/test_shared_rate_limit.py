"""The rate limit shared by several bridge processes through Redis (issue 15 item 5): one
employee gets the documented rate in total; Redis down -> per-process limits, logged once."""

from __future__ import annotations

import logging

import pytest

from bench.services import free_port
from bridge.ratelimit import RateLimiter, SharedRateLimiter, limiter_from_settings
from mchat.errors import RateLimited
from tests.notifications.test_celery_redis import redis_url  # noqa: F401 -- a fixture

LIMITS = {"write": [0.001, 3], "read": [0.001, 1]}  # a burst, then (almost) nothing


def test_two_bridges_share_one_bucket_per_employee(redis_url):  # noqa: F811
    first, second = SharedRateLimiter(LIMITS, url=redis_url), SharedRateLimiter(LIMITS, url=redis_url)
    first.take(employee_id="emp_a", action_class="write")
    second.take(employee_id="emp_a", action_class="write")
    first.take(employee_id="emp_a", action_class="write")
    with pytest.raises(RateLimited) as refused:
        second.take(employee_id="emp_a", action_class="write")
    assert refused.value.data["retry_after_ms"] > 0
    # Another employee, another bucket; an unlimited class is never refused.
    second.take(employee_id="emp_b", action_class="write")
    first.take(employee_id="emp_a", action_class="auth")

    # take_all: all or nothing, across processes too.
    assert first.take_all([("emp_c", "write"), ("emp_c", "write")])
    assert not second.take_all([("emp_c", "write"), ("emp_d", "read"), ("emp_d", "read")])
    assert second.take_all([("emp_c", "write"), ("emp_d", "read")])  # nothing was spent above
    assert not first.take_all([("emp_c", "write")])


def test_redis_down_falls_back_to_per_process_limits_logged_once(caplog):
    limiter = SharedRateLimiter(LIMITS, url=f"redis://127.0.0.1:{free_port()}/0")
    with caplog.at_level(logging.WARNING, logger="mchat.bridge"):
        for _ in range(3):
            limiter.take(employee_id="emp_a", action_class="write")  # served, by the local bucket
        with pytest.raises(RateLimited):
            limiter.take(employee_id="emp_a", action_class="write")
        assert limiter.take_all([("emp_b", "read")])
    assert caplog.text.count("rate limit: Redis does not answer") == 1


def test_the_dispatcher_shares_the_limit_when_redis_is_configured(settings, redis_url):  # noqa: F811
    settings.MCHAT_RATE_LIMIT_REDIS_URL = redis_url
    assert isinstance(limiter_from_settings(), SharedRateLimiter)
    settings.MCHAT_RATE_LIMIT_REDIS_URL = ""
    assert type(limiter_from_settings()) is RateLimiter
