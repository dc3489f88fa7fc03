"""The peer's phases on MChat, and the peer itself run back to back (issue 19).

The peer is ejabberd 23.01 with every message archived in PostgreSQL, measured by the harness
in /work/shared/peers/ejabberd (its README says what it measures and what its "ack" means).
`PeerPhases` (mixed into bench.run.Bench) measures MChat the same way on the same shape:

- 50 employees online for the whole run, one connection each (client id `<employee>_peer`,
  subscribed to its answers and its inbox, as an MChat client is), in the bench's own process
  like the peer harness's clients; 1:1 messages go round a ring, employee j to employee j+1;
- bodies of the peer's size: "bench <token> " and 100 bytes of padding;
- send K=1 / K=32: K employees, each with one `msg.send_private` outstanding (the next once the
  answer is in), after a warm-up; answered sends/s, answer latency, and delivery to the online
  recipient under that load;
- ping-pong: employee 0 sends to employee 1, the next send only once employee 1's connection has
  the message; latency = send start -> the recipient read it;
- 10 pairs at 10 and 50 msg/s in all, open loop, latency from the scheduled send time;
- fan-out: 20 `msg.send_group` to the 50-member group (its members online in the receiver
  processes, the sender's own copy included), 0.5 s apart: time until all 50 have it, and each
  receiver's latency;
- CPU per phase as the peer reports it, in % of one core: server (bridge + Mosquitto; the peer:
  ejabberd), database, client (load generator + receivers), everything else.

`run_ejabberd` runs the harness's own `run_all.sh` (fresh database, start, bench, stop) in a
private directory on free ports, and returns its JSON result; nothing of it is copied here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

from bench import cpu, measure
from bench.receivers import token_of
from bench.services import free_port

DEFAULT_HARNESS = Path("/work/shared/peers/ejabberd")
ONLINE = 50  # the peer's --users
PAD = "x" * 100  # the peer's --body-bytes
PAIRS = 10  # the peer's --lat-pairs
RATES = (10, 50)  # the peer's --lat-rate
FANOUT_SIZE = 50
FANOUT_GAP = 0.5  # the peer's --fanout-gap
DELIVER_TIMEOUT = 15.0  # the peer's --deliver-timeout


def _json_bytes(payload: dict) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def cpu_percent(window: dict) -> dict:
    """bench.cpu's cores per group, as the peer reports CPU: % of one core."""

    def pct(*groups: str) -> float:
        return round(100 * sum(window.get(g, 0.0) for g in groups), 1)

    return {
        "server": pct("bridge", "broker"),
        "bridge": pct("bridge"),
        "broker": pct("broker"),
        "db": pct("postgres"),
        "client": pct("load_generator", "receivers"),
        "other": pct("outside_the_bench"),
    }


class PeerPhases:
    """The peer harness's phases on MChat (see the module docstring)."""

    # --- the online employees -------------------------------------------------------------

    def connect_online(self) -> None:
        from mchat.wire import inbox_topic

        people = self.population.employee_ids[:ONLINE]
        pw = self.population.password
        self.online_ids = people
        self._arrivals: dict[str, dict[int, float]] = {}  # token -> receiver index -> first arrival
        self._duplicates = 0
        self._expected: dict[str, int] = {}  # token -> the receiver it was sent to
        self._hook = None  # ping-pong: called on each delivery (swarm thread)
        self.online = measure.Requests(
            self.swarm,
            [(e, pw, f"{e}_peer") for e in people],
            extra_topics=[[inbox_topic(e)] for e in people],
            on_delivery=self._delivered,
            seq_prefix="p",
        )

    def ring_payload(self, index: int, seq_id: str) -> bytes:
        """Swarm thread: employee `index` to employee index + 1, a body of the peer's size."""
        to = (index + 1) % len(self.online_ids)
        self._expected[seq_id] = to
        return _json_bytes(
            {
                "action": "msg.send_private",
                "to_employee_id": self.online_ids[to],
                "content": f"bench {seq_id} {PAD}",
            }
        )

    def _delivered(self, now: float, index: int, payload: bytes) -> None:
        token = token_of(payload)
        if token is None:
            return
        by_receiver = self._arrivals.setdefault(token, {})
        if index in by_receiver:
            self._duplicates += 1
        else:
            by_receiver[index] = now
        if self._hook is not None:
            self._hook(now, index, token)

    def _take_arrivals(self) -> tuple[dict[str, dict[int, float]], int]:
        def take():
            arrivals, self._arrivals = self._arrivals, {}
            duplicates, self._duplicates = self._duplicates, 0
            return arrivals, duplicates

        return self.swarm.call_wait(take)

    def _wait_delivered(self, tokens: list[str]) -> None:
        """Until each token has reached the employee it was sent to (or DELIVER_TIMEOUT)."""

        def missing() -> int:
            return sum(1 for t in tokens if self._expected.get(t) not in self._arrivals.get(t, {}))

        deadline = time.monotonic() + DELIVER_TIMEOUT
        while self.swarm.call_wait(missing) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _deliveries(self, sent: dict[str, float]) -> tuple[dict[str, float], int, int]:
        """(token -> latency from `sent` to the recipient's arrival, lost, duplicates)."""
        self._wait_delivered(list(sent))
        arrivals, duplicates = self._take_arrivals()
        latencies, lost = {}, 0
        for token, t0 in sent.items():
            arrived = arrivals.get(token, {}).get(self._expected.get(token))
            if arrived is None:
                lost += 1
            else:
                latencies[token] = arrived - t0
        self.swarm.call_wait(self._expected.clear)
        return latencies, lost, duplicates

    # --- the phases -----------------------------------------------------------------------

    def peer_phases(self) -> dict:
        out = {}
        for k in (1, 32):
            out[f"send_{k}"] = self.peer_send(k)
        out["pingpong"] = self.peer_pingpong()
        for rate in RATES:
            out[f"rate_{rate}"] = self.peer_rate(rate)
        out["fanout_50"] = self.peer_fanout()
        return out

    def peer_send(self, k: int) -> dict:
        plan = self.plan
        label = f"peer phase: send K={k}"
        bar = self.sub_bar(None, label)
        self._take_arrivals()
        with cpu.CpuWindow(self.cpu_groups()) as window:
            result = measure.closed_loop(
                self.online,
                clients=list(range(k)),
                in_flight=k,
                duration=plan.peer_seconds,
                warmup=plan.peer_warmup,
                make_payload=self.ring_payload,
                progress=lambda n: (setattr(bar, "n", n), bar.refresh()),
            )
        bar.close()
        window_start = result.started + plan.peer_warmup
        latencies, lost, duplicates = self._deliveries(result.sent)
        # Delivery of the sends of the measured window (the peer's: its phase has no warm-up).
        delivery = [latencies[t] for t, at in result.sent.items() if at >= window_start and t in latencies]
        summary = result.summary()
        row = {
            "concurrency": k,
            "seconds": plan.peer_seconds,
            "per_second": summary["per_second"],
            "ack_ms": summary["latency_ms"],
            "codes": summary["codes"],
            "unanswered": summary["unanswered"],
            "delivery_under_load_ms": measure.stats_ms(delivery),
            "lost": lost,
            "duplicates": duplicates,
            "cpu_cores": window.result,
            "cpu_pct": cpu_percent(window.result),
        }
        self.log(f"{label}: {row['per_second']}/s, ack {row['ack_ms']}")
        return row

    def peer_pingpong(self) -> dict:
        """Employee 0 -> employee 1; the next send once employee 1 has read the previous one."""
        seconds = self.plan.peer_seconds
        e2e, acks, codes = [], [], Counter()
        state = {"token": None, "t0": 0.0, "end": 0.0, "sent": 0, "lost": 0}
        done = threading.Event()

        def fire() -> None:
            now = time.monotonic()
            if now >= state["end"]:
                state["token"] = None
                done.set()
                return
            state["t0"] = now

            def on_response(when: float, payload: bytes, t0=now) -> None:
                acks.append(when - t0)
                codes[measure.response_code(payload)] += 1

            state["token"] = self.online.send(0, self.ring_payload, on_response)
            state["sent"] += 1

        def on_delivery(now: float, index: int, token: str) -> None:
            if index == 1 and token == state["token"]:
                e2e.append(now - state["t0"])
                fire()

        def watchdog() -> None:
            # A delivery that never comes would stop the phase: count it lost, go on.
            if done.is_set():
                return
            if state["token"] is not None and time.monotonic() - state["t0"] > DELIVER_TIMEOUT:
                state["lost"] += 1
                fire()
            self.swarm.call_at(time.monotonic() + 1.0, watchdog)

        def begin() -> None:
            state["end"] = time.monotonic() + seconds
            self._hook = on_delivery
            fire()
            self.swarm.call_at(time.monotonic() + 1.0, watchdog)

        self._take_arrivals()
        with cpu.CpuWindow(self.cpu_groups()) as window:
            started = time.monotonic()
            self.swarm.call(begin)
            done.wait(seconds + 2 * DELIVER_TIMEOUT)
            elapsed = time.monotonic() - started
        self.swarm.call_wait(lambda: setattr(self, "_hook", None))
        self._take_arrivals()
        self.swarm.call_wait(self._expected.clear)
        row = {
            "seconds": seconds,
            "round_trips_per_second": round(len(e2e) / elapsed, 1) if elapsed else 0,
            "sent": state["sent"],
            "e2e_ms": measure.stats_ms(e2e),
            "ack_ms": measure.stats_ms(acks),
            "codes": {str(k): v for k, v in sorted(codes.items())},
            "lost": state["lost"],
            "cpu_cores": window.result,
            "cpu_pct": cpu_percent(window.result),
        }
        self.log(f"peer phase: ping-pong: e2e {row['e2e_ms']}")
        return row

    def peer_rate(self, rate: int) -> dict:
        """PAIRS pairs, `rate` msg/s in all, open loop; latency from each scheduled send."""
        seconds = self.plan.peer_seconds
        label = f"peer phase: {PAIRS} pairs at {rate}/s"
        total = int(rate * seconds)
        bar = self.sub_bar(total, label)
        self._take_arrivals()
        with cpu.CpuWindow(self.cpu_groups()) as window:
            result = measure.open_loop(
                self.online,
                clients=list(range(PAIRS)),
                rate=rate,
                duration=seconds,
                make_payload=self.ring_payload,
                progress=lambda n: (setattr(bar, "n", n), bar.refresh()),
                drain=DELIVER_TIMEOUT,
            )
            latencies, lost, duplicates = self._deliveries(result.sent)
        bar.close()
        e2e = list(latencies.values())
        summary = result.summary()
        row = {
            "pairs": PAIRS,
            "offered_per_second": rate,
            "seconds": seconds,
            "answered_per_second": summary["per_second"],
            "ack_ms": summary["latency_ms"],
            "e2e_ms": measure.stats_ms(e2e),
            "send_late_ms": measure.stats_ms(result.late),
            "codes": summary["codes"],
            "unanswered": summary["unanswered"],
            "lost": lost,
            "duplicates": duplicates,
            "cpu_cores": window.result,
            "cpu_pct": cpu_percent(window.result),
        }
        self.log(f"{label}: e2e {row['e2e_ms']}")
        return row

    def peer_fanout(self) -> dict:
        from mchat.wire import group_topic

        gid = self.population.fanout_groups[FANOUT_SIZE]
        topic = group_topic(gid)
        repeats = self.plan.fanout_repeats
        sent, responses = {}, []
        bar = self.sub_bar(repeats, f"peer phase: fan-out {FANOUT_SIZE}", "msg")
        self.pool.dump()
        with cpu.CpuWindow(self.cpu_groups()) as window:
            for _ in range(repeats):
                token, t0, latency = self.group_send(gid, topic, pad=PAD)
                sent[token] = t0
                if latency is not None:
                    responses.append(latency)
                bar.update(1)
                time.sleep(FANOUT_GAP)
        bar.close()
        arrivals, times = self.pool.dump_with_times()
        per_receiver = [t - t0 for token, t0 in sent.items() for t in times.get(token, [])]
        row = {
            **self._fanout_stats(sent, arrivals, self.pool.subscribers(topic)),
            "per_receiver_ms": measure.stats_ms(per_receiver),
            "ack_ms": measure.stats_ms(responses),
            "gap_seconds": FANOUT_GAP,
            "cpu_cores": window.result,
            "cpu_pct": cpu_percent(window.result),
        }
        self.log(f"peer phase: fan-out {FANOUT_SIZE}: {row['all_received_ms']}")
        return row


# --- the peer itself ----------------------------------------------------------------------


def run_ejabberd(harness: Path, work: Path, *, duration: float, extra_args: list[str], log=print) -> dict:
    """`run_all.sh --duration D` of the peer harness, with its working data, results and ports
    private to this run (BASE and RES under `work`, free loopback ports), and its JSON result."""
    base, results = work / "peer-ejabberd", work / "peer-results"
    results.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "BASE": str(base),
        "RES": str(results),
        "XMPP_PORT": str(free_port()),
        "PG_PORT": str(free_port()),
        "ERL_DIST_PORT": str(free_port()),
    }
    command = [str(harness / "run_all.sh"), "--duration", f"{duration:g}", *extra_args]
    log_path = work / "peer-run_all.log"
    log(f"peer: {' '.join(command)} (BASE={base}; log {log_path})")
    started = time.monotonic()
    with open(log_path, "w") as out:
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            returncode = proc.wait(timeout=1800)
        except BaseException:
            # Interrupted or too long: stop the harness (its own session) first.
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
            raise
        finally:
            # run_all.sh stops ejabberd and its PostgreSQL itself, unless it failed half way:
            # its stop.sh again (by their pid files under BASE; nothing else is touched).
            subprocess.run(
                [str(harness / "stop.sh"), "all"], env=env, stdout=out, stderr=subprocess.STDOUT, timeout=120
            )
    seconds = round(time.monotonic() - started, 1)
    found = sorted(results.glob("pgsql-*.json"))
    row = {
        "name": "ejabberd",
        "harness": str(harness),
        "command": " ".join(command),
        "ran_here": True,
        "seconds": seconds,
        "returncode": returncode,
    }
    if not found:
        tail = log_path.read_text(errors="replace")[-1500:]
        return {**row, "error": f"no result file (exit {returncode}); log tail:\n{tail}"}
    row["result_file"] = str(found[-1])
    row["result"] = json.loads(found[-1].read_text())
    log(f"peer: ejabberd done in {seconds} s")
    return row


def read_peer_result(path: Path) -> dict:
    """A result the peer harness wrote before (not run by this bench)."""
    return {
        "name": "ejabberd",
        "ran_here": False,
        "result_file": str(path),
        "result": json.loads(Path(path).read_text()),
    }


def peer_rows(result: dict) -> dict:
    """The peer's phases by the keys PeerPhases uses."""
    rows = {}
    for phase in result.get("phases", []):
        kind = phase.get("kind")
        if kind == "throughput":
            rows[f"send_{phase['concurrency']}"] = phase
        elif kind == "latency" and phase.get("pairs") == 1:
            rows["pingpong"] = phase
        elif kind == "latency":
            rows[f"rate_{phase['target_rate']:g}"] = phase
        elif kind == "fanout":
            rows[f"fanout_{phase['members']}"] = phase
    return rows
