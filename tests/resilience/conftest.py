"""Resilience tests run real `manage.py runbridge` processes (so kill -9 is real) against the
test database, a real Mosquitto, and real clients. Every wait is bounded; every process is
stopped by pid at the end and its persistent broker session discarded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.services import BridgeProcess, free_port
from bridge import acl
from bridge.broker import build_plugin, render_config
from tests.broker_harness import ReloadableMosquitto, mqtt_client
from tests.live import LiveClient, LiveStack


def wait_serving(device: LiveClient, process: BridgeProcess | None = None, timeout: float = 45.0) -> None:
    """Until some bridge answers `device` (a new process needs a few seconds to start)."""
    try:
        device.wait_serving(timeout)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc} within {timeout} s" + (bridge_log(process) if process else "")) from None


def discard_session(port: int, username: str, password: str, client_id: str) -> None:
    """Connect with a clean start and no session expiry: the broker drops the old session
    (a killed bridge's persistent session would otherwise queue requests forever)."""
    try:
        client = mqtt_client(port, username, password, client_id, clean_start=True, session_expiry=0)
    except (ConnectionRefusedError, OSError):
        return
    client.close()


@pytest.fixture
def bridges(tmp_path, settings):
    """Factory for bridge processes: `bridges(stack, "name", env={...})`. Logs go to files
    (a pipe nobody reads would block a chatty bridge); everything is stopped at the end."""
    started: list[tuple[BridgeProcess, LiveStack]] = []

    def spawn(stack: LiveStack, instance: str, *, env: dict[str, str] | None = None, shared=False):
        process = BridgeProcess(
            env={**stack.subprocess_env(), **(env or {})},
            instance=instance,
            shared=shared,
            log_path=tmp_path / f"bridge-{instance}-{len(started)}.log",
        ).start()
        started.append((process, stack))
        return process

    yield spawn
    for process, _ in started:
        process.stop(timeout=10)
    for instance, stack in {(p.instance, s) for p, s in started}:
        if stack.broker.is_running():
            discard_session(
                stack.port,
                settings.MCHAT_BRIDGE_USERNAME,
                settings.MCHAT_BRIDGE_PASSWORD,
                f"{settings.MCHAT_BRIDGE_USERNAME}_{instance}",
            )


@pytest.fixture
def own_broker(transactional_db, settings, tmp_path):
    """A LiveStack on a private Mosquitto (persistence on) that a test may stop and restart,
    without an in-process bridge."""
    build_plugin()
    directory: Path = tmp_path / "own-broker"
    broker = None
    for attempt in range(3):  # a free port can be taken between probe and bind
        broker = ReloadableMosquitto(render_config(port=free_port(), directory=directory))
        try:
            broker.start()
            break
        except RuntimeError:
            if attempt == 2:
                raise
    settings.MCHAT_BROKER_DIR = directory
    settings.MCHAT_MQTT_URL = f"mqtt://127.0.0.1:{broker.port}"
    settings.MCHAT_PUBLIC_MQTT_PORT = broker.port
    acl.sync()
    broker.reload()
    stack = LiveStack(broker, directory)
    yield stack
    stack.close_clients()
    broker.stop()


def bridge_log(process: BridgeProcess) -> str:
    return f"\n--- {process.log_path.name}\n{process.log_tail(4000)}"
