import gc
import signal
import socket
import threading

from django.core.management.base import BaseCommand, CommandError

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

    def handle(self, *args, instance: str, shared: bool, **options):
        if not instance or len(instance) > 64 or set(instance) - DEVICE_CHARS:
            raise CommandError("--instance: 1-64 characters of [A-Za-z0-9-]")
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        bridge = BridgeClient(instance=instance, shared=shared)
        freeze_start_up()
        self.stdout.write(f"bridge {bridge.client_id} on {socket.gethostname()}: serving {bridge.filter}")
        bridge.run(stop)


def freeze_start_up() -> None:
    """Leave what start-up built (Django, every handler's module: ~300k objects) out of the
    garbage collector's full passes. A full pass over them took ~90 ms, a stall of every
    request in hand that showed as the bridge's p99; now it scans only what came later."""
    for route in ROUTES.values():
        route.handler, route.batch  # noqa: B018 -- import every handler's module now
    gc.collect()
    gc.freeze()
