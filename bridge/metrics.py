"""The bridge's Prometheus metrics and liveness, on its own port (127.0.0.1 unless configured).

    GET /metrics  Prometheus text format
    GET /healthz  200 {"status": "ok"} while the loop turns and the broker connection is up,
                  503 otherwise (for runstack, systemd, a load balancer or Kubernetes probe)

The request loop only adds to counters and histograms it already holds (no label lookups per
request beyond a dict hit); the gauges are computed when scraped, in the server's thread.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.db import connection
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

logger = logging.getLogger("mchat.bridge")

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter(
    "mchat_bridge_requests",
    "Requests answered, by action and response code (deferred: answered later, e.g. by an agent)",
    ["action", "code"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "mchat_bridge_request_seconds",
    "Time from a request's batch starting to its answer being written, by action",
    ["action"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "mchat_bridge_batch_size",
    "Messages served together in one batch",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    registry=REGISTRY,
)
BATCH_SECONDS = Histogram(
    "mchat_bridge_batch_seconds",
    "Time to serve one batch (database, publishing and acknowledgements)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
CONNECTS = Counter(
    "mchat_bridge_broker_connects",
    "Successful connections to the broker (the first one included)",
    registry=REGISTRY,
)
DISCONNECTS = Counter(
    "mchat_bridge_broker_disconnects", "Connections to the broker lost or closed", registry=REGISTRY
)

UNKNOWN_ACTION = "unknown"  # malformed requests and actions no route serves (bounded labels)


class RequestMetrics:
    """Counts one batch's outcomes; label children cached so the hot path does dict hits."""

    def __init__(self) -> None:
        self._counters: dict[tuple[str, str], Counter] = {}
        self._latency: dict[str, Histogram] = {}

    def batch(self, size: int, seconds: float, outcomes) -> None:
        BATCH_SIZE.observe(size)
        BATCH_SECONDS.observe(seconds)
        for outcome in outcomes:
            action = outcome.action or UNKNOWN_ACTION
            code = "deferred" if outcome.response is None else str(outcome.response.get("code"))
            counter = self._counters.get((action, code))
            if counter is None:
                counter = self._counters[(action, code)] = REQUESTS.labels(action, code)
            counter.inc()
            latency = self._latency.get(action)
            if latency is None:
                latency = self._latency[action] = REQUEST_SECONDS.labels(action)
            latency.observe(seconds)


def pending_agent_waits() -> float:
    """Sends to agents waiting for the agent's acknowledgement (all bridge processes)."""
    from messaging.models import AgentAckWait

    try:
        return AgentAckWait.objects.filter(state=AgentAckWait.State.PENDING).count()
    finally:
        connection.close()  # the server thread's own connection, not kept between scrapes


class MetricsServer:
    """A small HTTP server thread serving /metrics and /healthz for one bridge process."""

    def __init__(self, *, host: str, port: int, healthy: Callable[[], dict]):
        self._healthy = healthy
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/metrics":
                    body, status, kind = generate_latest(REGISTRY), 200, CONTENT_TYPE_LATEST
                elif self.path == "/healthz":
                    state = server._healthy()
                    body = json.dumps(state).encode()
                    status, kind = (200 if state["status"] == "ok" else 503), "application/json"
                else:
                    body, status, kind = b"not found\n", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):  # scrapes are not news
                return

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.host, self.port = self._httpd.server_address[:2]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="bridge-metrics", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        logger.info("bridge metrics and health on http://%s:%d/metrics, /healthz", self.host, self.port)
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


PENDING_REQUESTS = Gauge(
    "mchat_bridge_pending_requests", "Requests received and not answered yet", registry=REGISTRY
)
PUBLISH_QUEUE = Gauge(
    "mchat_bridge_publish_queue",
    "MQTT packets queued for the broker and not written yet (handed over from other threads included)",
    registry=REGISTRY,
)
AGENT_WAITS = Gauge(
    "mchat_bridge_agent_waits_pending",
    "Private messages to AI agents waiting for the agent's acknowledgement (all bridges)",
    registry=REGISTRY,
)
AGENT_WAITS.set_function(pending_agent_waits)


def watch(*, pending_requests: Callable[[], int], publish_queue: Callable[[], int]) -> None:
    """Point the per-process gauges at this process's bridge (read when scraped)."""
    PENDING_REQUESTS.set_function(pending_requests)
    PUBLISH_QUEUE.set_function(publish_queue)


def liveness(*, connected: threading.Event, last_turn: Callable[[], float], stale_after: float) -> dict:
    """ok while connected to the broker and the loop turned within `stale_after` seconds."""
    idle = time.monotonic() - last_turn()
    ok = connected.is_set() and idle < stale_after
    return {
        "status": "ok" if ok else "unavailable",
        "broker_connected": connected.is_set(),
        "loop_idle_s": round(idle, 3),
    }
