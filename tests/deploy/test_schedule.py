"""Periodic clean-ups leave the bridge: Celery beat sends them to a worker when Redis is
configured (a real redis-server, worker and beat here), `manage.py runschedule` runs the same
tasks on a timer without it."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from bridge.models import ProcessedRequest
from messaging.models import UsedFileUrl
from org.models import AuthChallenge
from tests.factories import EmployeeFactory
from tests.notifications.test_celery_redis import Worker, redis_url  # noqa: F401 -- redis_url is a fixture
from tests.web_server import web_env

LONG_AGO = timedelta(days=30)


def _stale_and_fresh_rows() -> None:
    employee = EmployeeFactory()
    now = timezone.now()
    old = ProcessedRequest.objects.create(client_id="emp_a_001_d", seq_id="old", action="x", response={})
    ProcessedRequest.objects.filter(pk=old.pk).update(created_at=now - LONG_AGO)
    ProcessedRequest.objects.create(client_id="emp_a_001_d", seq_id="new", action="x", response={})
    for challenge_id, expires_at in (("ch_old", now - LONG_AGO), ("ch_new", now + timedelta(minutes=5))):
        AuthChallenge.objects.create(
            challenge_id=challenge_id, employee=employee, token_hash="0" * 64, expires_at=expires_at
        )
    UsedFileUrl.objects.create(
        nonce="n" * 32, key="k", method="GET", used_at=now - LONG_AGO, expires_at=now - LONG_AGO
    )


def _purged() -> bool:
    return (
        list(ProcessedRequest.objects.values_list("seq_id", flat=True)) == ["new"]
        and list(AuthChallenge.objects.values_list("challenge_id", flat=True)) == ["ch_new"]
        and not UsedFileUrl.objects.exists()
    )


def test_the_bridge_keeps_only_request_serving_jobs():
    assert set(settings.MCHAT_BRIDGE_PERIODIC) == {
        "django.db:close_old_connections",
        "bridge.deferred:expire_due",
        # Open streams live in this process's memory: their deltas and stores are its work.
        "messaging.streams:streams_tick",
        "messaging.streams:streams_expire",
    }
    assert set(settings.CELERY_BEAT_SCHEDULE) == set(settings.MCHAT_SCHEDULE)


@pytest.mark.django_db
def test_runschedule_runs_every_scheduled_task_without_redis():
    _stale_and_fresh_rows()
    assert not _purged()
    call_command("runschedule", "--once")
    assert _purged()


class Beat:
    """`celery -A mchat beat`, its schedule file in a temporary folder."""

    def __init__(self, env: dict[str, str], schedule_file):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "mchat", "beat", "-l", "INFO", "-s", str(schedule_file)],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def _all_succeeded(worker: Worker) -> bool:
    """Every scheduled task ran in the worker (its log says so)."""
    return all(worker.succeeded(task) for task in settings.MCHAT_SCHEDULE)


@pytest.mark.timeout(180)
def test_beat_and_a_worker_on_redis_purge(transactional_db, redis_url, tmp_path):  # noqa: F811
    _stale_and_fresh_rows()
    env = web_env(CELERY_BROKER_URL=redis_url, MCHAT_PURGE_INTERVAL_SECONDS="1")
    worker = Worker(env)
    beat = None
    try:
        assert worker.ready.wait(60), "the Celery worker did not start:\n" + "".join(worker.lines[-30:])
        beat = Beat(env, tmp_path / "celerybeat-schedule")
        deadline = time.monotonic() + 60
        while not (_purged() and _all_succeeded(worker)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _purged(), "".join(worker.lines[-30:])
        assert _all_succeeded(worker), "".join(worker.lines[-30:])
    finally:
        if beat is not None:
            beat.stop()
        worker.stop()
