"""`make up`: the whole MChat on one machine, in the foreground, until Ctrl-C.

Mosquitto (with the mchat plugin, files under var/broker), the bridge, the web process
(gunicorn, static files by WhiteNoise) and the periodic clean-ups: a Celery worker and beat when
CELERY_BROKER_URL is set, `manage.py runschedule` otherwise. A demo org admin is created on first start.
"""

import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from bridge import acl
from bridge.broker import (
    MosquittoProcess,
    TlsConfigError,
    TlsFiles,
    build_plugin,
    max_connections_for,
    open_files_limit_raise,
    render_config,
)
from mchat import local_state
from org import services, web_auth
from org.models import Employee

DEMO_FILE = "demo-admin.json"
logger = logging.getLogger("mchat.runstack")


DEFAULT_BRIDGE_METRICS_PORT = 9310
LIVENESS_EVERY_SECONDS = 10
START_GRACE_SECONDS = 120  # a bridge that is still starting is not reported


class BridgeLiveness:
    """Probes the bridge's /healthz now and then; says when it stops or starts answering ok."""

    def __init__(self, url: str):
        self.url = url
        self.healthy: bool | None = None
        self._started = time.monotonic()
        self._next = self._started + LIVENESS_EVERY_SECONDS

    def check(self) -> None:
        if time.monotonic() < self._next:
            return
        self._next = time.monotonic() + LIVENESS_EVERY_SECONDS
        try:
            with urllib.request.urlopen(self.url, timeout=2) as response:
                healthy, detail = response.status == 200, response.read().decode()
        except urllib.error.HTTPError as exc:
            healthy, detail = False, exc.read().decode(errors="replace")
        except OSError as exc:
            healthy, detail = False, str(exc)
        if self.healthy is None and not healthy and time.monotonic() < self._started + START_GRACE_SECONDS:
            return  # still starting
        if healthy != self.healthy:
            (logger.info if healthy else logger.warning)("bridge liveness %s: %s", self.url, detail)
        self.healthy = healthy


class Command(BaseCommand):
    help = "Run broker, bridge, web admin (and a worker if configured) until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--web", default="127.0.0.1:8000", help="address of the web admin")

    def handle(self, *args, web: str, **options):
        tls = self._tls_files()
        # var/, its folders and the two secrets: made here, before any other process starts,
        # so that all of them read the same files (importing settings creates nothing).
        local_state.adopt(
            settings,
            local_state.ensure(
                settings.VAR_DIR, [Path(settings.MCHAT_BROKER_DIR), Path(settings.MCHAT_STORAGE_DIR)]
            ),
        )
        call_command("migrate", interactive=False, verbosity=0)
        if not (Path(settings.STATIC_ROOT) / "staticfiles.json").exists():
            # `make up` collects them; a bare runstack must not serve pages naming missing files.
            call_command("collectstatic", interactive=False, verbosity=0)
        # Mosquitto needs one descriptor per connection (bench/CAPACITY.md); every child inherits it.
        open_files = open_files_limit_raise()
        build_plugin()
        broker_dir = Path(settings.MCHAT_BROKER_DIR)
        conf = render_config(
            port=settings.MCHAT_BROKER_PORT,
            ws_port=settings.MCHAT_WS_PORT,
            directory=broker_dir,
            bridge_user=settings.MCHAT_BRIDGE_USERNAME,
            tls=tls,
            tls_port=settings.MCHAT_TLS_PORT,
            max_connections=settings.MCHAT_BROKER_MAX_CONNECTIONS or max_connections_for(open_files),
        )
        broker = MosquittoProcess(conf)
        broker.start()
        try:
            # With the broker up: creating the demo admin publishes its profile event, and this
            # process's publisher would otherwise find nobody listening.
            demo = self._demo_admin()
            acl.sync()
        except BaseException:
            broker.stop()
            raise
        metrics_port = settings.MCHAT_BRIDGE_METRICS_PORT or DEFAULT_BRIDGE_METRICS_PORT
        bridge_health = f"http://{settings.MCHAT_METRICS_HOST}:{metrics_port}/healthz"
        children = [self._spawn("runbridge", "--metrics-port", str(metrics_port)), self._web(web)]
        if settings.CELERY_BROKER_URL:
            celery = [sys.executable, "-m", "celery", "-A", "mchat"]
            beat_file = Path(settings.VAR_DIR) / "celerybeat-schedule"
            children.append(subprocess.Popen([*celery, "worker", "-l", "info"], cwd=settings.BASE_DIR))
            children.append(
                subprocess.Popen([*celery, "beat", "-l", "info", "-s", str(beat_file)], cwd=settings.BASE_DIR)
            )
        else:
            # The same periodic tasks as beat's, on a timer in a process of their own.
            children.append(self._spawn("runschedule"))
        self._banner(demo, web)
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        bridge_alive = BridgeLiveness(bridge_health)
        try:
            while not stopping and all(child.poll() is None for child in children) and broker.is_running():
                bridge_alive.check()
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            for child in children:
                try:
                    child.wait(10)
                except subprocess.TimeoutExpired:
                    child.kill()
            broker.stop()
            self.stdout.write("MChat stopped.")

    def _tls_files(self) -> TlsFiles | None:
        """MCHAT_TLS_CERT / _KEY / _CA, checked before anything starts (CommandError naming
        the file that is missing or unreadable)."""
        cert, key, ca = settings.MCHAT_TLS_CERT, settings.MCHAT_TLS_KEY, settings.MCHAT_TLS_CA
        if not (cert or key):
            return None
        if not (cert and key):
            missing = "MCHAT_TLS_KEY" if cert else "MCHAT_TLS_CERT"
            raise CommandError(f"TLS: {missing} is not set (MCHAT_TLS_CERT and MCHAT_TLS_KEY go together)")
        tls = TlsFiles(Path(cert), Path(key), Path(ca) if ca else None)
        try:
            tls.check()
        except TlsConfigError as exc:
            raise CommandError(f"TLS: {exc}") from None
        return tls

    def _web(self, bind: str) -> subprocess.Popen:
        """gunicorn with mchat/gunicorn_conf.py (static files by WhiteNoise), never runserver."""
        # Prometheus multi-process mode: /metrics sums every worker's numbers.
        metrics_dir = Path(settings.VAR_DIR) / "prometheus-web"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "python:mchat.gunicorn_conf",
                "--bind",
                bind,
                "mchat.wsgi:application",
            ],
            cwd=settings.BASE_DIR,
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
        )

    def _spawn(self, *command: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "manage.py", *command], cwd=settings.BASE_DIR)

    def _demo_admin(self) -> dict:
        """The demo org admin's login, created on first start and kept under var/ (mode 600)."""
        path = Path(settings.VAR_DIR) / DEMO_FILE
        if path.exists():
            demo = json.loads(path.read_text())
            if Employee.objects.filter(employee_id=demo["employee_id"], is_active=True).exists():
                return demo
        if Employee.objects.filter(is_org_admin=True, is_active=True).exists() and not path.exists():
            return {}
        issued = services.employee_create(actor=None, name="演示管理员", is_org_admin=True)
        demo = {
            "employee_id": issued.employee.employee_id,
            "mqtt_connection": issued.mqtt_connection(),
            # An initial web password: the web client asks for a new one at first sign-in.
            "web_password": web_auth.web_password_set(employee=issued.employee),
        }
        path.write_text(json.dumps(demo, ensure_ascii=False, indent=2))
        path.chmod(0o600)
        User = get_user_model()
        if not User.objects.filter(username="admin").exists():
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser("admin", "", password)
            demo["console"] = {"username": "admin", "password": password}
            path.write_text(json.dumps(demo, ensure_ascii=False, indent=2))
        return demo

    def _banner(self, demo: dict, web: str) -> None:
        port = settings.MCHAT_BROKER_PORT
        self.stdout.write(
            self.style.SUCCESS(
                f"\nMChat is running. Broker 127.0.0.1:{port} (WebSockets {settings.MCHAT_WS_PORT}), "
                f"web client http://{web}/, admin http://{web}/admin/"
            )
        )
        if not demo:
            self.stdout.write("An org admin already exists; create more with manage.py createemployee.")
            return
        conn = demo["mqtt_connection"]
        cid = f"{demo['employee_id']}_cli"
        self.stdout.write(f"Demo org admin (saved in var/{DEMO_FILE}):")
        self.stdout.write(json.dumps(demo, ensure_ascii=False, indent=2))
        req, resp = f"mchat/msg/req/{cid}/1", f"mchat/msg/resp/{cid}/1"
        self.stdout.write("Try it (request and response on one connection, as the ACL requires):")
        self.stdout.write(
            f"  mosquitto_rr -h 127.0.0.1 -p {port} -i {cid} -u {conn['mqtt_username']} "
            f"-P '{conn['mqtt_password']}' -t {req} -e {resp} -m '{{\"action\":\"auth.challenge\"}}'"
        )
        self.stdout.write("Ctrl-C stops everything.\n")
