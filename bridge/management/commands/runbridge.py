import gc
import signal
import socket
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from bridge import metrics
from bridge.client import BridgeClient
from bridge.routes import ROUTES

DEVICE_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


class Command(BaseCommand):
    help = "Run the MQTT bridge: serve mchat/msg/req/# until SIGTERM or SIGINT."

    def add_arguments(self, parser):
        parser.add_argument(
            "--instance",
            default="b1",
            help="Stable name of this process (client id mchat-bridge_{instance}); keep it the "
            "same across restarts so the persistent session's queued requests are served.",
        )
        parser.add_argument(
            "--shared",
            action="store_true",
            help="Share the request stream with other bridge processes (MQTT 5 shared "
            "subscription $share/mchat-bridge/...). Each process needs its own --instance.",
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=None,
            help="Serve Prometheus /metrics and the liveness check /healthz on this port "
            "(MCHAT_METRICS_HOST, 127.0.0.1 by default); default MCHAT_BRIDGE_METRICS_PORT, 0 = off. "
            "Each bridge process on a host needs its own.",
        )

    def handle(self, *args, instance: str, shared: bool, metrics_port: int | None, **options):
        if not instance or len(instance) > 64 or set(instance) - DEVICE_CHARS:
            raise CommandError("--instance: 1-64 characters of [A-Za-z0-9-]")
        if metrics_port is None:
            metrics_port = settings.MCHAT_BRIDGE_METRICS_PORT
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        keep_database_connections()
        bridge = BridgeClient(instance=instance, shared=shared)
        server = self._metrics_server(bridge, metrics_port) if metrics_port else None
        freeze_start_up()
        self.stdout.write(f"bridge {bridge.client_id} on {socket.gethostname()}: serving {bridge.filter}")
        try:
            bridge.run(stop)
        finally:
            if server is not None:
                server.stop()

    def _metrics_server(self, bridge: BridgeClient, port: int) -> metrics.MetricsServer:
        metrics.watch(
            pending_requests=lambda: len(bridge._pending), publish_queue=bridge.publish_queue_length
        )
        try:
            server = metrics.MetricsServer(
                host=settings.MCHAT_METRICS_HOST,
                port=port,
                healthy=lambda: metrics.liveness(
                    connected=bridge.connected,
                    last_turn=lambda: bridge.last_turn,
                    stale_after=settings.MCHAT_BRIDGE_STALE_SECONDS,
                ),
            )
        except OSError as exc:
            raise CommandError(
                f"--metrics-port {port}: cannot listen on {settings.MCHAT_METRICS_HOST}: {exc}"
            ) from None
        return server.start()


def persistent(database: dict) -> None:
    """One database's settings for a process that serves requests for its whole life: its
    connection is kept (CONN_MAX_AGE None) instead of being replaced every DATABASE_CONN_MAX_AGE
    seconds by the periodic close_old_connections (a new backend, every statement prepared
    again), and checked instead (CONN_HEALTH_CHECKS: a SELECT 1 before the first statement after
    each periodic check; a broken connection is closed and the next statement opens a new one).
    DATABASE_CONN_MAX_AGE=0 (no reuse, as on SQLite) is left as it is."""
    if database.get("CONN_MAX_AGE") != 0:
        database["CONN_MAX_AGE"] = None
        database["CONN_HEALTH_CHECKS"] = True


def keep_database_connections() -> None:
    """The bridge process's connections persistent (see `persistent`); the web's are unchanged,
    since only this process calls it. Connections opened before (start-up checks) are closed so
    that the next one is opened with these settings."""
    for alias in connections:
        persistent(connections.settings[alias])
    connections.close_all()


def freeze_start_up() -> None:
    """Leave what start-up built (Django, every handler's module: ~300k objects) out of the
    garbage collector's full passes. A full pass over them took ~90 ms, a stall of every
    request in hand that showed as the bridge's p99; now it scans only what came later."""
    for route in ROUTES.values():
        route.handler, route.batch  # noqa: B018 -- import every handler's module now
    gc.collect()
    gc.freeze()
