"""Jobs every bridge process runs between batches and while idle, like a tiny beat.

Configured in settings.MCHAT_BRIDGE_PERIODIC as {"module:function": interval_seconds}. A job
must be quick and safe to run in several processes at once; an exception is logged and the job
runs again at its next turn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, connection

from mchat.targets import target_resolve

logger = logging.getLogger("mchat.bridge")


class PeriodicJobs:
    def __init__(self, jobs: dict[str, float], clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        now = clock()
        self._jobs = [(target, target_resolve(target), float(interval)) for target, interval in jobs.items()]
        self._due = {target: now + interval for target, _, interval in self._jobs}

    def run_due(self) -> None:
        now = self._clock()
        for target, job, interval in self._jobs:
            if now < self._due[target]:
                continue
            self._due[target] = now + interval
            try:
                job()
            except Exception as exc:
                logger.exception("periodic job %s failed", target)
                if isinstance(exc, DatabaseError):
                    connection.close_if_unusable_or_obsolete()
            took = (self._clock() - now) * 1000
            if took > settings.MCHAT_BRIDGE_SLOW_MS:
                logger.warning("slow periodic job %s: %.0f ms", target, took)
