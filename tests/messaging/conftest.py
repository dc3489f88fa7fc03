"""Fixtures for groups and messages: a few employees, a group, and controlled receipt timers."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from messaging import services
from messaging.services import receipts
from tests.factories import EmployeeFactory


@pytest.fixture(autouse=True)
def receipt_wakeups(monkeypatch):
    """Delayed receipt flushes in eager mode, recorded instead of run on a timer thread.

    Tests that need the real timer (live ones) ask for `real_receipt_timer`.
    """
    wakeups: list[tuple[int, float]] = []
    monkeypatch.setattr(receipts, "eager_wakeup", lambda pk, delay: wakeups.append((pk, delay)))
    return wakeups


_REAL_WAKEUP = receipts.eager_wakeup


class FlushTimers:
    """The real eager-mode timers, counted: `wait_idle` returns once every flush they
    scheduled has run (a flush may schedule the next)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.scheduled = 0
        self.finished = 0

    def wakeup(self, conversation_pk: int, delay: float) -> None:
        with self._cond:
            self.scheduled += 1
        _REAL_WAKEUP(conversation_pk, delay)

    def flushed(self, conversation_pk: int) -> None:
        try:
            _REAL_FLUSH(conversation_pk)
        finally:
            with self._cond:
                self.finished += 1
                self._cond.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.finished == self.scheduled, timeout)


_REAL_FLUSH = receipts._run_flush_task


@pytest.fixture
def real_receipt_timer(monkeypatch, receipt_wakeups) -> FlushTimers:
    """The real eager-mode timer thread, for tests whose data is committed (live ones)."""
    timers = FlushTimers()
    monkeypatch.setattr(receipts, "eager_wakeup", timers.wakeup)
    monkeypatch.setattr(receipts, "_run_flush_task", timers.flushed)
    return timers


@pytest.fixture
def dave(db):
    return EmployeeFactory(employee_id="emp_dave_004", name="Dave")


@pytest.fixture
def make_group(django_capture_on_commit_callbacks):
    """group_create through the service, with its deliveries published."""

    def create(owner, *members, name="项目组"):
        with django_capture_on_commit_callbacks(execute=True):
            created = services.group_create(
                actor=owner, name=name, member_ids=[m.employee_id for m in members] or [owner.employee_id]
            )
        return created.group

    return create


@pytest.fixture
def failed_statements():
    """The SQL statements that raise while the test runs, as (sql, exception). A repeated
    request is left out by the store's statements, never caught as a constraint violation:
    tests of repeats assert this stays empty."""
    failures: list[tuple[str, BaseException]] = []

    def watch(execute, sql, params, many, context):
        try:
            return execute(sql, params, many, context)
        except Exception as exc:
            failures.append((sql, exc))
            raise

    with connection.execute_wrapper(watch):
        yield failures
