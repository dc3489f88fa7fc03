"""Fixtures shared by every test package.

Every test publishes into an in-memory publisher (never a real broker by accident) and renders
broker files into its own temporary directory, synchronously.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from bridge.dispatch import Dispatcher
from bridge.ratelimit import RateLimiter
from mchat import outbox as publisher_module
from mchat.wire import encode
from messaging import services
from tests.factories import EmployeeFactory

pytest_plugins = ["tests.live", "tests.web_server"]


def pytest_configure(config):
    # Importing settings creates nothing (runstack does): the SQLite test databases live here.
    from django.conf import settings

    Path(settings.VAR_DIR).mkdir(parents=True, exist_ok=True)


@pytest.fixture(autouse=True)
def published():
    memory = publisher_module.MemoryPublisher()
    publisher_module.install(memory)
    yield memory
    publisher_module.install(None)


@pytest.fixture(autouse=True)
def _broker_files_per_test(settings, tmp_path):
    settings.MCHAT_BROKER_DIR = tmp_path / "broker"
    settings.MCHAT_BROKER_SYNC_DEBOUNCE = 0


@pytest.fixture(autouse=True)
def _fresh_process_caches():
    # What one test created is rolled back: its conversations must not be remembered.
    services.private_conversation_ids_clear()
    services.known_group_sends_clear()
    yield
    services.private_conversation_ids_clear()
    services.known_group_sends_clear()


@pytest.fixture(autouse=True)
def _stream_buffer_per_test():
    # Open streams are held in this process's memory, a fresh buffer per test (tests of the
    # Redis buffer install their own).
    from messaging import stream_buffers

    stream_buffers.install(stream_buffers.MemoryStreamBuffer())
    yield
    stream_buffers.install(None)


@pytest.fixture
def dispatcher(published):
    return Dispatcher(published, limiter=RateLimiter({}))


@pytest.fixture
def call(dispatcher, django_capture_on_commit_callbacks):
    """Send one request through the whole pipeline as `employee`; return the response dict.

    `raw` replaces the JSON payload with exact bytes; `topic` replaces the request topic.
    Deliveries registered on commit are published before this returns.
    """

    def send(employee, action=None, *, seq_id=None, device="dev1", raw=None, topic=None, **fields):
        seq_id = seq_id or uuid.uuid4().hex
        client_id = f"{employee.employee_id}_{device}"
        payload = raw if raw is not None else encode({"action": action, **fields})
        with django_capture_on_commit_callbacks(execute=True):
            outcome = dispatcher.handle(topic or f"mchat/msg/req/{client_id}/{seq_id}", payload)
        return outcome.response

    return send


# Three colleagues most service and bridge tests need (a package may define its own).
@pytest.fixture
def alice(db):
    return EmployeeFactory(employee_id="emp_alice_001", name="Alice")


@pytest.fixture
def bob(db):
    return EmployeeFactory(employee_id="emp_bob_002", name="Bob")


@pytest.fixture
def carol(db):
    return EmployeeFactory(employee_id="emp_carol_003", name="Carol")
