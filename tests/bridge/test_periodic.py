from datetime import timedelta

import pytest
from django.utils import timezone

from bridge.models import ProcessedRequest
from bridge.periodic import PeriodicJobs
from bridge.services import processed_requests_purge

calls: list[str] = []


def job_ok():
    calls.append("ok")


def job_broken():
    calls.append("broken")
    raise RuntimeError("boom")


CLOCK = [0.0]


def job_slow():
    CLOCK[0] += 0.5  # half a second passes while it runs


def test_a_slow_job_is_logged(caplog, settings):
    settings.MCHAT_BRIDGE_SLOW_MS = 200
    CLOCK[0] = 100.0
    jobs = PeriodicJobs({"tests.bridge.test_periodic:job_slow": 1.0}, clock=lambda: CLOCK[0])
    CLOCK[0] += 1.0
    jobs.run_due()
    assert "slow periodic job tests.bridge.test_periodic:job_slow: 500 ms" in caplog.text


def test_jobs_run_at_their_interval_and_survive_failures(caplog):
    calls.clear()
    now = [100.0]
    jobs = PeriodicJobs(
        {"tests.bridge.test_periodic:job_ok": 1.0, "tests.bridge.test_periodic:job_broken": 5.0},
        clock=lambda: now[0],
    )
    jobs.run_due()
    assert calls == []  # nothing is due at start
    now[0] = 101.0
    jobs.run_due()
    jobs.run_due()  # not due again yet
    assert calls == ["ok"]
    now[0] = 105.5
    jobs.run_due()
    assert calls == ["ok", "ok", "broken"]
    assert "periodic job tests.bridge.test_periodic:job_broken failed" in caplog.text
    now[0] = 106.6
    jobs.run_due()
    assert calls == ["ok", "ok", "broken", "ok"]


@pytest.mark.django_db
def test_purge_forgets_answers_past_the_idempotency_window(settings):
    settings.MCHAT_IDEMPOTENCY_TTL_HOURS = 24
    old = ProcessedRequest.objects.create(client_id="emp_a_001_d", seq_id="old", action="x", response={})
    ProcessedRequest.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=25))
    ProcessedRequest.objects.create(client_id="emp_a_001_d", seq_id="new", action="x", response={})
    assert processed_requests_purge() == 1
    assert list(ProcessedRequest.objects.values_list("seq_id", flat=True)) == ["new"]
