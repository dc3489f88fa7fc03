"""Metrics, health checks and JSON logs (issue 15 item 6): the web's /metrics and /healthz, the
bridge's own loopback port with /metrics and /healthz, and MCHAT_LOG_JSON=1."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from django.conf import settings
from django.db import DatabaseError

from bench.services import free_port
from bridge import metrics
from mchat.logs import JsonFormatter
from tests.broker_harness import wait_until


def _get(url: str, timeout: float = 10) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _sample(text: str, name: str, **labels: str) -> float:
    """One sample's value from Prometheus text (0 when absent)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = (
        rf"^{re.escape(name)}(?:\{{{re.escape(wanted)}\}})? (\S+)$"
        if labels
        else rf"^{re.escape(name)} (\S+)$"
    )
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


# --- web ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_web_metrics_for_a_local_scraper_only(client, settings):
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    assert "django_http_requests_total_by_view_transport_method_total" in text
    assert 'view="healthz"' in text
    # Relayed by a reverse proxy: refused.
    assert client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403
    settings.MCHAT_METRICS_TOKEN = "s3cret-token"
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200


@pytest.mark.django_db
def test_web_health_reports_an_unreachable_database(client, monkeypatch):
    assert client.get("/healthz").json() == {"status": "ok"}

    def refuse(*args, **kwargs):
        raise DatabaseError("connection refused")

    monkeypatch.setattr("mchat.health.connection.cursor", refuse)
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["database"] == "unreachable"


# --- bridge -------------------------------------------------------------------------------------


@pytest.mark.broker
def test_bridge_metrics_and_liveness(live):
    alice, password = live.issue("Alice")
    device = live.connect(alice, password)
    bridge = live.bridge
    metrics.watch(pending_requests=lambda: len(bridge._pending), publish_queue=bridge.publish_queue_length)
    server = metrics.MetricsServer(
        host="127.0.0.1",
        port=0,
        healthy=lambda: metrics.liveness(
            connected=bridge.connected, last_turn=lambda: bridge.last_turn, stale_after=30
        ),
    ).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        _, before = _get(f"{base}/metrics")
        assert device.request("auth.challenge")["code"] == 0
        assert device.request("no.such_action")["code"] == 400

        def counted() -> str | None:
            # The bridge counts a batch after writing its answers, so a scrape right after an
            # answer may come first: wait (bounded) until the 400 is counted, then compare.
            status, text = _get(f"{base}/metrics")
            assert status == 200
            unknown = _sample(text, "mchat_bridge_requests_total", action="unknown", code="400")
            return (
                text
                if unknown > _sample(before, "mchat_bridge_requests_total", action="unknown", code="400")
                else None
            )

        text = wait_until(counted, timeout=10)
        assert text, "the 400 was never counted"
        ok = _sample(text, "mchat_bridge_requests_total", action="auth.challenge", code="0")
        assert ok - _sample(before, "mchat_bridge_requests_total", action="auth.challenge", code="0") == 1
        unknown = _sample(text, "mchat_bridge_requests_total", action="unknown", code="400")
        assert unknown - _sample(before, "mchat_bridge_requests_total", action="unknown", code="400") == 1
        assert (
            _sample(text, "mchat_bridge_batch_size_count")
            >= _sample(before, "mchat_bridge_batch_size_count") + 2
        )
        assert _sample(text, "mchat_bridge_request_seconds_count", action="auth.challenge") >= 1
        assert _sample(text, "mchat_bridge_broker_connects_total") >= 1
        for gauge in (
            "mchat_bridge_pending_requests",
            "mchat_bridge_publish_queue",
            "mchat_bridge_agent_waits_pending",
        ):
            assert re.search(rf"^{gauge} \d", text, re.MULTILINE), gauge

        status, body = _get(f"{base}/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
        live.stop_bridge()
        status, body = _get(f"{base}/healthz")
        assert status == 503 and json.loads(body)["broker_connected"] is False
        assert _get(f"{base}/other")[0] == 404
    finally:
        server.stop()


@pytest.mark.broker
@pytest.mark.timeout(120)
def test_runbridge_serves_health_and_metrics_on_its_own_loopback_port(live):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runbridge", "--instance", "metrics1", "--metrics-port", str(port)],
        cwd=settings.BASE_DIR,
        env=live.subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status, _ = _get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            except OSError:  # not listening yet
                status = None
            if status == 200:
                break
            time.sleep(0.1)
        assert status == 200, process.stdout.read() if process.poll() is not None else "no answer"
        status, text = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "mchat_bridge_broker_connects_total 1.0" in text
    finally:
        process.terminate()
        process.wait(30)


# --- logs ---------------------------------------------------------------------------------------


def test_json_formatter_writes_one_object_per_record():
    formatter = JsonFormatter()
    record = logging.LogRecord("mchat.bridge", logging.WARNING, __file__, 1, "slow batch: %d 条", (3,), None)
    record.request_id = "r1"
    entry = json.loads(formatter.format(record))
    assert entry["level"] == "WARNING" and entry["logger"] == "mchat.bridge"
    assert entry["message"] == "slow batch: 3 条" and entry["request_id"] == "r1"
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = formatter.format(record)
    assert "\n" not in line and "RuntimeError: boom" in json.loads(line)["exception"]


def test_mchat_log_json_makes_every_log_line_a_json_object():
    script = (
        "import logging; log = logging.getLogger('mchat.demo'); log.warning('第一行 %s', 1)\n"
        "try:\n    1/0\nexcept ZeroDivisionError:\n    log.exception('second')\n"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=settings.BASE_DIR,
        env={**os.environ, "MCHAT_LOG_JSON": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line parses
    assert [e["message"] for e in entries] == ["第一行 1", "second"]
    assert "ZeroDivisionError" in entries[1]["exception"]
