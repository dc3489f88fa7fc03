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
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from bench import peer
from bench.measure import ReceiverPool
from bench.peer_report import before_of
from bench.scenarios import Scenarios
from bench.services import (
    REPO_DIR,
    BridgeProcess,
    PostgresCluster,
)
from bench.single import SingleRequest
from bench.stack import BENCH_DIR, Stack, machine_info, versions
from bench.swarm import Swarm


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
    peer_seconds: float  # each phase of the peer harness's shape (bench.peer)
    peer_warmup: float
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
    peer_seconds=20,  # as the peer's run: run_all.sh --duration 20
    peer_warmup=3,
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
    peer_seconds=2,
    peer_warmup=0.5,
)


class Bench(Stack, Scenarios, peer.PeerPhases, SingleRequest):
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
        self.steps = tqdm(total=21, desc="bench", unit="step", position=0, dynamic_ncols=True)

    # --- helpers --------------------------------------------------------------------------

    def step(self, text: str) -> None:
        self.steps.set_postfix_str(text)
        self.steps.update(1)

    def sub_bar(self, total: float, desc: str, unit: str = "req") -> tqdm:
        return tqdm(total=total, desc=desc, unit=unit, position=1, leave=False, dynamic_ncols=True)

    def log(self, text: str) -> None:
        tqdm.write(text)

    # --- the run --------------------------------------------------------------------------

    def execute(self) -> None:
        self.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        (BENCH_DIR / "results").mkdir(exist_ok=True)
        self.results["machine"] = machine_info()
        self.results["started_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        if self.args.before:
            self.results["before"] = before_of(
                json.loads(self.args.before.read_text()), str(self.args.before)
            )
        # The peer first, on a machine where nothing of MChat runs yet; then MChat.
        self.results["peer"] = self.run_peer()
        self.step("peer")
        self.results["machine"]["loadavg_mchat_start"] = os.getloadavg()
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

        want = self.args.only.__contains__
        raw: dict = {}
        if want("raw"):
            self.start_echo()
            raw["in_flight_1"] = self.closed("raw broker, 1 in flight", 1)
            self.step("raw 1")
            raw["in_flight_64"] = self.closed("raw broker, 64 in flight", 64)
            self.step("raw 64")
            self.stop_echo()
            raw["fanout"] = self.raw_fanout()
            self.results["raw_broker"] = raw
            self.step("raw fan-out")

        def ratio(row: dict, key: str = "in_flight_64") -> None:
            base = _per_second(raw, key)
            row["ratio_to_raw"] = round(row["per_second"] / base, 3) if base else None

        self.start_bridge("b1")
        self.wait_bridge_ready()
        self.watch_processes()
        self.step("bridge up")
        mchat: dict = {}
        self.results["send_private"] = mchat
        if want("requests"):
            mchat["in_flight_1"] = self.closed("send_private, 1 in flight", 1)
            self.step("send_private 1")
            mchat["in_flight_64"] = self.closed("send_private, 64 in flight", 64)
            self.step("send_private 64")
            for key in ("in_flight_1", "in_flight_64"):
                ratio(mchat[key], key)
        if want("peer"):
            self.results["peer_phases"] = self.peer_phases()
            self.step("peer phases")
        if want("profile"):
            self.results["profile_1"] = self.run_profile(in_flight=1)
            self.step("profiled at 1 in flight")
            self.results["profile"] = self.run_profile()
            self.step("profiled")
        if want("offered"):
            capacity = _per_second(mchat, "in_flight_64") or 2000.0
            self.results["offered_load"] = self.offered(capacity)
            self.step("offered load")
        if want("fanout"):
            self.results["fanout"] = self.mchat_fanout()
            self.step("fan-out")
        if want("org"):
            self.results["org_tree"] = self.org_tree()
            self.results["member_add"] = self.member_add()
            self.step("org scale")
        if want("process"):
            self.results["memory"] = self.memory()
            self.results["in_process"] = self.in_process()
            self.results["single_request"] = self.single_request()
            self.step("memory, queries")
        if self.pg is not None and want("syncoff"):
            # How much of a request is waiting for the WAL flush of its COMMIT on this disk.
            self.pg.psql("ALTER SYSTEM SET synchronous_commit = off")
            self.pg.psql("SELECT pg_reload_conf()")
            time.sleep(0.5)
            row = self.closed("send_private, 64 in flight, synchronous_commit=off", 64)
            ratio(row)
            self.results["send_private"]["in_flight_64_sync_commit_off"] = row
            self.pg.psql("ALTER SYSTEM RESET synchronous_commit")
            self.pg.psql("SELECT pg_reload_conf()")
        if self.args.bridges > 1 and want("multi"):
            for n in range(2, self.args.bridges + 1):
                self.start_bridge(f"b{n}")
            time.sleep(1.0)
            self.wait_bridge_ready()
            before = self.lock_incidents()
            row = self.closed(f"send_private, 64 in flight, {self.args.bridges} bridges", 64)
            time.sleep(1.5)  # a backend reports its deadlocks to pg_stat_database within a second
            after = self.lock_incidents()
            row["incidents"] = {key: after[key] - before[key] for key in after}
            ratio(row)
            row["bridges"] = self.args.bridges
            self.results["send_private"]["in_flight_64_multi_bridge"] = row
        self.step("multi-bridge")
        self.results["incidents"] = self.incidents()
        self.results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.results["machine"]["loadavg_end"] = os.getloadavg()
        self.write()
        self.step("report")

    def run_peer(self) -> dict | None:
        """The peer harness (bench.peer), back to back with MChat's run; or a result it wrote
        before (--peer-result); None when not asked for."""
        args = self.args
        if args.peer_result:
            return peer.read_peer_result(args.peer_result)
        if not args.peer:
            return None
        started = time.monotonic()
        duration = args.peer_duration or (3 if args.quick else 20)
        # A short run does not wait a minute per phase for a quiet machine.
        extra = ["--quiet-max-wait", "5", "--fanout-reps", "5"] if args.quick else []
        try:
            row = peer.run_ejabberd(
                args.peer_harness, self.work, duration=duration, extra_args=extra, log=self.log
            )
        except (OSError, subprocess.SubprocessError) as exc:
            row = {"name": "ejabberd", "error": f"{type(exc).__name__}: {exc}"}
        row["wall_seconds"] = round(time.monotonic() - started, 1)
        if "error" in row:
            self.log(f"peer: {row['error']}")
        elif row.get("result_file"):
            # The work directory goes at the end: keep the peer's own result beside ours.
            kept = BENCH_DIR / "results" / f"peer-ejabberd-{self.stamp}.json"
            shutil.copy(row["result_file"], kept)
            row["result_file"] = str(kept.relative_to(REPO_DIR))
        return row

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


def _per_second(rows: dict, key: str) -> float | None:
    return (rows.get(key) or {}).get("per_second")


PARTS = ("raw", "requests", "peer", "profile", "offered", "fanout", "org", "process", "syncoff", "multi")


def _parts(text: str) -> set[str]:
    parts = {part.strip() for part in text.split(",") if part.strip()}
    unknown = parts - set(PARTS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    return parts


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
    parser.add_argument(
        "--peer",
        choices=["ejabberd"],
        help="also run the peer chat server's harness back to back (before MChat) and report both",
    )
    parser.add_argument(
        "--peer-harness",
        type=Path,
        default=peer.DEFAULT_HARNESS,
        help=f"the peer harness's directory (its run_all.sh is run from there; default {peer.DEFAULT_HARNESS})",
    )
    parser.add_argument(
        "--peer-duration",
        type=float,
        default=None,
        help="seconds per peer phase (run_all.sh --duration; default 20, 3 with --quick)",
    )
    parser.add_argument(
        "--peer-result",
        type=Path,
        default=None,
        help="report beside a JSON result the peer harness wrote before instead of running it",
    )
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="an earlier run's results JSON (the code before a change): the report shows before / after",
    )
    parser.add_argument(
        "--only",
        type=_parts,
        default=set(PARTS),
        help=f"measure only these parts, comma-separated (A/B runs of a few phases): {', '.join(PARTS)}",
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
