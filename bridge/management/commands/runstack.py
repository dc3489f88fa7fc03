"""`make up`: the whole MChat on one machine, in the foreground, until Ctrl-C.

Mosquitto (with the mchat plugin, files under var/broker), the bridge, the web admin and, when
CELERY_BROKER_URL is set, a Celery worker. A demo org admin is created on first start.
"""

import json
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from bridge import acl
from bridge.broker import MosquittoProcess, build_plugin, render_config
from org import services, web_auth
from org.models import Employee

DEMO_FILE = "demo-admin.json"


class Command(BaseCommand):
    help = "Run broker, bridge, web admin (and a worker if configured) until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--web", default="127.0.0.1:8000", help="address of the web admin")

    def handle(self, *args, web: str, **options):
        call_command("migrate", interactive=False, verbosity=0)
        demo = self._demo_admin()
        build_plugin()
        broker_dir = Path(settings.MCHAT_BROKER_DIR)
        conf = render_config(
            port=settings.MCHAT_BROKER_PORT,
            ws_port=settings.MCHAT_WS_PORT,
            directory=broker_dir,
            bridge_user=settings.MCHAT_BRIDGE_USERNAME,
        )
        broker = MosquittoProcess(conf)
        broker.start()
        acl.sync()
        children = [self._spawn("runbridge"), self._spawn("runserver", web, "--noreload")]
        if settings.CELERY_BROKER_URL:
            children.append(
                subprocess.Popen([sys.executable, "-m", "celery", "-A", "mchat", "worker", "-l", "info"])
            )
        self._banner(demo, web)
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        try:
            while not stopping and all(child.poll() is None for child in children) and broker.is_running():
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
