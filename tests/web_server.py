"""The web process as deployed, for tests: static files collected as `make` collects them, and
gunicorn (mchat/gunicorn_conf.py) serving the test database on a free loopback port.

    def test_something(web_server):
        urllib.request.urlopen(f"{web_server.url}/healthz")
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.management import call_command

from bench.services import free_port
from tests.live import test_database_url


def _static_sources_newest() -> float:
    newest = 0.0
    for finder in finders.get_finders():
        for path, storage in finder.list([]):
            newest = max(newest, os.stat(storage.path(path)).st_mtime)
    return newest


@pytest.fixture(scope="session", autouse=True)
def static_files():
    """STATIC_ROOT with its manifest: every page names hashed files from it. `make test` has
    just collected them; a bare `pytest` collects here when the sources are newer."""
    manifest = Path(settings.STATIC_ROOT) / "staticfiles.json"
    if not manifest.exists() or manifest.stat().st_mtime < _static_sources_newest():
        call_command("collectstatic", interactive=False, verbosity=0)
    return Path(settings.STATIC_ROOT)


class WebServer:
    """`gunicorn -c python:mchat.gunicorn_conf mchat.wsgi` as a child process; its output kept."""

    def __init__(self, env: dict[str, str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "python:mchat.gunicorn_conf",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "1",
                "mchat.wsgi:application",
            ],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:  # refused, reset, or a read timed out while it starts
                time.sleep(0.1)
        raise RuntimeError("gunicorn did not become healthy:\n" + "".join(self.lines[-40:]))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def web_env(**extra: str) -> dict[str, str]:
    """Environment of a web process on this test's database and static files."""
    return {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "MCHAT_BRIDGE_PASSWORD": settings.MCHAT_BRIDGE_PASSWORD,
        "MCHAT_STATIC_ROOT": str(settings.STATIC_ROOT),
        "MCHAT_BROKER_DIR": str(settings.MCHAT_BROKER_DIR),
        **extra,
    }


@pytest.fixture
def web_server(transactional_db, static_files):
    server = WebServer(web_env())
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
