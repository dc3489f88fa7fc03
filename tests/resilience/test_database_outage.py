"""The database goes away for a few seconds under a running bridge process.

Requests during the outage get 500 (or 504) answers within a bounded time: never silence,
never a dead bridge. Once the database is back, service resumes by itself, and what failed
can be retried with the same seq_id (a 500 is not recorded as the request's answer).

The outage depends on the database the suite runs on:
- PostgreSQL: the bridge runs against a private cluster (started here, a copy of the test
  database made with pg_dump), which is stopped with `pg_ctl stop -m fast` and started again:
  connections are cut and new ones refused, as in a real server restart.
- SQLite: another connection holds the write lock (BEGIN EXCLUSIVE), so every write waits
  for the busy timeout and fails with "database is locked". The bridge runs with a 1 s busy
  timeout for this (tests/resilience/outage_settings.py) instead of the default 20 s.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from django.db import connection

from bench.services import PostgresCluster, postgres_bin_dir
from mchat.wire import inbox_topic
from messaging.models import Message
from tests import live as live_module
from tests.resilience.conftest import bridge_log, wait_serving

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True), pytest.mark.timeout(150)]

OUTAGE_SECONDS = 3.0
ANSWER_WITHIN = 15.0  # a request during the outage is answered 500 within this


class SqliteLock:
    """The test database's write lock, held by a connection of our own."""

    kind = "sqlite-write-lock"

    def __init__(self) -> None:
        self.path = connection.settings_dict["NAME"]
        self.database_url = live_module.test_database_url()
        self.env = {"DJANGO_SETTINGS_MODULE": "tests.resilience.outage_settings"}
        self._lock: sqlite3.Connection | None = None

    def begin(self) -> None:
        self._lock = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        self._lock.execute("BEGIN EXCLUSIVE")

    def end(self) -> None:
        if self._lock is not None:
            self._lock.execute("ROLLBACK")
            self._lock.close()
            self._lock = None

    def messages_from(self, employee_id: str) -> int:
        return Message.objects.filter(sender__employee_id=employee_id).count()

    def close(self) -> None:
        self.end()


class PostgresRestart:
    """A private cluster holding a copy of the test database; the bridge uses the copy."""

    kind = "postgresql-restart"

    def __init__(self, directory: Path) -> None:
        self.cluster = PostgresCluster(directory).init()
        self.cluster.start()
        self.database = "mchat_outage"
        self.cluster.create_database(self.database)
        db = connection.settings_dict
        dump = subprocess.run(
            [
                str(postgres_bin_dir() / "pg_dump"),
                "--no-owner",
                "--no-privileges",
                "-h",
                db["HOST"] or "127.0.0.1",
                "-p",
                str(db["PORT"] or 5432),
                "-U",
                db["USER"],
                db["NAME"],
            ],
            check=True,
            capture_output=True,
            text=True,
            env={"PGPASSWORD": db["PASSWORD"] or ""},
        )
        subprocess.run(
            [
                str(postgres_bin_dir() / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.cluster.port),
                "-U",
                "postgres",
                "-d",
                self.database,
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
            ],
            input=dump.stdout,
            check=True,
            capture_output=True,
            text=True,
        )
        self.database_url = self.cluster.url(self.database)
        self.env: dict[str, str] = {}

    def begin(self) -> None:
        self.cluster.stop(mode="fast")

    def end(self) -> None:
        self.cluster.start()

    def messages_from(self, employee_id: str) -> int:
        return int(
            self.cluster.psql(
                "SELECT count(*) FROM messaging_message m JOIN org_employee e ON e.id = m.sender_id "
                f"WHERE e.employee_id = '{employee_id}'",
                self.database,
            )
        )

    def close(self) -> None:
        self.cluster.stop(mode="immediate")


@pytest.fixture
def outage(live):
    """The outage that fits the database this suite runs on (see the module docstring)."""
    if connection.vendor == "postgresql":
        assert postgres_bin_dir() is not None, "PostgreSQL server binaries are needed"
        # Not under tmp_path: pytest makes it 0700 and the postgres user must reach the cluster.
        directory = Path(tempfile.mkdtemp(prefix="mchat-outage-pg-"))
        holder = {}

        def make():
            holder["outage"] = PostgresRestart(directory)
            return holder["outage"]

        yield make
        if "outage" in holder:
            holder["outage"].close()
        shutil.rmtree(directory, ignore_errors=True)
    else:
        lock = SqliteLock()
        yield lambda: lock
        lock.close()


def test_database_outage_answers_500_never_silence_and_service_resumes(live, outage, bridges):
    live.stop_bridge()
    alice, alice_pw = live.issue("Alice")
    bob, bob_pw = live.issue("Bob")
    database = outage()  # after the employees exist: the PostgreSQL copy must contain them
    sender = live.connect(alice, alice_pw, device="phone")
    recipient = live.connect(bob, bob_pw, device="pad")
    recipient.subscribe(inbox_topic(bob.employee_id))
    bridge = bridges(live, "dbout", env={"DATABASE_URL": database.database_url, **database.env})
    wait_serving(sender, bridge)

    def send(seq_id: str, timeout: float) -> tuple[dict, float]:
        """One request; its newest answer (a retried seq_id has older ones) and how long it took."""
        topic = f"mchat/msg/resp/{sender.client_id}/{seq_id}"
        seen = len(sender.mqtt.messages_on(topic))
        started = time.monotonic()
        body = {"action": "msg.send_private", "to_employee_id": bob.employee_id, "content": seq_id}
        sender.publish_request(seq_id, json.dumps(body).encode())
        if not sender.mqtt.wait_for(lambda msgs: sum(m.topic == topic for m in msgs) > seen, timeout):
            raise TimeoutError(seq_id)
        return json.loads(sender.mqtt.messages_on(topic)[-1].payload), time.monotonic() - started

    before, _ = send("before", 10)
    assert before["code"] == 0, before

    database.begin()
    try:
        during = []
        outage_end = time.monotonic() + OUTAGE_SECONDS
        n = 0
        while time.monotonic() < outage_end or n < 2:
            try:
                answer, took = send(f"during{n}", ANSWER_WITHIN)
            except TimeoutError:
                pytest.fail(
                    f"silence: during{n} unanswered for {ANSWER_WITHIN} s ({database.kind})"
                    + bridge_log(bridge)
                )
            during.append((answer, took))
            n += 1
            time.sleep(0.1)
        assert bridge.alive(), bridge_log(bridge)
    finally:
        database.end()

    codes = [a["code"] for a, _ in during]
    assert set(codes) <= {500, 504}, (database.kind, codes)
    for answer, _ in during:
        assert set(answer) == {"seq_id", "code", "message", "data"} and answer["data"]["error_id"]
        assert "Traceback" not in answer["message"]

    # Service resumes by itself: within a bounded time a request succeeds, and the next ones too.
    deadline = time.monotonic() + 30
    recovered_after = None
    attempt = 0
    while time.monotonic() < deadline:
        answer, _ = send(f"after{attempt}", ANSWER_WITHIN)
        attempt += 1
        if answer["code"] == 0:
            recovered_after = attempt
            break
        time.sleep(0.2)
    assert recovered_after is not None, f"no success within 30 s after the outage{bridge_log(bridge)}"
    follow = [send(f"steady{n}", 10)[0]["code"] for n in range(5)]
    assert follow == [0] * 5, follow

    # A request that failed during the outage can be retried with its seq_id: it executes now.
    retried, _ = send("during0", 10)
    assert retried["code"] == 0, retried
    stored = database.messages_from(alice.employee_id)
    assert stored == 1 + recovered_after + 5 + 1, stored  # nothing half-written by the 500s
    assert bridge.alive()
    print(
        f"{database.kind}: {len(during)} requests during the outage -> {sorted(set(codes))}, "
        f"slowest answer {max(t for _, t in during):.2f} s; first success after "
        f"{recovered_after} attempt(s)"
    )
