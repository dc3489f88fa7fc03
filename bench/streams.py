"""Streamed replies under load (issue 17): one employee appends N deltas a second to a group of
M online members. `python -m bench.streams [--members 500] [--rate 100] [--seconds 20] [--postgres]`

Starts its own private stack like bench.run (SQLite file or a PostgreSQL cluster, Mosquitto
with the plugin, one bridge process), seeds the organisation, connects the members as
subscribers (bench.receivers processes), then streams. Reports, as JSON on stdout and in
bench/results/streams-<stamp>.json:

- latency: time from an append's request to the delivery that carries its text at the last
  member that got it, p50/p95 (measured for the oldest delta of each coalesced delivery, so
  an upper bound for the others it carries);
- deliveries per member per second (the coalescing promises about 10);
- database writes for the stream: the request records written for the stream's actions and,
  on PostgreSQL, the rows updated in the message table while it ran;
- bridge CPU seconds per delta (from /proc).

Not for a busy machine: the numbers mean something only on an otherwise idle one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from bench.measure import ReceiverPool
from bench.services import REPO_DIR, UNLIMITED_RATES, BridgeProcess, PostgresCluster, bridge_env, wait_until

BRIDGE_USER = "mchat-bridge"


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
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="mchat-bench-streams-"))
    pg = broker = bridge = pool = streamer = None
    try:
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
        from bridge.broker import MosquittoProcess, build_plugin, free_port, render_config

        build_plugin()
        conf = render_config(port=free_port(), directory=work / "broker", bridge_user=BRIDGE_USER)
        acl.sync(work / "broker")
        broker = MosquittoProcess(conf)
        broker.start()
        env["MCHAT_MQTT_URL"] = os.environ["MCHAT_MQTT_URL"] = f"mqtt://127.0.0.1:{broker.port}"
        bridge = BridgeProcess(env=env, instance="streams", shared=True, log_path=work / "bridge.log").start()

        from mchat_sdk import Client

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
        )

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
        cpu_before = cpu_seconds(bridge.pid)
        msg_id = streamer.stream_start(f"group:{group_id}")["msg_id"]
        sent_at: dict[str, float] = {}
        lock = threading.Lock()
        total = int(args.rate * args.seconds)
        started = time.monotonic()
        with ThreadPoolExecutor(8) as senders:
            for n in range(total):
                due = started + n / args.rate
                time.sleep(max(0.0, due - time.monotonic()))
                token = f"t{n:06d}"
                with lock:
                    sent_at[token] = time.monotonic()
                senders.submit(streamer.stream_append, msg_id, f"bench {token} ", seq_id=uuid.uuid4().hex)
        elapsed = time.monotonic() - started
        streamer.stream_end(msg_id)
        time.sleep(1.0)  # the last deliveries reach the members
        cpu_used = cpu_seconds(bridge.pid) - cpu_before
        arrivals = pool.dump()
        records = ProcessedRequest.objects.count() - records_before
        updates_after = updated_rows()
        # A receiver records a delivery under the text after "bench " up to the closing quote:
        # a coalesced delta's whole text, which starts with its oldest append's token.
        latencies, deliveries = [], 0
        final_text = "".join(f"bench {t} " for t in sent_at)[len("bench ") :]
        for text, (count, _first, last) in arrivals.items():
            if text == final_text:
                continue  # the message stream_end delivered, not a delta
            token = text.split(" ", 1)[0]
            if token in sent_at:
                latencies.append((last - sent_at[token]) * 1000)
                deliveries += count
        result = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "database": "postgresql" if args.postgres else "sqlite",
            "members": args.members,
            "appends": total,
            "append_rate_offered": args.rate,
            "append_seconds": round(elapsed, 2),
            "delta_deliveries_per_member": round(deliveries / max(1, args.members), 1),
            "deliveries_per_member_per_second": round(deliveries / max(1, args.members) / elapsed, 2),
            "latency_ms_p50": round(percentile(latencies, 0.50), 1),
            "latency_ms_p95": round(percentile(latencies, 0.95), 1),
            "latency_ms_mean": round(statistics.fmean(latencies), 1) if latencies else None,
            "request_records_written": records,
            "message_rows_updated": None if updates_before is None else updates_after - updates_before,
            "bridge_cpu_ms_per_delta": round(cpu_used * 1000 / total, 3),
        }
        print(json.dumps(result, ensure_ascii=False, indent=2))
        out = REPO_DIR / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / f"streams-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json").write_text(
            json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        return 0
    finally:
        if streamer is not None:
            streamer.close(end_session=True)
        if pool is not None:
            pool.close()
        if bridge is not None:
            bridge.stop()
        if broker is not None:
            broker.stop()
        if pg is not None:
            pg.stop()


def _answers(client) -> bool:
    try:
        client.request("group.list", timeout=2)
        return True
    except Exception:
        return False


if __name__ == "__main__":
    sys.exit(main())
