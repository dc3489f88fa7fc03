"""The benchmark's private stack: database, Mosquitto with the plugin, bridge processes, the
echo responder, the machine monitor and the connected clients; started and stopped by pid
(bench.run), and what the report says about the machine and versions."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from bench.measure import ReceiverPool, Requests
from bench.services import (
    REPO_DIR,
    BridgeProcess,
    PostgresCluster,
    bridge_env,
    helper_process,
)
from bench.swarm import Swarm

BENCH_DIR = REPO_DIR / "bench"
BRIDGE_USER = "mchat-bridge"


class Stack:
    """Starts and stops everything one run needs; mixed into bench.run.Bench."""

    # --- the stack ------------------------------------------------------------------------

    def start_monitor(self) -> None:
        self.monitor = helper_process("bench.sysmon")

    def ask_monitor(self, command: dict) -> dict:
        if self.monitor is None or self.monitor.poll() is not None:
            return {}
        self.monitor.stdin.write(json.dumps(command) + "\n")
        self.monitor.stdin.flush()
        return json.loads(self.monitor.stdout.readline() or "{}")

    def watch_processes(self) -> None:
        named = {
            "bridge": self.bridges[0].pid if self.bridges else None,
            "postgres": self.pg.pid if self.pg else None,
            "broker": self.broker.pid if self.broker else None,
        }
        directories = {"wal": str(self.pg.data / "pg_wal")} if self.pg else {}
        self.ask_monitor(
            {"cmd": "watch", "pids": {k: v for k, v in named.items() if v}, "directories": directories}
        )

    def stop_monitor(self) -> None:
        if self.monitor is not None and self.monitor.poll() is None:
            try:
                self.monitor.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.monitor.stdin.flush()
                self.monitor.wait(5)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                self.monitor.kill()
                self.monitor.wait(5)
        self.monitor = None

    def start_database(self) -> str:
        if self.args.postgres:
            self.pg = PostgresCluster(self.work / "pg").init()
            self.pg.start()
            url = self.pg.create_database("mchat")
            self.results["postgres"] = {
                "version": self.pg.version(),
                **self.pg.show("fsync", "synchronous_commit", "shared_buffers", "max_connections"),
                "fdatasync_ms": fdatasync_ms(self.pg.bin, self.work),
            }
            return url
        return f"sqlite:///{self.work / 'mchat.sqlite3'}"

    def configure_django(self, database_url: str) -> None:
        self.bridge_password = os.urandom(18).hex()
        self.broker_dir = self.work / "broker"
        self.var_dir = self.work / "var"
        self.var_dir.mkdir()
        self.env = bridge_env(
            database_url=database_url,
            mqtt_port=0,  # replaced once the broker's port is known
            broker_dir=self.broker_dir,
            var_dir=self.var_dir,
            bridge_password=self.bridge_password,
        )
        for key in (
            "DJANGO_SETTINGS_MODULE",
            "DATABASE_URL",
            "MCHAT_BROKER_DIR",
            "MCHAT_VAR_DIR",
            "MCHAT_BRIDGE_PASSWORD",
            "MCHAT_RATE_LIMITS",
        ):
            os.environ[key] = self.env[key]
        import django

        django.setup()

    def migrate(self) -> None:
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)

    def seed(self) -> None:
        from bench.seed import seed

        started = time.monotonic()
        self.population = seed(
            employees=self.plan.employees,
            org_groups=self.plan.org_groups,
            group_size=self.plan.group_size,
            fanout_sizes=list(self.plan.fanout_sizes),
        )
        self.results["population"] = {
            **self.population.summary(),
            "seed_seconds": round(time.monotonic() - started, 1),
        }

    def start_broker(self) -> None:
        from bench.services import free_port
        from bridge import acl
        from bridge.broker import MosquittoProcess, build_plugin, render_config

        build_plugin()
        port = free_port()
        conf = render_config(port=port, directory=self.broker_dir, bridge_user=BRIDGE_USER)
        started = time.monotonic()
        acl.sync(self.broker_dir)
        self.results["broker_files"] = {
            "render_seconds": round(time.monotonic() - started, 3),
            "passwd_lines": len((self.broker_dir / "passwd").read_text().splitlines()),
            "groups_lines": len((self.broker_dir / "groups").read_text().splitlines()),
        }
        self.broker = MosquittoProcess(conf)
        self.broker.start()
        self.port = self.broker.port
        self.env["MCHAT_MQTT_URL"] = f"mqtt://127.0.0.1:{self.port}"
        os.environ["MCHAT_MQTT_URL"] = self.env["MCHAT_MQTT_URL"]

    def connect_clients(self) -> None:
        from mchat.wire import group_topic, inbox_topic

        plan, people = self.plan, self.population.employee_ids
        n = len(people)
        pw = self.population.password
        self.sender_ids = people[n - 2 * plan.senders : n - plan.senders]
        self.recipient_ids = people[n - plan.senders :]
        self.target_ids = people[n - 2 * plan.senders - plan.member_add_repeats : n - 2 * plan.senders]
        self.member_add_groups = self.population.org_groups[: plan.member_add_repeats]

        requesters = [(e, pw, f"{e}_tx") for e in self.sender_ids]
        self.admin_index = len(requesters)
        requesters.append((self.population.admin_id, pw, f"{self.population.admin_id}_tx"))
        self.owner_index = []
        for _, members in self.member_add_groups:
            self.owner_index.append(len(requesters))
            requesters.append((members[0], pw, f"{members[0]}_tx"))
        self.swarm = Swarm("127.0.0.1", self.port).start()
        self.requests = Requests(self.swarm, requesters)
        self.publisher = self.swarm.connect_many(
            [(BRIDGE_USER, self.bridge_password, f"{BRIDGE_USER}_benchpub")]
        )[0]

        # Receivers: recipients' inboxes, fan-out members on their groups, member_add targets.
        topics: dict[str, list[str]] = {}
        for e in self.recipient_ids:
            topics.setdefault(e, []).append(inbox_topic(e))
        for size, gid in self.population.fanout_groups.items():
            for e in people[:size]:
                topics.setdefault(e, []).append(group_topic(gid))
        for e, (gid, _) in zip(self.target_ids, self.member_add_groups, strict=True):
            topics.setdefault(e, []).append(group_topic(gid))
        self.pool = ReceiverPool(self.port, plan.receiver_processes)
        logins = [(e, pw, f"{e}_rx") for e in topics]
        self.pool.connect(logins, [topics[e] for e in topics])
        # The peer harness's 50 online employees (bench.peer): answers and inbox on one connection.
        self.connect_online()
        self.results["clients"] = {
            "requesters": len(requesters),
            "receivers": len(logins),
            "online": len(self.online_ids),
        }

    def start_echo(self) -> None:
        env = {**os.environ, "BENCH_ECHO_PASSWORD": self.bridge_password}
        self.echo = subprocess.Popen(
            [sys.executable, "-m", "bench.echo", str(self.port), BRIDGE_USER],
            cwd=REPO_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        line = self.echo.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"echo responder did not start: {line!r}")

    def stop_echo(self) -> None:
        if self.echo is not None and self.echo.poll() is None:
            self.echo.send_signal(signal.SIGTERM)
            try:
                self.echo.wait(10)
            except subprocess.TimeoutExpired:
                self.echo.kill()
                self.echo.wait(5)
        self.echo = None

    def start_bridge(self, instance: str) -> BridgeProcess:
        bridge = BridgeProcess(
            env=self.env, instance=instance, shared=True, log_path=self.work / f"bridge-{instance}.log"
        ).start()
        self.bridges.append(bridge)
        return bridge

    def wait_bridge_ready(self, timeout: float = 60.0) -> None:
        """An unknown action is answered 400 without touching the database."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not all(b.alive() for b in self.bridges):
                raise RuntimeError("a bridge exited:\n" + self.bridges[-1].log_tail())
            try:
                self.requests.request(self.admin_index, lambda i, s: b'{"action":"bench.ping"}', timeout=2)
                return
            except TimeoutError:
                continue
        raise RuntimeError(f"the bridge did not answer within {timeout} s")

    # --- measurements ---------------------------------------------------------------------

    def cleanup(self) -> None:
        for action in (
            lambda: self.pool and self.pool.close(),
            self.stop_monitor,
            lambda: self.swarm and self.swarm.stop(),
            self.stop_echo,
            *[b.stop for b in self.bridges],
            lambda: self.broker and self.broker.stop(),
            lambda: self.pg and self.pg.stop(),
        ):
            try:
                action()
            except Exception as exc:
                self.log(f"cleanup: {exc}")
        self.steps.close()
        if self.args.keep:
            self.log(f"kept {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def fdatasync_ms(bin_dir: Path, work: Path) -> float | None:
    """One 8 kB write + fdatasync on this disk (pg_test_fsync, 1 s): the floor of a durable COMMIT."""
    result = subprocess.run(
        [str(bin_dir / "pg_test_fsync"), "-s", "1", "-f", str(work / "fsync.test")],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    for line in result.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == "fdatasync" and "usecs/op" in line:
            return round(float(parts[-2]) / 1000, 3)
    return None


def proc_memory(pid: int) -> dict[str, int]:
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    except FileNotFoundError:
        pass
    return values


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except FileNotFoundError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kib = int(line.split()[1])
    except FileNotFoundError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": _os_name(),
        "loadavg_start": os.getloadavg(),
    }


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except FileNotFoundError:
        pass
    return platform.platform()


def versions(pg: PostgresCluster | None) -> dict:
    import django
    import paho.mqtt
    import psycopg

    mosquitto = subprocess.run(
        ["mosquitto", "-h"], check=False, capture_output=True, text=True
    ).stdout.splitlines()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], check=False, cwd=REPO_DIR, capture_output=True, text=True
    ).stdout.strip()
    # The bridge runs the working tree: say whether its code differs from the commit.
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "bridge", "messaging", "org", "mchat"],
        check=False,
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    changed = sorted({line[3:] for line in dirty if line.strip()})
    if changed:
        commit += f" + uncommitted changes in {', '.join(changed[:8])}" + (" ..." if len(changed) > 8 else "")
    return {
        "python": platform.python_version(),
        "django": django.get_version(),
        "paho_mqtt": paho.mqtt.__version__,
        "psycopg": psycopg.__version__,
        "sqlite": sqlite3.sqlite_version,
        "mosquitto": mosquitto[0].replace("mosquitto version ", "") if mosquitto else "?",
        "postgresql": pg.version() if pg else None,
        "git_commit": commit,
    }
