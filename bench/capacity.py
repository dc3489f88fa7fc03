"""Capacity of one broker (issue 15 item 7): `python -m bench.capacity` (`make bench-capacity`).

How many authenticated MQTT connections one Mosquitto with the mchat_auth plugin holds on
this machine, each employee subscribed to its inbox and its status topic; how fast they log in
through the plugin; and a reconnect storm after a broker restart, counting what persistent
sessions were sent while offline. Writes bench/CAPACITY.md and bench/results/capacity-*.json.

1. Credentials for N employees are written with the project's own writer (org.credentials
   `$7$` hashes, bridge.broker.password_line, bridge.acl's ACL), as the bridge renders them;
   the broker config is the one `make up` renders (plugin, WebSockets listener, persistence),
   with the open-files limit raised (bridge.broker.open_files_limit_raise) and max_connections.
2. Swarm processes (bench/capacity_clients.py, raw MQTT 5 over asyncio, from several
   127.0.0.x source addresses) connect everyone: CONNECT with a persistent session and a
   Will, SUBSCRIBE to mchat/inbox/{id} and mchat/status/{id}, a retained online status.
   Logins/s = connections / time until the last SUBACK.
3. Held for --hold seconds: broker RSS, descriptors, CPU while idle, connections dropped.
4. Storm: --offline employees disconnect (sessions kept) and get --queued messages each; the
   broker is stopped (SIGTERM: persistence saved) and started again (persistence loaded);
   --storm-messages more go to random employees' inboxes while all are offline; then every
   employee reconnects at once (--window connects in flight per swarm process). Measured:
   time until all are connected with their sessions, and every message counted by id (lost,
   duplicated).

    python -m bench.capacity --connections 50000   # the full run (heavy: run it alone)
    python -m bench.capacity --quick               # 2,000 connections, a minute
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.capacity_clients import Peer, publish_many, worker_main
from bench.services import REPO_DIR, free_port
from bench.stack import BENCH_DIR, machine_info, proc_memory
from bridge.broker import (
    DEFAULT_BRIDGE_USER,
    MosquittoProcess,
    build_plugin,
    max_connections_for,
    open_files_limit_raise,
    password_line,
    render_config,
    write_atomically,
)
from org.credentials import hash_password

ACL_TEMPLATE_MODULE = "bridge.acl"  # ACL_TEXT, imported lazily (it imports Django's settings lazily)
STORM_GOAL_SECONDS = 60


def seed_credentials(directory: Path, count: int, bridge_password: str) -> list[tuple[str, str]]:
    """passwd and acl for `count` employees (emp_cap_000000...) and the bridge user; returns
    [(bridge user, password), (employee_id, password), ...]."""
    from bridge.acl import ACL_TEXT

    users = [(f"emp_cap_{i:06d}", f"pw-{i:06d}-{os.urandom(4).hex()}") for i in range(count)]
    lines = [password_line(DEFAULT_BRIDGE_USER, hash_password(bridge_password))]
    lines += [password_line(name, hash_password(password)) for name, password in users]
    write_atomically(directory / "passwd", "\n".join(lines) + "\n")
    write_atomically(directory / "acl", ACL_TEXT.format(bridge_user=DEFAULT_BRIDGE_USER))
    return [(DEFAULT_BRIDGE_USER, bridge_password), *users]


def source_addresses(count: int) -> list[str]:
    """Loopback source addresses, one per 8,000 connections (28,000 ephemeral ports each)."""
    return [f"127.0.1.{n}" for n in range(1, max(2, count // 8000 + 2))]


def descriptors(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except FileNotFoundError:
        return 0


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen queue was full (all
    listeners of the machine: Mosquitto's queue is 100 long, whatever somaxconn says)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split(), strict=False)).get("ListenOverflows", 0))
    return 0


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Swarm:
    """The swarm processes; `call` sends one command to all and gathers their answers."""

    def __init__(
        self,
        port: int,
        users: list[tuple[str, str]],
        processes: int,
        sources: list[str],
        *,
        presence_all: bool = False,
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        employees = list(range(1, len(users)))
        self.pipes, self.procs = [], []
        for n in range(processes):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(
                target=worker_main,
                args=(theirs, "127.0.0.1", port, users, employees[n::processes], sources, presence_all),
                daemon=True,
            )
            proc.start()
            self.pipes.append(ours)
            self.procs.append(proc)

    def call(self, command: str, timeout: float = 600, **arguments) -> list[dict]:
        for pipe in self.pipes:
            pipe.send((command, arguments))
        answers = []
        for pipe in self.pipes:
            if not pipe.poll(timeout):
                raise TimeoutError(f"a swarm process did not answer {command} within {timeout} s")
            answer = pipe.recv()
            if isinstance(answer, dict) and "error" in answer:
                raise RuntimeError(f"{command}: {answer['error']}")
            answers.append(answer)
        return answers

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs if p.pid)

    def memory_kib(self) -> int:
        return sum(proc_memory(p.pid).get("VmRSS", 0) for p in self.procs if p.pid)

    def stop(self) -> None:
        try:
            self.call("stop", timeout=30)
        except Exception:
            pass
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()


def _sum(answers: list[dict], key: str) -> int:
    return sum(a.get(key) or 0 for a in answers)


def _failures(answers: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for answer in answers:
        for key, n in (answer.get("failures") or {}).items():
            out[key] = out.get(key, 0) + n
    return out


def _publish(port: int, bridge: tuple[str, str], messages: list[tuple[str, bytes]]) -> dict:
    peer = Peer("127.0.0.1", port, [bridge], ["127.0.0.1"])
    return asyncio.run(publish_many(peer, "capacity", messages))


def _probe(port: int, extra: list[tuple[str, str]], sources: list[str]) -> dict:
    """One try each for employees past max_connections: how the broker answers them."""
    peer = Peer("127.0.0.1", port, extra, sources)

    async def tries() -> dict:
        gate = asyncio.Semaphore(64)
        outcomes: dict[str, int] = {}

        async def one(index: int) -> None:
            async with gate:
                try:
                    _present, reason = await peer.open(index, subscribe=True)
                    key = "accepted" if reason == 0 else f"reason {reason}"
                except (OSError, TimeoutError, ConnectionError) as exc:
                    key = f"refused: {type(exc).__name__}"
                outcomes[key] = outcomes.get(key, 0) + 1

        await asyncio.gather(*(one(i) for i in range(len(extra))))
        for connection in list(peer.connections.values()):
            connection.transport.abort()
        return outcomes

    return {"tried": len(extra), "outcomes": asyncio.run(tries())}


def presence_probe(count: int, window: int) -> dict:
    """`count` employees connect at once subscribed to mchat/status/+ (every colleague's
    presence, as mchat_sdk and the web client subscribe), each with a retained status: each
    connect is sent every status retained so far, and each status goes to everyone online,
    so the deliveries grow with the square of the employees. On a broker of its own."""
    with tempfile.TemporaryDirectory(prefix="mchat-presence-") as tmp:
        directory = Path(tmp) / "broker"
        port = free_port()
        conf = render_config(port=port, directory=directory)
        users = seed_credentials(directory, count, os.urandom(12).hex())
        broker = MosquittoProcess(conf)
        broker.start(timeout=60)
        swarm = Swarm(port, users, 1, source_addresses(count), presence_all=True)
        try:
            cpu_before, t0 = cpu_seconds(broker.pid), time.monotonic()
            (answer,) = swarm.call("connect_all", window=window)
            expected = count * count  # every status (retained or live) to every subscriber
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                (status,) = swarm.call("status")
                if status["status_received"] >= expected:
                    break
                time.sleep(0.5)
            return {
                "employees": count,
                "connected": answer["connected"],
                "connect_seconds": answer["seconds"],
                "status_deliveries": status["status_received"],
                "expected_deliveries": expected,
                "all_delivered_seconds": round(time.monotonic() - t0, 2),
                "broker_cpu_seconds": round(cpu_seconds(broker.pid) - cpu_before, 2),
                "broker_rss_kib": proc_memory(broker.pid).get("VmRSS"),
            }
        finally:
            swarm.stop()
            broker.stop(timeout=60)


def run(args: argparse.Namespace) -> dict:
    wanted = args.connections
    open_files_wanted = max(wanted * 3 + 10_000, 65_536)
    open_files = open_files_limit_raise(open_files_wanted)
    # One descriptor per connection: a broker whose open-files limit cannot be raised far
    # enough (no CAP_SYS_RESOURCE) holds max_connections; past it, --beyond more are tried.
    cap = max_connections_for(open_files)
    n = min(wanted, cap)
    beyond = min(wanted - n, args.beyond)
    build_plugin()
    work = Path(tempfile.mkdtemp(prefix="mchat-capacity-"))
    work.chmod(0o755)
    results: dict = {
        "connections_wanted": wanted,
        "connections_tried": n,
        "max_connections": cap,
        "machine": machine_info(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "open_files_limit": open_files,
        "open_files_wanted": open_files_wanted,
        # root, yet the hard limit stayed: no CAP_SYS_RESOURCE (a container)
        "open_files_raise_refused": open_files < open_files_wanted and os.geteuid() == 0,
        "settings": {k: v for k, v in vars(args).items() if k != "no_write"},
    }
    directory = work / "broker"
    port = free_port()
    conf = render_config(
        port=port,
        ws_port=free_port(),
        directory=directory,
        max_connections=cap,
    )
    started = time.monotonic()
    users = seed_credentials(directory, n + beyond, os.urandom(12).hex())
    results["seed_seconds"] = round(time.monotonic() - started, 2)
    broker = MosquittoProcess(conf)
    broker.start(timeout=60)
    sources = source_addresses(n)
    swarm = Swarm(port, users[: n + 1], args.processes, sources)
    rng = random.Random(15)
    try:
        results["broker_idle"] = {
            "rss_kib": proc_memory(broker.pid).get("VmRSS"),
            "fds": descriptors(broker.pid),
        }
        # 1. Everyone connects and subscribes.
        cpu_before, t0, overflows = cpu_seconds(broker.pid), time.monotonic(), listen_overflows()
        swarm_cpu = swarm.cpu_seconds()
        answers = swarm.call("connect_all", window=args.window)
        took = max(a["seconds"] or 0 for a in answers)
        connected = _sum(answers, "connected")
        results["connect"] = {
            "connected": connected,
            "seconds": round(took, 2),
            "logins_per_second": round(connected / took, 1) if took else None,
            "broker_cpu_seconds": round(cpu_seconds(broker.pid) - cpu_before, 2),
            "swarm_cpu_seconds": round(swarm.cpu_seconds() - swarm_cpu, 2),
            "wall_seconds": round(time.monotonic() - t0, 2),
            "failures": _failures(answers),
            "listen_overflows": listen_overflows() - overflows,
            "loadavg_after": os.getloadavg(),
        }
        print(f"connected {connected}/{n} in {took:.1f} s ({results['connect']['logins_per_second']}/s)")
        # 2. Held.
        cpu_before, t0 = cpu_seconds(broker.pid), time.monotonic()
        time.sleep(args.hold)
        status = swarm.call("status")
        memory = proc_memory(broker.pid)
        results["held"] = {
            "seconds": args.hold,
            "open": _sum(status, "open"),
            "dropped": _sum(status, "lost"),
            "broker_rss_kib": memory.get("VmRSS"),
            "broker_peak_kib": memory.get("VmHWM"),
            "broker_fds": descriptors(broker.pid),
            "broker_cpu_share_idle": round(
                (cpu_seconds(broker.pid) - cpu_before) / (time.monotonic() - t0), 3
            ),
            "swarm_rss_kib": swarm.memory_kib(),
            "loadavg": os.getloadavg(),
        }
        print(f"held {results['held']['open']} for {args.hold} s; broker RSS {memory.get('VmRSS')} KiB")
        if beyond:
            results["beyond"] = _probe(port, users[n + 1 :], sources)
            results["beyond"]["held_after"] = _sum(swarm.call("status"), "open")
            print(f"past max_connections: {results['beyond']}")

        # 3. Some go offline (sessions kept) and get messages queued.
        offline = [
            eid
            for a in swarm.call("disconnect", count=args.offline // args.processes)
            for eid in a["employee_ids"]
        ]
        queued = [
            (f"mchat/inbox/{eid}", f"before-{eid}-{k}".encode())
            for eid in offline
            for k in range(args.queued)
        ]
        results["before_restart"] = {"offline": len(offline), **_publish(port, users[0], queued)}

        # 4. Restart: SIGTERM saves the sessions; the start loads them.
        t0 = time.monotonic()
        broker.stop(timeout=300)
        stop_seconds = time.monotonic() - t0
        swarm.call("wait_all_lost", seconds=120.0)
        db = directory / "data" / "mosquitto.db"
        t0 = time.monotonic()
        broker.start(timeout=300)
        results["restart"] = {
            "stop_seconds": round(stop_seconds, 2),
            "start_seconds": round(time.monotonic() - t0, 2),
            "persistence_mib": round(db.stat().st_size / 2**20, 1) if db.exists() else None,
            "broker_rss_kib_after_start": proc_memory(broker.pid).get("VmRSS"),
        }
        # 5. While everyone is offline, more messages to random inboxes.
        employees = [eid for eid, _pw in users[1 : n + 1]]  # the swarm's (not the --beyond ones)
        during = [
            (f"mchat/inbox/{eid}", f"during-{k}-{eid}".encode())
            for k, eid in enumerate(rng.choice(employees) for _ in range(args.storm_messages))
        ]
        results["while_offline"] = _publish(port, users[0], during)

        # 6. The storm: everyone reconnects at once.
        cpu_before, t0, overflows = cpu_seconds(broker.pid), time.monotonic(), listen_overflows()
        answers = swarm.call("connect_all", window=args.window, subscribe=False)
        took = max(a["seconds"] or 0 for a in answers)
        reconnected = _sum(answers, "connected")
        storm_overflows = listen_overflows() - overflows
        expected = {payload.decode() for _topic, payload in queued + during}
        deadline = time.monotonic() + STORM_GOAL_SECONDS
        while time.monotonic() < deadline:
            status = swarm.call("status")
            if _sum(status, "received") >= len(expected):
                break
            time.sleep(0.5)
        delivered_at = time.monotonic() - t0
        got = [i for a in swarm.call("received") for i in a["ids"]]
        status = swarm.call("status")
        memory = proc_memory(broker.pid)
        results["storm"] = {
            "reconnected": reconnected,
            "seconds": round(took, 2),
            "reconnects_per_second": round(reconnected / took, 1) if took else None,
            "sessions_resumed": _sum(answers, "session_present"),
            "failures": _failures(answers),
            "listen_overflows": storm_overflows,
            "messages_expected": len(expected),
            "messages_received": len(expected & set(got)),
            "lost": len(expected - set(got)),
            "duplicates": _sum(status, "duplicates"),
            "all_delivered_seconds": round(delivered_at, 2),
            "broker_cpu_seconds": round(cpu_seconds(broker.pid) - cpu_before, 2),
            "broker_rss_kib": memory.get("VmRSS"),
            "broker_peak_kib": memory.get("VmHWM"),
            "loadavg_after": os.getloadavg(),
        }
        print(
            f"storm: {reconnected} back in {took:.1f} s, {results['storm']['lost']} of "
            f"{len(expected)} messages lost"
        )
        log = (directory / "mosquitto.log").read_text(errors="replace")
        results["broker_log"] = {
            "lines": log.count("\n"),
            "errors": [line for line in log.splitlines() if "rror" in line or "Too many" in line][:10],
        }
    finally:
        swarm.stop()
        broker.stop(timeout=300)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.presence_probe:
        results["presence_probe"] = presence_probe(args.presence_probe, args.window)
        print(f"presence probe: {results['presence_probe']}")
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["machine"]["loadavg_end"] = os.getloadavg()
    return results


def render(r: dict) -> str:
    c, h, s, rs = r["connect"], r["held"], r["storm"], r["restart"]
    tried = r["connections_tried"]

    def mib(kib: float | None) -> str:
        return f"{(kib or 0) / 1024:,.0f} MiB"

    idle = (r.get("broker_idle") or {}).get("rss_kib") or 0
    per_connection = (h["broker_rss_kib"] - idle) / h["open"] if h["open"] else 0
    projected = idle + per_connection * 50_000
    storm_ok = s["reconnected"] == tried and s["seconds"] <= STORM_GOAL_SECONDS
    capped = tried < r["connections_wanted"]
    lines = [
        "# Capacity of one broker",
        "",
        f"`python -m bench.capacity --connections {r['connections_wanted']}` (`make bench-capacity`), "
        f"{r['started_at']} to {r['finished_at']}, on {r['machine']['cores']} cores "
        f"({r['machine']['cpu']}), {r['machine']['memory_gib']} GiB, shared with other work: load "
        f"average {', '.join(f'{x:.2f}' for x in r['machine']['loadavg_start'])} before, "
        f"{', '.join(f'{x:.2f}' for x in r['machine']['loadavg_end'])} at the end. One Mosquitto "
        "2.0 with the mchat_auth plugin and the config `make up` renders; the clients are raw "
        f"MQTT 5 connections in {r['settings']['processes']} processes on the same 2 cores "
        "(bench/capacity_clients.py). Every employee: CONNECT with username and password "
        "(PBKDF2 checked by the plugin's login guard, then by Mosquitto's password_file), a "
        "persistent session and a Will, SUBSCRIBE to its inbox and its status topic, a retained "
        "online status.",
        "",
        "| measure | result | goal |",
        "|---|---:|---|",
        f"| connections held | {h['open']:,} of {tried:,} tried ({h['dropped']} dropped in {h['seconds']} s)"
        + (
            f"; {r['connections_wanted']:,} asked, capped by `max_connections` {r['max_connections']:,}"
            if capped
            else ""
        )
        + " | 50,000 |",
        f"| broker RSS, all connected | {mib(h['broker_rss_kib'])} (peak {mib(h['broker_peak_kib'])}; "
        f"{mib(idle)} idle, {per_connection:.1f} KiB per connection) | < 2 GiB |",
        f"| broker RSS projected at 50,000 | {mib(projected)} (idle + 50,000 x the per-connection cost) | < 2 GiB |",
        f"| broker RSS after the storm | {mib(s['broker_rss_kib'])} (peak {mib(s['broker_peak_kib'])}) | < 2 GiB |",
        f"| broker descriptors | {h['broker_fds']:,} (open-files limit {r['open_files_limit']:,}) | |",
        f"| logins through the plugin | {c['logins_per_second']:,.0f}/s ({c['connected']:,} in {c['seconds']} s, "
        f"broker CPU {c['broker_cpu_seconds']} s: {1000 * c['broker_cpu_seconds'] / max(c['connected'], 1):.2f} ms "
        f"a login; the swarm's {c.get('swarm_cpu_seconds', 'n/a')} s) | |",
        f"| broker CPU while holding them | {h['broker_cpu_share_idle']:.1%} of a core | |",
        f"| restart | stop {rs['stop_seconds']} s, start {rs['start_seconds']} s, "
        f"persistence file {rs['persistence_mib']} MiB | |",
        f"| reconnect storm | {s['reconnected']:,} back in {s['seconds']} s ({s['reconnects_per_second']:,.0f}/s), "
        f"{s['sessions_resumed']:,} sessions resumed | all within 60 s: {'yes' if storm_ok else 'NO'} |",
        f"| messages to offline persistent sessions | {s['messages_received']:,} of {s['messages_expected']:,} "
        f"delivered, {s['lost']} lost, {s['duplicates']} duplicated, all in {s['all_delivered_seconds']} s "
        "| 0 lost |",
    ]
    if r.get("beyond"):
        b = r["beyond"]
        lines.append(
            f"| past `max_connections` | {b['tried']:,} more tried once each: {b['outcomes']}; "
            f"{b['held_after']:,} still held | refused cleanly |"
        )
    if capped:
        lines += [
            "",
            f"**The limit hit: open files.** Mosquitto needs one descriptor per connection. This "
            f"process asked for an open-files limit of {r['open_files_wanted']:,} and got "
            f"{r['open_files_limit']:,}: "
            + (
                "the hard limit of this machine (a container whose root lacks CAP_SYS_RESOURCE, so "
                "setrlimit cannot raise it: 'not allowed to raise maximum limit'). "
                if r.get("open_files_raise_refused")
                else "the hard limit of this process (`ulimit -Hn`; root may raise it). "
            )
            + "One broker process here therefore holds at most `max_connections` = that "
            f"limit less {r['open_files_limit'] - r['max_connections']:,} for its own files; the "
            "rows above are measured at that size, and the memory at 50,000 is projected from "
            "them. Under systemd `LimitNOFILE=200000` (docs/deploy.md) lifts it: PID 1 may raise "
            "the hard limit.",
        ]
    p = r.get("presence_probe")
    if p:
        lines += [
            "",
            "**Presence as the clients subscribe to it.** The rows above subscribe each employee to "
            "its own status topic. mchat_sdk and the web client subscribe to `mchat/status/+`: every "
            "colleague's presence. Then each connect is sent every retained status and each status "
            f"change goes to everyone online: {p['employees']:,} employees connecting at once (a broker "
            f"of their own) took {p['connect_seconds']} s to connect and {p['all_delivered_seconds']} s "
            f"until {p['status_deliveries']:,} of the {p['expected_deliveries']:,} status deliveries "
            f"(employees squared) had arrived, broker CPU {p['broker_cpu_seconds']} s "
            f"({1e6 * p['broker_cpu_seconds'] / max(p['status_deliveries'], 1):.0f} µs a delivery). At 50,000 "
            "that is 2.5 billion deliveries for one storm, "
            f"{p['broker_cpu_seconds'] / max(p['status_deliveries'], 1) * 2.5e9 / 3600:,.0f} hours of one core "
            "at that cost: the presence subscription, not the connection "
            "count, is what one broker cannot carry at that size. Past a few thousand employees "
            "presence needs narrower topics (a client's contacts, its department) or a query.",
        ]
    lines += [
        "",
        f"Connect failures (retried): {c['failures'] or 'none'}; in the storm: {s['failures'] or 'none'}. "
        f"Listen queue overflows (the kernel dropped a SYN or an ACK because Mosquitto's accept "
        f"queue, 100 long, was full; the client retransmits after a second): "
        f"{c.get('listen_overflows', 'n/a')} while connecting, {s.get('listen_overflows', 'n/a')} in the storm "
        f"({r['settings']['window']} connects in flight per swarm process). "
        f"Broker log: {r['broker_log']['lines']:,} lines"
        + (f"; errors: {r['broker_log']['errors']}" if r["broker_log"]["errors"] else ", no errors")
        + ".",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=50_000)
    parser.add_argument("--quick", action="store_true", help="2,000 connections, short hold")
    parser.add_argument("--processes", type=int, default=2, help="swarm processes")
    parser.add_argument("--window", type=int, default=256, help="connects in flight per swarm process")
    parser.add_argument("--hold", type=float, default=30.0, help="seconds to hold every connection")
    parser.add_argument("--offline", type=int, default=1000, help="employees offline before the restart")
    parser.add_argument("--queued", type=int, default=2, help="messages to each of them before the restart")
    parser.add_argument("--storm-messages", type=int, default=10_000, help="messages while all are offline")
    parser.add_argument(
        "--beyond", type=int, default=500, help="tries past max_connections when it caps --connections"
    )
    parser.add_argument(
        "--presence-probe",
        type=int,
        default=1000,
        help="then this many employees subscribed to mchat/status/+ on a broker of their own (0: skip)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--no-write", action="store_true", help="print only; no CAPACITY.md / results")
    args = parser.parse_args(argv)
    if args.quick:
        args.connections, args.hold, args.offline, args.storm_messages = 2000, 5.0, 100, 1000
        args.presence_probe = min(args.presence_probe, 300)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = render(results)
    print(text)
    if not args.no_write:
        (BENCH_DIR / "results").mkdir(exist_ok=True)
        raw = BENCH_DIR / "results" / f"capacity-{stamp}.json"
        raw.write_text(json.dumps(results, indent=2) + "\n")
        (BENCH_DIR / "CAPACITY.md").write_text(text)
        print(f"wrote {raw.relative_to(REPO_DIR)}, bench/CAPACITY.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
