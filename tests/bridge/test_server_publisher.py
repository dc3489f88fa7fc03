"""The publishing client of the processes that serve no requests (web, Celery workers, runstack
itself: bridge.client.server_publisher_client), started before its broker is up, as on a first
`make up` or while the broker restarts: the wait is a warning, never an ERROR line, and what
was published meanwhile reaches the broker once it answers."""

from __future__ import annotations

import logging

import pytest

from bench.services import free_port
from bridge import acl
from bridge.broker import MosquittoProcess, build_plugin, render_config
from bridge.client import server_publisher_client
from tests.broker_harness import mqtt_client, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.django_db]

TOPIC = "mchat/inbox/emp_early_001"


def test_published_before_the_broker_is_up_arrives_without_an_error_line(settings, caplog):
    build_plugin()
    port = free_port()
    settings.MCHAT_MQTT_URL = f"mqtt://127.0.0.1:{port}"
    conf = render_config(
        port=port, directory=settings.MCHAT_BROKER_DIR, bridge_user=settings.MCHAT_BRIDGE_USERNAME
    )
    acl.sync()  # the bridge's credential in the passwd file
    broker = MosquittoProcess(conf)
    watcher = None
    with caplog.at_level(logging.DEBUG, logger="mchat.bridge"):
        client = server_publisher_client()
        try:
            client.publish(TOPIC, b'{"early":true}', qos=1, retain=True)
            # Nobody listens: paho's thread has failed to connect and passed the point where it
            # logged ERROR "Client is not connected" before trying again.
            assert wait_until(lambda: _logged(caplog, "Client is not connected"), timeout=10)
            broker.start()
            watcher = mqtt_client(
                port, settings.MCHAT_BRIDGE_USERNAME, settings.MCHAT_BRIDGE_PASSWORD, "mchat-bridge_watch"
            )
            watcher.subscribe_and_wait(TOPIC)
            # paho retries 1 s, 2 s, 4 s ... after the first attempt: the message is retained.
            assert watcher.wait_for_topic(TOPIC, timeout=20) is not None
        finally:
            client.disconnect()
            client.loop_stop()
            if watcher is not None:
                watcher.close()
            broker.stop()
    ours = [r for r in caplog.records if r.name.startswith("mchat.bridge")]
    assert [r.getMessage() for r in ours if r.levelno >= logging.ERROR] == []
    waits = {r.levelno for r in ours if r.getMessage().startswith("Client is not connected")}
    assert waits == {logging.DEBUG}  # paho's line, kept for debugging
    assert any(
        r.levelno == logging.WARNING
        and r.getMessage() == f"cannot reach the broker at 127.0.0.1:{port}; retrying"
        for r in ours
    )


def _logged(caplog, start: str) -> bool:
    return any(r.getMessage().startswith(start) for r in caplog.records)
