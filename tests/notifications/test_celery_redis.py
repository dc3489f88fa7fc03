"""Celery on a real Redis, as deployed (DESIGN §1): a group created in a server process tells
its members in batches of Celery tasks (messaging.services.group_notify, more members than
MCHAT_NOTIFY_BATCH_SIZE); a worker process takes them from Redis and publishes each member's
notification over MQTT.

The suite otherwise runs Celery eagerly; this test starts its own redis-server and worker.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
from django.conf import settings

from bench.services import RedisServer
from tests.broker_harness import wait_until

pytestmark = [pytest.mark.broker]


@pytest.fixture
def redis_url():
    """A private redis-server on 127.0.0.1, stopped by its PID at the end."""
    with RedisServer() as redis:
        yield redis.url


WORKER_OPTIONS = [
    "--pool",
    "solo",
    "--loglevel",
    "INFO",
    "--without-heartbeat",
    "--without-mingle",
    "--without-gossip",
]


class Worker:
    """`celery -A mchat worker` on the test database and broker; its log kept for asserts."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "mchat", "worker", *WORKER_OPTIONS],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)
            if " ready." in line:
                self.ready.set()

    def succeeded(self, task: str) -> int:
        return sum(task in line and "succeeded" in line for line in self.lines)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


@pytest.fixture
def worker(live, redis_url):
    env = {**live.subprocess_env(), "CELERY_BROKER_URL": redis_url, "MCHAT_NOTIFY_BATCH_SIZE": "2"}
    worker = Worker(env)
    try:
        assert worker.ready.wait(60), "the Celery worker did not start:\n" + "".join(worker.lines[-30:])
        yield worker
    finally:
        worker.stop()


GROUP_CREATE = """
import json
from messaging import services
from org.models import Employee
owner, *members = [Employee.objects.get(employee_id=e) for e in ids]
created = services.group_create(actor=owner, name="年会筹备", member_ids=[m.employee_id for m in members])
print(json.dumps({"group_id": created.group.group_id}))
"""


def test_group_notifications_fan_out_through_redis_in_a_worker(live, worker):
    people = [live.issue(name) for name in ("Alice", "Bob", "Carol", "Dave", "Erin")]
    devices = []
    for employee, password in people:
        device = live.connect(employee, password)
        device.subscribe(f"mchat/inbox/{employee.employee_id}")
        devices.append((employee, device))

    # From another server process configured for Redis, as the admin console is.
    ids = [employee.employee_id for employee, _password in people]
    admin = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", f"ids = {ids!r}" + GROUP_CREATE],
        cwd=settings.BASE_DIR,
        env=worker.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert admin.returncode == 0, admin.stderr
    group_id = json.loads(admin.stdout.strip().splitlines()[-1])["group_id"]

    for employee, device in devices:
        inbox = f"mchat/inbox/{employee.employee_id}"
        assert device.wait_for_count(inbox, 1, timeout=20), f"{employee.employee_id} got nothing"
        (received,) = [m for m in device.messages(inbox) if m.get("type") == "member_joined"]
        assert received["body"]["group_id"] == group_id and received["title"] == "入群通知"
        assert sorted(received["body"]["member_ids"]) == sorted(ids)
    # The worker did it: five members in batches of two, three tasks.
    wait_until(
        lambda: worker.succeeded("messaging.tasks.system_notification_deliver") >= 3,
        timeout=10,
        interval=0.05,
    )
    assert worker.succeeded("messaging.tasks.system_notification_deliver") == 3
