"""Fixtures for groups and messages: a few employees, a group, and controlled receipt timers."""

from __future__ import annotations

import pytest

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


@pytest.fixture
def real_receipt_timer(monkeypatch, receipt_wakeups):
    """The real eager-mode timer thread, for tests whose data is committed (live ones)."""
    monkeypatch.setattr(receipts, "eager_wakeup", _REAL_WAKEUP)


@pytest.fixture
def alice(db):
    return EmployeeFactory(employee_id="emp_alice_001", name="Alice")


@pytest.fixture
def bob(db):
    return EmployeeFactory(employee_id="emp_bob_002", name="Bob")


@pytest.fixture
def carol(db):
    return EmployeeFactory(employee_id="emp_carol_003", name="Carol")


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
