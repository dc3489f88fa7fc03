"""Processes the benchmark (and tests/resilience) start and stop by pid: a private PostgreSQL
cluster, a private redis-server (the tests' too), `manage.py runbridge` subprocesses, and the
environment a bridge process needs; and the free loopback ports they (and the tests' brokers
and servers) listen on.

No Django import here: the benchmark configures Django only after the database exists.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
MANAGE_PY = REPO_DIR / "manage.py"

# Rate limits high enough never to cap a benchmark or a resilience test.
UNLIMITED_RATES = {name: [1_000_000, 1_000_000] for name in ("auth", "read", "write", "message")}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """SIGTERM if it still runs, SIGKILL after `timeout`; its exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


class RedisUnavailable(RuntimeError):
    """No redis-server on this machine, or it did not answer."""


class RedisServer:
    """A private redis-server on a free 127.0.0.1 port, without persistence, stopped by its pid:
    `with RedisServer() as redis: ... redis.url`, or `start()` and `stop()`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Returns once it accepts connections; RedisUnavailable (and nothing left running)
        without redis-server or when it does not answer within `timeout`."""
        server = shutil.which("redis-server")
        if server is None:
            raise RedisUnavailable("redis-server is not installed (make system-deps installs it)")
        self._proc = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C meant for the caller does not reach it first
        )
        answered = wait_until(lambda: self._proc.poll() is not None or self._answers(), timeout, 0.05)
        if not answered or self._proc.poll() is not None:
            self.stop()
            raise RedisUnavailable(f"redis-server did not start on 127.0.0.1:{self.port}")
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def postgres_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/*/bin that has pg_ctl, or None."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: [int(x) if x.isdigit() else x for x in p.parent.parent.name.split(".")],
    )
    return candidates[-1].parent if candidates else None


def _as_postgres(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """PostgreSQL refuses to run as root: run its tools as the `postgres` user when we are root."""
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--", *args]
    return subprocess.run(args, check=True, capture_output=True, text=True, **kwargs)


class PostgresCluster:
    """A throwaway cluster in `directory` on a free 127.0.0.1 port (recipe of
    /work/shared/notes/services-as-root.md). `settings` become `-c name=value` options."""

    def __init__(self, directory: Path, *, settings: dict[str, str] | None = None) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql")
        self.bin = bin_dir
        self.directory = Path(directory)
        self.data = self.directory / "pgdata"
        self.sockets = self.directory / "pgsock"
        self.log = self.sockets / "postgres.log"
        self.port = free_port()
        self.settings = {"listen_addresses": "127.0.0.1", **(settings or {})}

    def init(self) -> PostgresCluster:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o755)
        for path in (self.data, self.sockets):
            path.mkdir(exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(path, "postgres", "postgres")
        self.data.chmod(0o700)
        _as_postgres(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-E",
                "UTF8",
                "--locale=C",
                "-A",
                "trust",
                "-U",
                "postgres",
            ]
        )
        return self

    def start(self, timeout: float = 30.0) -> None:
        options = f"-p {self.port} -k {self.sockets} " + " ".join(
            f"-c {name}={value}" for name, value in self.settings.items()
        )
        _as_postgres(
            [
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                str(int(timeout)),
                "-o",
                options,
                "start",
            ]
        )

    def stop(self, mode: str = "fast", timeout: float = 30.0) -> None:
        """`pg_ctl stop`; if that fails, SIGKILL the postmaster by the pid in its pid file."""
        if not self.is_running():
            return
        try:
            _as_postgres(
                [
                    str(self.bin / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-m",
                    mode,
                    "-w",
                    "-t",
                    str(int(timeout)),
                    "stop",
                ]
            )
        except subprocess.CalledProcessError:
            pid = self.pid
            if pid:
                os.kill(pid, signal.SIGKILL)

    @property
    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return None

    def is_running(self) -> bool:
        pid = self.pid
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [
                str(self.bin / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-qAt",
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return result.stdout.strip()

    def create_database(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, name: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def version(self) -> str:
        return self.psql("SHOW server_version")

    def show(self, *names: str) -> dict[str, str]:
        return {name: self.psql(f"SHOW {name}") for name in names}


def bridge_env(
    *,
    database_url: str,
    mqtt_port: int,
    broker_dir: Path,
    var_dir: Path,
    bridge_password: str,
    rate_limits: dict | None = None,
    settings_module: str = "mchat.settings",
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a `manage.py runbridge` (or any MChat process) on a private stack."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MCHAT_", "DATABASE_", "DJANGO_", "PYTEST_"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": settings_module,
            "DATABASE_URL": database_url,
            "MCHAT_MQTT_URL": f"mqtt://127.0.0.1:{mqtt_port}",
            "MCHAT_BROKER_DIR": str(broker_dir),
            "MCHAT_VAR_DIR": str(var_dir),
            "MCHAT_BRIDGE_PASSWORD": bridge_password,
            "MCHAT_RATE_LIMITS": json.dumps(rate_limits if rate_limits is not None else UNLIMITED_RATES),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


class BridgeProcess:
    """`manage.py runbridge --instance NAME [--shared]` as a child process (own session)."""

    def __init__(self, *, env: dict[str, str], instance: str, shared: bool, log_path: Path) -> None:
        self.env = env
        self.instance = instance
        self.shared = shared
        self.log_path = Path(log_path)
        self._proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> BridgeProcess:
        args = [sys.executable, str(MANAGE_PY), "runbridge", "--instance", self.instance]
        if self.shared:
            args.append("--shared")
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                args,
                cwd=REPO_DIR,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def kill9(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGKILL)
            self._proc.wait(10)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (the bridge answers what it holds, then disconnects), SIGKILL after `timeout`."""
        proc, self._proc = self._proc, None
        return None if proc is None else stop_process(proc, timeout)

    def memory_kib(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak) of the process, in KiB."""
        if self._proc is None:
            return {}
        values = {}
        try:
            for line in Path(f"/proc/{self._proc.pid}/status").read_text().splitlines():
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0])
        except FileNotFoundError:
            pass
        return values

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""


def helper_process(module: str) -> subprocess.Popen:
    """A bench helper (`python -m module`) driven by JSON lines on its stdin and stdout, in its
    own session so a signal to the bench does not reach it before the bench stops it."""
    return subprocess.Popen(
        [sys.executable, "-m", module],
        cwd=REPO_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_until(predicate, timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True
