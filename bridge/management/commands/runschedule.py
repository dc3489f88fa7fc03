"""Run settings.MCHAT_SCHEDULE's periodic tasks in this process, on a timer: what Celery beat
and a worker do when there is no Redis (runstack starts this then). `--once` runs each task
once and exits (cron, or by hand after a long outage)."""

from __future__ import annotations

import logging
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from bridge.periodic import PeriodicJobs

logger = logging.getLogger("mchat.schedule")


def job_targets() -> dict[str, float]:
    """MCHAT_SCHEDULE's task names as PeriodicJobs targets: a task object runs when called."""
    return {
        "{}:{}".format(*task.rsplit(".", 1)): seconds for task, seconds in settings.MCHAT_SCHEDULE.items()
    }


class Command(BaseCommand):
    help = "Run the periodic clean-ups (settings.MCHAT_SCHEDULE) on a timer, without Celery beat."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="run every task once, then exit")

    def handle(self, *args, once: bool, **options):
        targets = job_targets()
        if once:
            jobs = PeriodicJobs({target: 0 for target in targets})
            jobs.run_due()
            self.stdout.write(f"ran {len(targets)} periodic tasks")
            return
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        jobs = PeriodicJobs(targets)
        logger.info("schedule: %s", ", ".join(f"{t} every {s:g} s" for t, s in targets.items()))
        while not stop.wait(1.0):
            jobs.run_due()
