"""A live MChat for integration tests: a private Mosquitto with the mchat plugin, the broker
files rendered from the test database, a real bridge thread, and real MQTT clients.

    @pytest.mark.broker
    @pytest.mark.django_db(transaction=True)
    def test_something(live):
        alice, alice_pw = live.issue("Alice")
        phone = live.connect(alice, alice_pw, device="phone")
        assert phone.request("auth.challenge")["code"] == 0

The broker runs once per test session; each test gets a fresh bridge (its session discarded
at the end) and the files re-rendered from its own data.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from bench.services import free_port
from bridge import acl
from bridge.broker import build_plugin, render_config
from bridge.client import BridgeClient
from org import services
from org.models import Employee
from tests.broker_harness import ReloadableMosquitto, TestClient, mqtt_client, wait_until

_instances = itertools.count(1)
MARKER_ACTION = "test.marker"  # no such action: every bridge answers it at once, with 400


class LiveClient:
    """One device of one employee: subscribed to its own responses from the start."""

    def __init__(self, mqtt: TestClient, client_id: str):
        self.mqtt = mqtt
        self.client_id = client_id
        self.mqtt.subscribe_and_wait(f"mchat/msg/resp/{client_id}/+")

    def request(self, action: str, *, seq_id: str | None = None, timeout: float = 10.0, **fields) -> dict:
        seq_id = seq_id or uuid.uuid4().hex
        self.publish_request(seq_id, json.dumps({"action": action, **fields}).encode())
        return self.response(seq_id, timeout=timeout)

    def publish_request(self, seq_id: str, payload: bytes) -> None:
        self.mqtt.publish_and_wait(f"mchat/msg/req/{self.client_id}/{seq_id}", payload)

    def response(self, seq_id: str, *, timeout: float = 10.0) -> dict:
        topic = f"mchat/msg/resp/{self.client_id}/{seq_id}"
        received = self.mqtt.wait_for_topic(topic, timeout)
        if received is None:
            raise TimeoutError(f"no response on {topic} within {timeout} s")
        return json.loads(received.payload)

    def subscribe(self, topic: str) -> None:
        self.mqtt.subscribe_and_wait(topic)

    def messages(self, topic: str) -> list[Any]:
        return [json.loads(m.payload) for m in self.mqtt.messages_on(topic)]

    def wait_for(self, predicate, timeout: float = 5.0) -> bool:
        return self.mqtt.wait_for(predicate, timeout)

    def wait_for_count(self, topic: str, count: int, timeout: float = 5.0) -> bool:
        return self.mqtt.wait_for(lambda msgs: sum(m.topic == topic for m in msgs) >= count, timeout)

    def wait_serving(self, timeout: float = 60.0) -> None:
        """Until a bridge answers (a new bridge process takes a moment to start)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.round_trip(timeout=1.0)
                return
            except TimeoutError:
                continue
        raise TimeoutError("no bridge answered")

    def round_trip(self, *, timeout: float = 30.0) -> dict:
        """A marker request: an unknown action, refused with 400 before any database work.
        Once its answer is in, what the bridge serving it published to this client before
        it has arrived too."""
        answer = self.request(MARKER_ACTION, seq_id=f"marker-{uuid.uuid4().hex}", timeout=timeout)
        assert answer["code"] == 400, answer
        return answer

    def close(self) -> None:
        self.mqtt.close()


class LiveStack:
    def __init__(self, broker: ReloadableMosquitto, directory: Path):
        self.broker = broker
        self.directory = directory
        self.port = broker.port
        self._clients: list[LiveClient] = []
        self.bridge: BridgeClient | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start_bridge(
        self, *, instance: str | None = None, shared: bool = False, keep_session: bool = False
    ) -> BridgeClient:
        bridge = BridgeClient(
            instance=instance or f"t{next(_instances)}", shared=shared, keep_session=keep_session
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(bridge,), daemon=True)
        self._thread.start()
        if not bridge.connected.wait(10):
            raise RuntimeError("the bridge did not connect to the test broker")
        self.bridge = bridge
        return bridge

    def _serve(self, bridge: BridgeClient) -> None:
        try:
            bridge.run(self._stop)
        finally:
            connection.close()  # the bridge thread's own database connection

    def stop_bridge(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)
        self._thread = None
        self.bridge = None

    def spawn_bridge(self, *, instance: str, shared: bool = False) -> subprocess.Popen:
        """`manage.py runbridge` as a real process on the test database (so it can be killed)."""
        command = [sys.executable, "manage.py", "runbridge", "--instance", instance]
        return subprocess.Popen(
            command + (["--shared"] if shared else []),
            cwd=settings.BASE_DIR,
            env=self.subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def subprocess_env(self) -> dict[str, str]:
        """Settings for a server process that must share this test's database and broker."""
        return {
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "MCHAT_MQTT_URL": settings.MCHAT_MQTT_URL,
            "MCHAT_BROKER_DIR": str(self.directory),
            "MCHAT_BRIDGE_PASSWORD": settings.MCHAT_BRIDGE_PASSWORD,
            "DJANGO_SECRET_KEY": settings.SECRET_KEY,
            "MCHAT_BROKER_SYNC_DEBOUNCE": "0",
            # Streams of test requests are not what rate limits are for.
            "MCHAT_RATE_LIMITS": json.dumps({name: [10_000, 10_000] for name in settings.MCHAT_RATE_LIMITS}),
        }

    def issue(self, name: str, *, org_admin: bool = False, agent: bool = False) -> tuple[Employee, str]:
        """A new employee through the real service (broker files re-rendered on commit)."""
        issued = services.employee_create(actor=None, name=name, is_org_admin=org_admin, is_ai_agent=agent)
        return issued.employee, issued.password

    def connect(
        self, employee: Employee | str, password: str, *, device: str = "dev1", **options
    ) -> LiveClient:
        employee_id = employee if isinstance(employee, str) else employee.employee_id
        client_id = f"{employee_id}_{device}"
        client = LiveClient(mqtt_client(self.port, employee_id, password, client_id, **options), client_id)
        self._clients.append(client)
        return client

    def wait_disconnected(self, client_id: str, timeout: float = 10.0) -> None:
        """Until the broker logs that `client_id` is gone: it has sent (or refused) its Will by then."""

        def gone() -> bool:
            log = self.broker.log_file.read_text(errors="replace")
            return any(
                client_id in line and ("closed its connection" in line or "disconnecting" in line)
                for line in log.splitlines()
            )

        if not wait_until(gone, timeout, interval=0.02):
            raise TimeoutError(f"the broker did not log that {client_id} is gone")

    def wait_memberships_loaded(self, count: int, timeout: float = 10.0) -> None:
        """Until the broker's plugin has (re)loaded the groups file with `count` memberships
        (it watches the file: a member's first delivery can precede the reload by ~100 ms)."""
        needle = f"mchat_auth: loaded {count} group memberships"

        def loaded() -> bool:
            log = self.broker.log_file.read_text(errors="replace")
            lines = [line for line in log.splitlines() if "group memberships" in line]
            return bool(lines) and needle in lines[-1]

        if not wait_until(loaded, timeout, interval=0.02):
            raise TimeoutError(f"the broker did not load {count} group memberships")

    def broker_log_mark(self) -> int:
        """Where the broker's log ends now, for `broker_log_since`."""
        return self.broker.log_file.stat().st_size

    def broker_log_since(self, mark: int, needles: tuple[str, ...]) -> list[str]:
        """The broker's log lines written after `mark` that contain any of `needles`."""
        with open(self.broker.log_file, "rb") as log:
            log.seek(mark)
            text = log.read().decode(errors="replace")
        return [line for line in text.splitlines() if any(needle in line for needle in needles)]

    def close_clients(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()


def test_database_url() -> str:
    """DATABASE_URL of the database this test runs on (pytest-django's test database)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture(scope="session")
def live_broker(tmp_path_factory):
    build_plugin()
    directory = tmp_path_factory.mktemp("live-broker")
    conf = render_config(port=free_port(), ws_port=free_port(), directory=directory)
    broker = ReloadableMosquitto(conf)
    broker.start()
    yield broker, directory
    broker.stop()


@pytest.fixture
def live(live_broker, transactional_db, settings):
    broker, directory = live_broker
    settings.MCHAT_BROKER_DIR = directory
    settings.MCHAT_MQTT_URL = f"mqtt://127.0.0.1:{broker.port}"
    settings.MCHAT_PUBLIC_MQTT_PORT = broker.port
    acl.sync()
    broker.reload()  # sync's SIGHUP is asynchronous; this waits until it has been applied
    stack = LiveStack(broker, directory)
    stack.start_bridge()
    yield stack
    stack.close_clients()
    stack.stop_bridge()
