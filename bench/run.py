"""The benchmark, one command: `python -m bench.run [--postgres] [--quick]` (`make bench`).

Starts a private stack (PostgreSQL cluster or SQLite file, Mosquitto with the plugin, bridge
processes), seeds an organisation, measures, profiles the bridge with py-spy, and writes
bench/REPORT.md, bench/results/<stamp>.json and bench/latest.json. Everything it starts is
stopped by pid at the end, also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from bench import cpu, measure, profile
from bench.measure import ReceiverPool, Requests
from bench.report import P99_TARGET_MS
from bench.services import (
    REPO_DIR,
    BridgeProcess,
    PostgresCluster,
    bridge_env,
    helper_process,
    wait_until,
)
from bench.swarm import Swarm

BENCH_DIR = REPO_DIR / "bench"
BRIDGE_USER = "mchat-bridge"


@dataclass(frozen=True)
class Plan:
    employees: int
    org_groups: int
    group_size: int
    fanout_sizes: tuple[int, ...]
    fanout_repeats: int
    closed_seconds: float
    warmup_seconds: float
    offered_rates: tuple[int, ...]
    open_seconds: float
    member_add_repeats: int
    tree_repeats: int
    profile_seconds: float
    receiver_processes: int
    senders: int = 8


FULL = Plan(
    employees=10_000,
    org_groups=2_000,
    group_size=10,
    fanout_sizes=(50, 500, 1000),
    fanout_repeats=20,
    closed_seconds=6,
    warmup_seconds=1,
    offered_rates=(50, 500, 1000),
    open_seconds=6,
    member_add_repeats=5,
    tree_repeats=10,
    profile_seconds=8,
    receiver_processes=2,
)
QUICK = Plan(
    employees=2_000,
    org_groups=400,
    group_size=10,
    fanout_sizes=(50, 500, 1000),
    fanout_repeats=5,
    closed_seconds=2,
    warmup_seconds=0.5,
    offered_rates=(50, 1000),
    open_seconds=2,
    member_add_repeats=2,
    tree_repeats=3,
    profile_seconds=4,
    receiver_processes=2,
)


def _json_bytes(payload: dict) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.plan = QUICK if args.quick else FULL
        self.work = Path(tempfile.mkdtemp(prefix="mchat-bench-"))
        self.work.chmod(0o755)
        self.results: dict = {
            "mode": "quick" if args.quick else "full",
            "database": "postgresql" if args.postgres else "sqlite",
            "plan": self.plan.__dict__,
        }
        self.pg: PostgresCluster | None = None
        self.broker = None
        self.bridges: list[BridgeProcess] = []
        self.echo: subprocess.Popen | None = None
        self.pool: ReceiverPool | None = None
        self.monitor: subprocess.Popen | None = None
        self.swarm: Swarm | None = None
        self.steps = tqdm(total=18, desc="bench", unit="step", position=0, dynamic_ncols=True)

    # --- helpers --------------------------------------------------------------------------

    def step(self, text: str) -> None:
        self.steps.set_postfix_str(text)
        self.steps.update(1)

    def sub_bar(self, total: float, desc: str, unit: str = "req") -> tqdm:
        return tqdm(total=total, desc=desc, unit=unit, position=1, leave=False, dynamic_ncols=True)

    def log(self, text: str) -> None:
        tqdm.write(text)

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
        from bridge import acl
        from bridge.broker import (
            MosquittoProcess,
            build_plugin,
            free_port,
            render_config,
        )

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
        self.results["clients"] = {"requesters": len(requesters), "receivers": len(logins)}

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

    def private_payload(self, index: int, seq_id: str) -> bytes:
        return _json_bytes(
            {
                "action": "msg.send_private",
                "to_employee_id": self.recipient_ids[index],
                "content": f"bench {seq_id}",
            }
        )

    def closed(self, label: str, in_flight: int, seconds: float | None = None) -> dict:
        plan = self.plan
        seconds = seconds or plan.closed_seconds
        clients = list(range(1 if in_flight == 1 else plan.senders))
        bar = self.sub_bar(None, label)
        with cpu.CpuWindow(self.cpu_groups()) as window:
            result = measure.closed_loop(
                self.requests,
                clients=clients,
                in_flight=in_flight,
                duration=seconds,
                warmup=plan.warmup_seconds,
                make_payload=self.private_payload,
                progress=lambda n: (setattr(bar, "n", n), bar.refresh()),
            )
        bar.close()
        self.pool.dump()  # deliveries of this run are not measured here
        summary = {"in_flight": in_flight, "seconds": seconds, **result.summary(), "cpu_cores": window.result}
        self.log(f"{label}: {summary['per_second']}/s, latency {summary['latency_ms']}")
        return summary

    def cpu_groups(self) -> dict:
        """Cores used per process group during a measurement (bench.cpu)."""
        return {
            "bridge": lambda: [b.pid for b in self.bridges if b.alive()],
            "postgres": lambda: (
                [self.pg.pid, *cpu.children_of(self.pg.pid)] if self.pg and self.pg.pid else []
            ),
            "broker": lambda: [self.broker.pid] if self.broker and self.broker.pid else [],
            "echo": lambda: [self.echo.pid] if self.echo is not None else [],
            "load_generator": lambda: [os.getpid()],
            "receivers": lambda: self.pool.pids if self.pool else [],
        }

    def raw_fanout(self) -> dict:
        from mchat.wire import group_topic

        out = {}
        for size, gid in self.population.fanout_groups.items():
            topic = group_topic(gid)
            sent = {}
            for r in range(self.plan.fanout_repeats):
                token = f"raw{size}x{r}"

                def fire(token=token, topic=topic, sent=sent) -> None:
                    sent[token] = time.monotonic()
                    self.publisher.publish(topic, _json_bytes({"content": f"bench {token}"}), qos=1)

                self.swarm.call_wait(fire)
                self.pool.wait({token: topic}, timeout=10)
                time.sleep(0.05)
            out[str(size)] = self._fanout_stats(sent, self.pool.dump(), self.pool.subscribers(topic))
            self.log(f"raw fan-out {size}: {out[str(size)]['all_received_ms']}")
        return out

    def _fanout_stats(self, sent: dict[str, float], arrivals: dict, expected: int) -> dict:
        complete, incomplete = [], []
        for token, t0 in sent.items():
            count, _first, last = arrivals.get(token, [0, None, None])
            if count >= expected:
                complete.append(last - t0)
            else:
                incomplete.append(count)
        return {
            "members": expected,
            "repeats": len(sent),
            "all_received_ms": measure.stats_ms(complete),
            "incomplete": incomplete,
            "duplicates": sum(max(0, arrivals.get(t, [0])[0] - expected) for t in sent),
        }

    def mchat_fanout(self) -> dict:
        from mchat.wire import group_topic

        out = {}
        for size, gid in self.population.fanout_groups.items():
            topic = group_topic(gid)
            sent, responses = {}, []
            bar = self.sub_bar(self.plan.fanout_repeats, f"fan-out {size}", "msg")
            for _ in range(self.plan.fanout_repeats):
                box: dict = {}

                def fire(gid=gid, box=box) -> None:
                    box["t0"] = time.monotonic()

                    def on_response(now: float, payload: bytes) -> None:
                        box["latency"] = now - box["t0"]
                        box["code"] = measure.response_code(payload)

                    box["seq"] = self.requests.send(
                        self.admin_index,
                        lambda i, s: _json_bytes(
                            {"action": "msg.send_group", "group_id": gid, "content": f"bench {s}"}
                        ),
                        on_response,
                    )

                self.swarm.call_wait(fire)
                self.pool.wait({box["seq"]: topic}, timeout=15)
                wait_until(lambda box=box: "code" in box, 10)
                sent[box["seq"]] = box["t0"]
                if "latency" in box:
                    responses.append(box["latency"])
                bar.update(1)
                time.sleep(0.05)
            bar.close()
            out[str(size)] = {
                **self._fanout_stats(sent, self.pool.dump(), self.pool.subscribers(topic)),
                "response_ms": measure.stats_ms(responses),
            }
            self.log(f"MChat fan-out {size}: {out[str(size)]['all_received_ms']}")
        return out

    def offered(self, capacity: float) -> list[dict]:
        """`capacity`: responses/s measured with 64 in flight. A rate well above it can only
        build a queue; it runs for 2 s (a bounded backlog) and is marked over capacity."""
        rows = []
        for rate in self.plan.offered_rates:
            over = rate > 1.2 * capacity
            seconds = min(self.plan.open_seconds, 2.0) if over else self.plan.open_seconds
            total = int(rate * seconds)
            bar = self.sub_bar(total, f"{rate} msg/s offered")
            result = measure.open_loop(
                self.requests,
                clients=list(range(self.plan.senders)),
                rate=rate,
                duration=seconds,
                make_payload=self.private_payload,
                progress=lambda n, bar=bar: (setattr(bar, "n", n), bar.refresh()),
                drain=max(30.0, 2 * total / max(capacity, 1.0)),
            )
            bar.close()
            time.sleep(0.3)  # the last deliveries
            arrivals = self.pool.dump()
            e2e, missing, duplicates = [], 0, 0
            for seq_id, intended in result.sent.items():
                entry = arrivals.get(f"{seq_id}")
                if entry is None:
                    missing += 1
                    continue
                e2e.append(entry[1] - intended)
                duplicates += entry[0] - 1
            row = {
                "offered_per_second": rate,
                "seconds": seconds,
                "over_capacity": over,
                "answered_per_second": result.summary()["per_second"],
                "response_ms": measure.stats_ms(result.latencies),
                "end_to_end_ms": measure.stats_ms(e2e),
                # The load generator's own error: how late it sent (counted in the latencies).
                "send_late_ms": measure.stats_ms(result.late),
                "codes": {str(k): v for k, v in result.codes.items()},
                "unanswered": result.unanswered,
                "deliveries_missing": missing,
                "deliveries_duplicated": duplicates,
            }
            row["machine"] = self.ask_monitor(
                {"cmd": "span", "from": result.started, "to": result.started + seconds}
            )
            row["slow_spans"] = self.stall_report(result.timeline, result.started)
            self.log(f"offered {rate}/s: response {row['response_ms']} e2e {row['end_to_end_ms']}")
            rows.append(row)
            time.sleep(0.5)
        return rows

    def stall_report(self, timeline: list[tuple[float, float]], started: float) -> list[dict]:
        """Runs of responses over the p99 target (50 ms), each with what the machine monitor saw
        in it: a stall of the whole machine, a process waiting for the disk, or neither."""
        out = []
        for span in measure.slow_spans(timeline, threshold=P99_TARGET_MS / 1000)[:10]:
            out.append(
                {
                    "start_s": round(span["start"] - started, 3),
                    "seconds": round(span["end"] - span["start"], 3),
                    "requests": span["requests"],
                    "max_ms": round(span["max"] * 1000, 1),
                    "machine": self.ask_monitor({"cmd": "span", "from": span["start"], "to": span["end"]}),
                }
            )
        return out

    def org_tree(self) -> dict:
        full, unchanged, size, version = [], [], 0, None
        for _ in range(self.plan.tree_repeats):
            latency, payload = self.requests.request(
                self.admin_index, lambda i, s: b'{"action":"org.tree"}', timeout=60
            )
            body = json.loads(payload)
            if body["code"] != 0:
                raise RuntimeError(f"org.tree failed: {body}")
            full.append(latency)
            size = len(payload)
            version = body["data"]["version"]
        for _ in range(self.plan.tree_repeats):
            latency, payload = self.requests.request(
                self.admin_index, lambda i, s: _json_bytes({"action": "org.tree", "version": version})
            )
            unchanged.append(latency)
        return {
            "employees": len(self.population.employee_ids),
            "full_ms": measure.stats_ms(full),
            "response_bytes": size,
            "unchanged_version_ms": measure.stats_ms(unchanged),
        }

    def member_add(self) -> dict:
        from mchat.wire import group_topic

        samples, failures = [], []
        for k, ((gid, _members), target) in enumerate(
            zip(self.member_add_groups, self.target_ids, strict=True)
        ):
            owner = self.owner_index[k]
            _latency, payload = self.requests.request(
                owner,
                lambda i, s, gid=gid, target=target: _json_bytes(
                    {"action": "group.member_add", "group_id": gid, "member_ids": [target]}
                ),
            )
            responded = time.monotonic()
            if measure.response_code(payload) != 0:
                failures.append(json.loads(payload))
                continue
            token = f"madd{k}"
            stop = {"flag": False}
            probe = _json_bytes({"action": "msg.send_group", "group_id": gid, "content": f"bench {token}"})

            def tick(owner=owner, probe=probe, stop=stop) -> None:
                if stop["flag"]:
                    return
                self.requests.send(owner, lambda i, s: probe, lambda now, payload: None)
                self.swarm.call_at(time.monotonic() + 0.01, lambda: tick(owner, probe, stop))

            self.swarm.call(tick)
            counts = self.pool.wait({token: group_topic(gid)}, timeout=20)
            stop["flag"] = True
            time.sleep(0.1)
            arrivals = self.pool.dump()
            if counts.get(token):
                samples.append(arrivals[token][1] - responded)
            else:
                failures.append({"group_id": gid, "target": target, "error": "never received"})
        return {
            "repeats": len(self.member_add_groups),
            "probe_interval_ms": 10,
            "until_received_ms": measure.stats_ms(samples),
            "failures": failures,
        }

    def in_process(self) -> dict:
        """The pipeline alone: `Dispatcher.handle_batch` in this process on batches of 64
        `msg.send_private` (what the bridge does with a full inbox), no MQTT, profiled with
        py-spy; plus the SQL statements of one request."""
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        from bridge.dispatch import Dispatcher
        from bridge.ratelimit import RateLimiter
        from mchat import outbox as publisher
        from messaging import services

        memory = publisher.MemoryPublisher()
        publisher.install(memory)
        dispatcher = Dispatcher(memory, limiter=RateLimiter({}))
        client_id = f"{self.sender_ids[0]}_inproc"
        body = _json_bytes(
            {"action": "msg.send_private", "to_employee_id": self.recipient_ids[0], "content": "bench inproc"}
        )
        counter = iter(range(10**9))

        def batch(size: int) -> None:
            dispatcher.handle_batch(
                [(f"mchat/msg/req/{client_id}/ip{next(counter)}", body) for _ in range(size)]
            )
            memory.clear()

        batch(64)  # the conversation exists from here on, and this process has seen the pair
        with CaptureQueriesContext(connection) as one:
            batch(1)
        with CaptureQueriesContext(connection) as four:
            batch(4)
        # The usual way: a process that has not seen the pair (a new pair, or a refusal).
        services.private_conversation_ids_clear()
        with CaptureQueriesContext(connection) as usual:
            batch(1)
        # Every statement timed at Django's cursor (driver + server), by kind.
        timings: dict[str, list] = {}

        def timed(execute, sql, params, many, context):
            started = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                words = sql.split()
                table = next((w.strip('"').split('"')[0] for w in words[1:6] if w.startswith('"')), "")
                kind = f"{words[0]} {table}".strip() if words[0] not in ("SAVEPOINT", "RELEASE") else words[0]
                entry = timings.setdefault(kind, [0, 0.0])
                entry[0] += 1
                entry[1] += time.perf_counter() - started

        with connection.execute_wrapper(timed):
            timed_started, timed_done = time.perf_counter(), 0
            while time.perf_counter() - timed_started < 2.0:
                batch(64)
                timed_done += 64
            timed_seconds = time.perf_counter() - timed_started
        seconds = self.plan.profile_seconds
        output = self.work / "inprocess.raw"
        with cpu.CpuWindow(self.cpu_groups()) as window:
            spy = profile.record(os.getpid(), seconds, output)
            time.sleep(0.5)  # py-spy attaches; its samples of this sleep are not counted
            done, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds + 0.5:
                self._dispatch_loop(batch)
                done += 64
            rate = done / (time.perf_counter() - started)
            spy.communicate(timeout=seconds + 60)
        publisher.install(None)
        result = {
            "statements_one_request": len(one.captured_queries),
            "statements_batch_of_4": len(four.captured_queries),
            "statements_one_request_usual_way": len(usual.captured_queries),
            "sql": [q["sql"][:200] for q in one.captured_queries],
            "sql_usual_way": [q["sql"][:200] for q in usual.captured_queries],
            "batch64_ms_per_request": round(1000 / rate, 3),
            "batch64_per_second": round(rate, 1),
            "cpu_cores": window.result,
            "statement_timings": sorted(
                (
                    {
                        "statement": kind,
                        "per_request": round(count / timed_done, 2),
                        "ms_each": round(total / count * 1000, 3),
                        "ms_per_request": round(total / timed_done * 1000, 3),
                    }
                    for kind, (count, total) in timings.items()
                ),
                key=lambda row: -row["ms_per_request"],
            ),
            "timed_ms_per_request": round(timed_seconds / timed_done * 1000, 3),
        }
        if output.exists():
            stored = BENCH_DIR / "results" / f"inprocess-{self.stamp}.raw"
            shutil.copy(output, stored)
            result["raw_file"] = str(stored.relative_to(REPO_DIR))
            result["profile"] = profile.analyse(
                output, requests_per_second=rate, thread_marker="Bench._dispatch_loop", only_marked=True
            )
        return result

    @staticmethod
    def _dispatch_loop(batch) -> None:
        batch(64)

    def run_profile(self) -> dict:
        output = self.work / "profile.raw"
        bridge = self.bridges[0]
        spy = profile.record(bridge.pid, self.plan.profile_seconds, output)
        time.sleep(0.3)
        loop = self.closed("profiled: send_private, 64 in flight", 64, seconds=self.plan.profile_seconds)
        _, err = spy.communicate(timeout=self.plan.profile_seconds + 60)
        if not output.exists():
            return {"error": f"py-spy failed: {err[-500:]}"}
        stored = BENCH_DIR / "results" / f"profile-{self.stamp}.raw"
        shutil.copy(output, stored)
        analysis = profile.analyse(output, requests_per_second=loop["per_second"])
        return {"load": loop, "raw_file": str(stored.relative_to(REPO_DIR)), **analysis}

    def incidents(self) -> dict:
        """What went wrong under load, from the logs: batches the bridge had to serve one by
        one, PostgreSQL deadlocks, errors."""
        bridge_logs = "".join(b.log_tail(10**8) for b in self.bridges)
        out = {
            "bridge_batches_served_one_by_one": bridge_logs.count(
                "failed to commit; serving them one by one"
            ),
            "bridge_error_lines": sum(" ERROR " in line for line in bridge_logs.splitlines()),
            # Batches and periodic jobs over MCHAT_BRIDGE_SLOW_MS: a stall inside the bridge.
            "bridge_slow_lines": sum(" slow " in line for line in bridge_logs.splitlines()),
        }
        if self.pg is not None:
            try:
                pg_log = self.pg.log.read_text(errors="replace")
            except FileNotFoundError:
                pg_log = ""
            out["postgres_deadlocks"] = pg_log.count("deadlock detected")
            examples = [line for line in pg_log.splitlines() if "Process" in line and "UPDATE" in line][:2]
            out["postgres_deadlock_example"] = examples
        return out

    def memory(self) -> dict:
        out = {"bridge_kib": self.bridges[0].memory_kib()}
        if self.broker and self.broker.pid:
            out["broker_kib"] = _proc_memory(self.broker.pid)
        return out

    # --- the run --------------------------------------------------------------------------

    def execute(self) -> None:
        self.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        (BENCH_DIR / "results").mkdir(exist_ok=True)
        self.results["machine"] = machine_info()
        self.results["started_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.start_monitor()
        url = self.start_database()
        self.step("database")
        self.configure_django(url)
        self.migrate()
        self.step("migrated")
        self.seed()
        self.step("seeded")
        self.start_broker()
        self.step("broker")
        self.connect_clients()
        self.step("clients connected")
        self.results["versions"] = versions(self.pg)

        raw: dict = {}
        self.start_echo()
        raw["in_flight_1"] = self.closed("raw broker, 1 in flight", 1)
        self.step("raw 1")
        raw["in_flight_64"] = self.closed("raw broker, 64 in flight", 64)
        self.step("raw 64")
        self.stop_echo()
        raw["fanout"] = self.raw_fanout()
        self.results["raw_broker"] = raw
        self.step("raw fan-out")

        self.start_bridge("b1")
        self.wait_bridge_ready()
        self.watch_processes()
        self.step("bridge up")
        mchat: dict = {}
        mchat["in_flight_1"] = self.closed("send_private, 1 in flight", 1)
        self.step("send_private 1")
        mchat["in_flight_64"] = self.closed("send_private, 64 in flight", 64)
        self.step("send_private 64")
        for key in ("in_flight_1", "in_flight_64"):
            base = raw[key]["per_second"]
            mchat[key]["ratio_to_raw"] = round(mchat[key]["per_second"] / base, 3) if base else None
        self.results["send_private"] = mchat
        self.results["profile"] = self.run_profile()
        self.step("profiled")
        self.results["offered_load"] = self.offered(mchat["in_flight_64"]["per_second"])
        self.step("offered load")
        self.results["fanout"] = self.mchat_fanout()
        self.step("fan-out")
        self.results["org_tree"] = self.org_tree()
        self.results["member_add"] = self.member_add()
        self.step("org scale")
        self.results["memory"] = self.memory()
        self.results["in_process"] = self.in_process()
        self.step("memory, queries")
        if self.pg is not None:
            # How much of a request is waiting for the WAL flush of its COMMIT on this disk.
            self.pg.psql("ALTER SYSTEM SET synchronous_commit = off")
            self.pg.psql("SELECT pg_reload_conf()")
            time.sleep(0.5)
            row = self.closed("send_private, 64 in flight, synchronous_commit=off", 64)
            base = raw["in_flight_64"]["per_second"]
            row["ratio_to_raw"] = round(row["per_second"] / base, 3) if base else None
            self.results["send_private"]["in_flight_64_sync_commit_off"] = row
            self.pg.psql("ALTER SYSTEM RESET synchronous_commit")
            self.pg.psql("SELECT pg_reload_conf()")
        if self.args.bridges > 1:
            for n in range(2, self.args.bridges + 1):
                self.start_bridge(f"b{n}")
            time.sleep(1.0)
            self.wait_bridge_ready()
            row = self.closed(f"send_private, 64 in flight, {self.args.bridges} bridges", 64)
            base = raw["in_flight_64"]["per_second"]
            row["ratio_to_raw"] = round(row["per_second"] / base, 3) if base else None
            row["bridges"] = self.args.bridges
            self.results["send_private"]["in_flight_64_multi_bridge"] = row
        self.step("multi-bridge")
        self.results["incidents"] = self.incidents()
        self.results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.results["machine"]["loadavg_end"] = os.getloadavg()
        self.write()
        self.step("report")

    def write(self) -> None:
        from bench.report import render

        raw_path = BENCH_DIR / "results" / f"{self.stamp}.json"
        raw_path.write_text(json.dumps(self.results, indent=2, ensure_ascii=False) + "\n")
        if not self.args.no_latest:
            shutil.copy(raw_path, BENCH_DIR / "latest.json")
            (BENCH_DIR / "REPORT.md").write_text(render(self.results))
        self.log(
            f"wrote {raw_path.relative_to(REPO_DIR)}"
            + ("" if self.args.no_latest else ", bench/REPORT.md, bench/latest.json")
        )

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


def _proc_memory(pid: int) -> dict[str, int]:
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--postgres", action="store_true", help="a private PostgreSQL cluster instead of SQLite"
    )
    parser.add_argument(
        "--quick", action="store_true", help="small organisation, short runs (about a minute)"
    )
    parser.add_argument(
        "--bridges",
        type=int,
        default=2,
        help="also measure send_private, 64 in flight, with this many bridge processes",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, database)")
    parser.add_argument(
        "--no-latest",
        action="store_true",
        help="write only bench/results/<stamp>.json, not REPORT.md / latest.json",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    bench = Bench(args)
    try:
        bench.execute()
        return 0
    except KeyboardInterrupt:
        tqdm.write("interrupted; stopping everything")
        return 130
    except Exception:
        tqdm.write(traceback.format_exc())
        for bridge in bench.bridges:
            tqdm.write(f"--- {bridge.log_path.name} (tail)\n{bridge.log_tail()}")
        return 1
    finally:
        bench.cleanup()


if __name__ == "__main__":
    sys.exit(main())
