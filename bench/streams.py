"""Streamed replies under load (issue 17): one employee appends N deltas a second to a group of
M online members. `python -m bench.streams [--members 500] [--rate 100] [--seconds 20]
[--postgres] [--bridges 2]`

Starts its own private stack like bench.run (SQLite file or a PostgreSQL cluster, Mosquitto
with the plugin, one bridge process; with --bridges N > 1 (or --redis) a redis-server and N
bridge processes sharing the request subscription and the Redis stream buffer), seeds the
organisation, connects the members as subscribers (bench.receivers processes), then streams.
Reports, as JSON on stdout and in bench/results/streams-<stamp>.json (with the load average
before and after: the machine may be shared):

- latency: time from an append's request to the delivery that carries its text at the last
  member that got it, p50/p95 over every append a delta carried, and for the oldest append
  of each delivery (the worst one it carries); p50 at the first member too (the rest is the
  fan-out to 500 subscribers);
- deliveries per member per second (the coalescing promises about 10);
- database writes for the stream: the request records written for the stream's actions and,
  on PostgreSQL, the rows updated in the message table while it ran;
- bridge CPU milliseconds per delta (from /proc, all bridge processes).

Not for a busy machine: the numbers mean something only on an otherwise idle one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from datetime import UTC, datetime
from pathlib import Path

from bench.measure import ReceiverPool
from bench.services import (
    REPO_DIR,
    UNLIMITED_RATES,
    BridgeProcess,
    PostgresCluster,
    RedisServer,
    RedisUnavailable,
    bridge_env,
    free_port,
    wait_until,
)

BRIDGE_USER = "mchat-bridge"
PER_STREAM = 800  # appends of "bench t000000 " (14 characters) per stream: within 12,000


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--rate", type=float, default=100.0, help="appends per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--receiver-processes", type=int, default=2)
    parser.add_argument("--bridges", type=int, default=1, help="bridge processes (> 1: with Redis)")
    parser.add_argument("--redis", action="store_true", help="the Redis stream buffer with one bridge too")
    parser.add_argument(
        "--interval",
        type=float,
        default=None,
        help="MCHAT_STREAM_DELTA_INTERVAL for the bridges (default: 0.1)",
    )
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="mchat-bench-streams-"))
    work.chmod(0o755)  # the cluster's `postgres` user reaches its folder through this one
    pg = broker = redis_server = pool = streamer = None
    bridges: list[BridgeProcess] = []
    load_before = os.getloadavg()
    try:
        if args.redis or args.bridges > 1:
            try:
                redis_server = RedisServer().start()
            except RedisUnavailable as exc:
                raise SystemExit(str(exc)) from None
        if args.postgres:
            pg = PostgresCluster(work / "pg").init()
            pg.start()
            database_url = pg.create_database("mchat")
        else:
            database_url = f"sqlite:///{work / 'mchat.sqlite3'}"
        password = os.urandom(18).hex()
        env = bridge_env(
            database_url=database_url,
            mqtt_port=0,
            broker_dir=work / "broker",
            var_dir=work / "var",
            bridge_password=password,
            rate_limits={**UNLIMITED_RATES, "stream": [1_000_000, 1_000_000]},
            extra={
                "MCHAT_STREAM_REDIS_URL": redis_server.url if redis_server else "",
                **({"MCHAT_STREAM_DELTA_INTERVAL": str(args.interval)} if args.interval is not None else {}),
            },
        )
        (work / "var").mkdir()
        for key in (
            "DJANGO_SETTINGS_MODULE",
            "DATABASE_URL",
            "MCHAT_BROKER_DIR",
            "MCHAT_VAR_DIR",
            "MCHAT_BRIDGE_PASSWORD",
            "MCHAT_RATE_LIMITS",
        ):
            os.environ[key] = env[key]
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)
        from bench.seed import RESERVED_TAIL, seed

        population = seed(
            employees=args.members + RESERVED_TAIL + 10,
            org_groups=0,
            group_size=2,
            fanout_sizes=[args.members],
        )
        group_id = population.fanout_groups[args.members]
        members = population.employee_ids[: args.members]

        from bridge import acl
        from bridge.broker import MosquittoProcess, build_plugin, render_config

        build_plugin()
        conf = render_config(port=free_port(), directory=work / "broker", bridge_user=BRIDGE_USER)
        acl.sync(work / "broker")
        broker = MosquittoProcess(conf)
        broker.start()
        env["MCHAT_MQTT_URL"] = os.environ["MCHAT_MQTT_URL"] = f"mqtt://127.0.0.1:{broker.port}"
        health_ports = [free_port() for _ in range(args.bridges)]
        bridges = [
            BridgeProcess(
                env={**env, "MCHAT_BRIDGE_METRICS_PORT": str(port)},
                instance=f"streams{n}",
                shared=True,
                log_path=work / f"bridge{n}.log",
            ).start()
            for n, port in enumerate(health_ports, start=1)
        ]
        for port, bridge in zip(health_ports, bridges, strict=True):  # every one takes its share
            if not wait_until(lambda port=port: _connected(port), timeout=60):
                raise SystemExit(f"a bridge did not connect:\n{bridge.log_tail()}")

        from mchat_sdk import Client, MChatError

        login = {
            "broker_host": "127.0.0.1",
            "broker_port": broker.port,
            "use_tls": False,
            "mqtt_username": members[0],  # the group's owner streams (any employee may)
            "mqtt_password": population.password,
        }
        streamer = Client(login, device="streamer", request_timeout=10.0, track_groups=False).connect()
        wait_until(lambda: _answers(streamer), timeout=60)

        pool = ReceiverPool(broker.port, args.receiver_processes)
        pool.connect(
            [(m, population.password, f"{m}_rx") for m in members],
            [[f"mchat/group/{group_id}"]] * len(members),
            whole=True,  # a delta's whole text: every append it carries
        )

        from django.conf import settings
        from django.db import connection

        def updated_rows() -> int | None:
            if connection.vendor != "postgresql":
                return None
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'messaging_message'"
                )
                return cursor.fetchone()[0]

        from bridge.models import ProcessedRequest

        records_before = ProcessedRequest.objects.count()
        updates_before = updated_rows()
        cpu_before = sum(cpu_seconds(bridge.pid) for bridge in bridges)
        sent_at: dict[str, float] = {}
        lock = threading.Lock()
        total = int(args.rate * args.seconds)
        # A stream holds at most 12,000 characters: a new one (a new answer) every PER_STREAM.
        streams: list[list[str]] = []  # the tokens of each stream
        errors: Counter = Counter()

        def append(msg_id: str, token: str) -> None:
            try:
                streamer.stream_append(msg_id, f"bench {token} ", seq_id=uuid.uuid4().hex)
            except MChatError as exc:
                with lock:
                    errors[exc.code] += 1

        started = time.monotonic()
        with ThreadPoolExecutor(8) as senders:
            pending: list = []
            msg_id = None
            for n in range(total):
                if msg_id is None or len(streams[-1]) == PER_STREAM:
                    if msg_id is not None:
                        futures_wait(pending)  # every append in before the end
                        streamer.stream_end(msg_id)
                    msg_id, pending = streamer.stream_start(f"group:{group_id}")["msg_id"], []
                    streams.append([])
                due = started + n / args.rate
                time.sleep(max(0.0, due - time.monotonic()))
                token = f"t{n:06d}"
                with lock:
                    sent_at[token] = time.monotonic()
                streams[-1].append(token)
                pending.append(senders.submit(append, msg_id, token))
            futures_wait(pending)
        elapsed = time.monotonic() - started
        streamer.stream_end(msg_id)
        time.sleep(1.0)  # the last deliveries reach the members
        cpu_used = sum(cpu_seconds(bridge.pid) for bridge in bridges) - cpu_before
        arrivals, arrival_times = pool.dump_with_times()
        records = ProcessedRequest.objects.count() - records_before
        updates_after = updated_rows()
        # A receiver records a delivery under the text after its first "bench " up to the
        # closing quote: a coalesced delta's whole text, every append it carries by token. The
        # appends after a stream's last delta came with its final message (left out here).
        finals = {frozenset(tokens) for tokens in streams}
        latencies, oldest, at_first, per_member, deliveries = [], [], [], [], 0
        for text, (count, first, last) in arrivals.items():
            carried = [word for word in text.split() if word in sent_at]
            if not carried or frozenset(carried) in finals:
                continue  # not a delta of these streams, or a message stream_end delivered
            deliveries += count
            latencies += [(last - sent_at[token]) * 1000 for token in carried]
            at_first += [(first - sent_at[token]) * 1000 for token in carried]
            per_member += [(at - sent_at[token]) * 1000 for token in carried for at in arrival_times[text]]
            oldest.append(max(latencies[-len(carried) :]))
        result = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "database": "postgresql" if args.postgres else "sqlite",
            "bridges": len(bridges),
            "stream_buffer": "redis" if redis_server else "memory",
            "members": args.members,
            "appends": total,
            "append_rate_offered": args.rate,
            "append_seconds": round(elapsed, 2),
            "delta_deliveries_per_member": round(deliveries / max(1, args.members), 1),
            "deliveries_per_member_per_second": round(deliveries / max(1, args.members) / elapsed, 2),
            "latency_ms_p50": round(percentile(latencies, 0.50), 1),
            "latency_ms_p95": round(percentile(latencies, 0.95), 1),
            "latency_ms_mean": round(statistics.fmean(latencies), 1) if latencies else None,
            "first_member_latency_ms_p50": round(percentile(at_first, 0.50), 1),
            "every_member_latency_ms_p50": round(percentile(per_member, 0.50), 1),
            "every_member_latency_ms_p95": round(percentile(per_member, 0.95), 1),
            "delta_interval_s": args.interval
            if args.interval is not None
            else settings.MCHAT_STREAM_DELTA_INTERVAL,
            "oldest_in_delivery_latency_ms_p50": round(percentile(oldest, 0.50), 1),
            "oldest_in_delivery_latency_ms_p95": round(percentile(oldest, 0.95), 1),
            "deliveries_received": deliveries,
            "append_errors": {str(code): n for code, n in sorted(errors.items())},
            "streams": len(streams),
            "request_records_written": records,
            "message_rows_updated": None if updates_before is None else updates_after - updates_before,
            "bridge_cpu_ms_per_delta": round(cpu_used * 1000 / total, 3),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "cpus": os.cpu_count(),
        }
        print(json.dumps(result, ensure_ascii=False, indent=2))
        out = REPO_DIR / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / f"streams-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json").write_text(
            json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        _report_row(result, REPO_DIR / "bench" / "STREAMS.md")
        return 0
    finally:
        if streamer is not None:
            streamer.close(end_session=True)
        if pool is not None:
            pool.close()
        for bridge in bridges:
            bridge.stop()
        if redis_server is not None:
            redis_server.stop()
        if broker is not None:
            broker.stop()
        if pg is not None:
            pg.stop()


REPORT_HEADER = """# Streamed replies under load (issue 17)

Written by `python -m bench.streams` (one row per run; raw JSON in `bench/results/`). An
agent appends deltas to a group whose members are all online. Goals: append -> shown p50
< 50 ms, <= ~10 deliveries per member per second, no database write per delta.

Latency is from an append's request to the arrival of the delta carrying it, over every
append a delta carried: at every member (each member's arrival counts once), at the first
member, and at the last member to get it; "oldest" is the worst append of each delivery.

Reading the numbers: deliveries are coalesced to one per interval (MCHAT_STREAM_DELTA_INTERVAL,
0.1 s: at most ~10 a second); an append that comes while a delivery is held back waits for the
next one. With appends every 10 ms and a delivery every 0.1 s an append waits 0-100 ms, **50 ms
on average, before any transport**: at 100 appends/s the p50 goal of 50 ms and the ~10
deliveries/s cap cannot both hold. The p50 at the first member is that wait plus one hop; the
rest is the fan-out to the subscribers (Mosquitto writing 500 sockets, two Python receiver
processes reading them). A row with a shorter interval shows the trade: more deliveries, less
wait. Database writes per stream: its start (one insert, not counted), a request record for
start and end, and the text stored every 2 s plus once at the end (message rows updated,
PostgreSQL only); none per delta. Read the load average beside each row: the numbers mean
something only on an otherwise idle machine.

| run (UTC) | commit | db | bridges | buffer | members | interval s | appends/s offered (s) | append errors | p50 / p95 ms, every member | p50 / p95 ms, last member | p50 ms, first member | oldest p50 / p95 ms | deliveries / member / s | streams | request records | message rows updated | bridge CPU ms / delta | load avg before -> after |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
"""

EARLIER_ROWS = """
## Earlier rows (before the measurement fix)

Until 2026-12-02 13:30 the receivers recorded a delivery under its first append only (the
token stopped at the first space), so the rows of commits 3f44e1b and 8302212 measured the
oldest append of each delivery: their p50 equals their "oldest" p50. The first four rows
measured every append, at the last member.

"""


def _report_row(result: dict, path: Path) -> None:
    """One line for the run in bench/STREAMS.md (created with its header)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_DIR, capture_output=True, text=True
    ).stdout.strip()
    r = result
    cells = [
        r["at"],
        commit,
        r["database"],
        r["bridges"],
        r["stream_buffer"],
        r["members"],
        r["delta_interval_s"],
        f"{r['append_rate_offered']} ({r['append_seconds']})",
        json.dumps(r["append_errors"]) if r["append_errors"] else "none",
        f"{r['every_member_latency_ms_p50']} / {r['every_member_latency_ms_p95']}",
        f"{r['latency_ms_p50']} / {r['latency_ms_p95']}",
        r["first_member_latency_ms_p50"],
        f"{r['oldest_in_delivery_latency_ms_p50']} / {r['oldest_in_delivery_latency_ms_p95']}",
        r["deliveries_per_member_per_second"],
        r["streams"],
        r["request_records_written"],
        "n/a (SQLite)" if r["message_rows_updated"] is None else r["message_rows_updated"],
        r["bridge_cpu_ms_per_delta"],
        f"{' '.join(map(str, r['load_average_before']))} -> {' '.join(map(str, r['load_average_after']))}",
    ]
    row = "| " + " | ".join(str(cell) for cell in cells) + " |\n"
    text = path.read_text(encoding="utf-8") if path.exists() else REPORT_HEADER
    rows_end = text.find(EARLIER_ROWS)  # new rows go above the earlier ones
    if rows_end < 0:
        text += row
    else:
        text = text[:rows_end] + row + text[rows_end:]
    path.write_text(text, encoding="utf-8")


def _connected(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return bool(json.loads(answer.read())["broker_connected"])
    except OSError:
        return False


def _answers(client) -> bool:
    try:
        client.request("group.list", timeout=2)
        return True
    except Exception:
        return False


if __name__ == "__main__":
    sys.exit(main())
