"""Load patterns and their statistics: closed loops (N requests in flight), open loops (a
steady offered rate), fan-out, and single timed requests. Everything here runs requests
through a `Requests` object (requester clients in a Swarm); receivers live in other
processes (`ReceiverPool`)."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.services import helper_process
from bench.swarm import Swarm

REQ = "mchat/msg/req/"
RESP = "mchat/msg/resp/"
OK_MARK = b'"code":0,'

PayloadFactory = Callable[[int, str], bytes]  # (client index, seq_id) -> request bytes


def stats_ms(samples: list[float]) -> dict:
    """Percentiles (nearest rank) of durations in seconds, reported in milliseconds."""
    if not samples:
        return {"count": 0}
    ordered = sorted(samples)

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))] * 1000

    return {
        "count": len(ordered),
        "p50": round(rank(50), 3),
        "p95": round(rank(95), 3),
        "p99": round(rank(99), 3),
        "max": round(ordered[-1] * 1000, 3),
        "mean": round(sum(ordered) / len(ordered) * 1000, 3),
    }


def slow_spans(timeline: list[tuple[float, float]], threshold: float, gap: float = 0.1) -> list[dict]:
    """Runs of requests slower than `threshold` (s), from (intended send time, latency) pairs:
    a run ends when no slow request was sent within `gap` s of the last one's answer. Each span
    has its start (the first slow request's scheduled time), end (the last one's answer), how
    many requests it holds and the slowest. Times stay time.monotonic() seconds."""
    spans: list[dict] = []
    for intended, latency in sorted(timeline):
        if latency < threshold:
            continue
        if spans and intended <= spans[-1]["end"] + gap:
            span = spans[-1]
            span["end"] = max(span["end"], intended + latency)
            span["requests"] += 1
            span["max"] = max(span["max"], latency)
        else:
            spans.append({"start": intended, "end": intended + latency, "requests": 1, "max": latency})
    return spans


def response_code(payload: bytes) -> int:
    if OK_MARK in payload:
        return 0
    try:
        return int(json.loads(payload).get("code", -1))
    except (ValueError, AttributeError, TypeError):
        return -1


class Requests:
    """Requester clients (one Swarm) and the bookkeeping of their outstanding requests."""

    def __init__(
        self,
        swarm: Swarm,
        logins: list[tuple[str, str, str]],
        *,
        extra_topics: list[list[str]] | None = None,
        on_delivery: Callable[[float, int, bytes], None] | None = None,
        seq_prefix: str = "s",
    ) -> None:
        """`extra_topics`: more subscriptions per client (an online employee's inbox, say);
        what arrives on them goes to `on_delivery(now, client index, payload)` (swarm thread)."""
        self.swarm = swarm
        self.client_ids = [login[2] for login in logins]
        self.unexpected = 0
        self.on_delivery = on_delivery
        self._pending: dict[tuple[str, str], Callable[[float, bytes], None]] = {}
        self._seq = itertools.count()
        self._seq_prefix = seq_prefix
        extra = extra_topics or [[] for _ in logins]
        self.clients = swarm.connect_many(
            logins,
            on_message=self._on_message,
            subscriptions=[
                [f"{RESP}{cid}/+", *more] for cid, more in zip(self.client_ids, extra, strict=True)
            ],
        )
        self._index = {id(client): i for i, client in enumerate(self.clients)}

    def send(self, index: int, make_payload: PayloadFactory, on_response) -> str:
        """Swarm thread only. Returns the seq_id (unique for the whole run)."""
        client_id = self.client_ids[index]
        seq_id = f"{self._seq_prefix}{next(self._seq)}"
        self._pending[(client_id, seq_id)] = on_response
        self.clients[index].publish(f"{REQ}{client_id}/{seq_id}", make_payload(index, seq_id), qos=1)
        return seq_id

    def request(self, index: int, make_payload: PayloadFactory, timeout: float = 30.0) -> tuple[float, bytes]:
        """From any thread but the swarm's: one request, its latency (s) and response bytes."""
        done = threading.Event()
        box: dict = {}

        def fire() -> None:
            started = time.monotonic()

            def on_response(now: float, payload: bytes) -> None:
                box["latency"], box["payload"] = now - started, payload
                done.set()

            box["seq_id"] = self.send(index, make_payload, on_response)

        self.swarm.call(fire)
        if not done.wait(timeout):
            raise TimeoutError(f"no response within {timeout} s to {box.get('seq_id')}")
        return box["latency"], box["payload"]

    def _on_message(self, client, message) -> None:
        now = time.monotonic()
        if not message.topic.startswith(RESP):
            if self.on_delivery is not None:
                self.on_delivery(now, self._index[id(client)], message.payload)
            return
        client_id, _, seq_id = message.topic[len(RESP) :].rpartition("/")
        callback = self._pending.pop((client_id, seq_id), None)
        if callback is None:
            self.unexpected += 1  # a repeated answer (redelivery) or a stray
            return
        callback(now, message.payload)


def _spread(total: int, slots: int) -> list[int]:
    return [total // slots + (1 if i < total % slots else 0) for i in range(slots)]


@dataclass
class LoopResult:
    latencies: list[float] = field(default_factory=list)
    codes: Counter = field(default_factory=Counter)
    answered_in_window: int = 0
    window: float = 0.0
    # seq_id -> intended send time (open loop), or the time it was sent (closed loop)
    sent: dict[str, float] = field(default_factory=dict)
    unanswered: int = 0
    late: list[float] = field(default_factory=list)  # open loop: actual minus intended send time
    # open loop: (intended send time, latency) of each answer, time.monotonic() seconds
    timeline: list[tuple[float, float]] = field(default_factory=list)
    started: float = 0.0  # open loop: the first scheduled send; closed loop: the start (warm-up first)

    def summary(self) -> dict:
        return {
            "per_second": round(self.answered_in_window / self.window, 1) if self.window else 0,
            "latency_ms": stats_ms(self.latencies),
            "codes": {str(k): v for k, v in sorted(self.codes.items())},
            "unanswered": self.unanswered,
        }


def closed_loop(
    requests: Requests,
    *,
    clients: list[int],
    in_flight: int,
    duration: float,
    warmup: float,
    make_payload: PayloadFactory,
    progress: Callable[[int], None] | None = None,
    drain: float = 30.0,
) -> LoopResult:
    """`in_flight` requests outstanding at all times (spread over `clients`); each answer
    sends the next. Throughput counts answers inside the window after `warmup`; latencies
    are of requests sent and answered inside it."""
    result = LoopResult(window=duration)
    state = {"outstanding": 0}
    finished = threading.Event()
    start = result.started = time.monotonic()
    window_start, window_end = start + warmup, start + warmup + duration

    def fire(index: int) -> None:
        sent = time.monotonic()

        def on_response(now: float, payload: bytes) -> None:
            state["outstanding"] -= 1
            if window_start <= now <= window_end:
                result.answered_in_window += 1
                if sent >= window_start:
                    result.latencies.append(now - sent)
            result.codes[response_code(payload)] += 1
            if now < window_end:
                fire(index)
            elif state["outstanding"] == 0:
                finished.set()

        state["outstanding"] += 1
        result.sent[requests.send(index, make_payload, on_response)] = sent

    def begin() -> None:
        for index, count in zip(clients, _spread(in_flight, len(clients)), strict=True):
            for _ in range(count):
                fire(index)

    requests.swarm.call(begin)
    while not finished.wait(0.25):
        if progress:
            progress(result.answered_in_window)
        if time.monotonic() > window_end + drain:
            result.unanswered = state["outstanding"]
            break
    if progress:
        progress(result.answered_in_window)
    return result


def open_loop(
    requests: Requests,
    *,
    clients: list[int],
    rate: float,
    duration: float,
    make_payload: PayloadFactory,
    progress: Callable[[int], None] | None = None,
    drain: float = 30.0,
) -> LoopResult:
    """Requests at a steady `rate` whatever the answers do (round-robin over `clients`).
    Latency is measured from each request's scheduled time, so a stall that delays sending
    is counted (no coordinated omission)."""
    total = int(rate * duration)
    interval = 1.0 / rate
    result = LoopResult(window=duration)
    state = {"next": 0, "answered": 0, "last": 0.0}
    finished = threading.Event()
    t0 = time.monotonic() + 0.05
    result.started = t0

    def pump() -> None:
        now = time.monotonic()
        while state["next"] < total and t0 + state["next"] * interval <= now:
            intended = t0 + state["next"] * interval
            index = clients[state["next"] % len(clients)]
            state["next"] += 1

            def on_response(when: float, payload: bytes, intended=intended) -> None:
                result.latencies.append(when - intended)
                result.timeline.append((intended, when - intended))
                result.codes[response_code(payload)] += 1
                state["answered"] += 1
                state["last"] = when
                if state["answered"] == total:
                    finished.set()

            seq_id = requests.send(index, make_payload, on_response)
            result.sent[seq_id] = intended
            result.late.append(time.monotonic() - intended)
        if state["next"] < total:
            requests.swarm.call_at(t0 + state["next"] * interval, pump)

    requests.swarm.call(lambda: requests.swarm.call_at(t0, pump))
    deadline = t0 + duration + drain
    while not finished.wait(0.25):
        if progress:
            progress(state["answered"])
        if time.monotonic() > deadline:
            break
    # Achieved rate: answers over the time from the first scheduled send to the last answer.
    result.answered_in_window = state["answered"]
    result.window = max(state["last"] - t0, duration) if state["answered"] else duration
    result.unanswered = total - state["answered"]
    if progress:
        progress(state["answered"])
    return result


class ReceiverPool:
    """Subscriber clients spread over several `bench.receivers` processes (own CPU, own GIL)."""

    def __init__(self, port: int, processes: int) -> None:
        self.port = port
        self._procs = [helper_process("bench.receivers") for _ in range(processes)]
        self._topics: list[Counter] = [Counter() for _ in self._procs]

    def _ask(self, index: int, command: dict) -> dict:
        proc = self._procs[index]
        proc.stdin.write(json.dumps(command) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"receiver process {proc.pid} exited")
        return json.loads(line)

    def _ask_all(self, commands: list[dict | None]) -> list[dict | None]:
        for proc, command in zip(self._procs, commands, strict=True):
            if command is not None:
                proc.stdin.write(json.dumps(command) + "\n")
                proc.stdin.flush()
        replies = []
        for proc, command in zip(self._procs, commands, strict=True):
            if command is None:
                replies.append(None)
                continue
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"receiver process {proc.pid} exited")
            replies.append(json.loads(line))
        return replies

    def connect(
        self, logins: list[tuple[str, str, str]], subscriptions: list[list[str]], *, whole: bool = False
    ) -> None:
        """`whole`: record each payload under its whole text after "bench " (bench.receivers)."""
        shares: list[dict] = [{"logins": [], "subscriptions": []} for _ in self._procs]
        for i, (login, topics) in enumerate(zip(logins, subscriptions, strict=True)):
            slot = i % len(self._procs)
            shares[slot]["logins"].append(list(login))
            shares[slot]["subscriptions"].append(topics)
            self._topics[slot].update(topics)
        replies = self._ask_all(
            [
                {"cmd": "connect", "port": self.port, "timeout": 180, "whole": whole, **share}
                for share in shares
            ]
        )
        failures = [r.get("error") for r in replies if not r.get("ok")]
        if failures:
            raise RuntimeError(f"receivers failed to connect: {failures}")

    def subscribers(self, topic: str) -> int:
        return sum(topics[topic] for topics in self._topics)

    def wait(self, tokens: dict[str, str], timeout: float) -> dict[str, int]:
        """tokens: token -> topic it was published on. Waits until every subscriber of each
        topic has it (or `timeout`); returns the counts."""
        commands = []
        for topics in self._topics:
            wanted = {t: topics[topic] for t, topic in tokens.items() if topics[topic]}
            commands.append({"cmd": "wait", "tokens": wanted, "timeout": timeout} if wanted else None)
        counts: Counter = Counter()
        for reply in self._ask_all(commands):
            if reply is not None:
                counts.update(reply["counts"])
        return dict(counts)

    def dump(self) -> dict[str, list]:
        """token -> [count, first arrival, last arrival] over all processes; then forgets."""
        return self.dump_with_times(times=False)[0]

    def dump_with_times(self, times: bool = True) -> tuple[dict[str, list], dict[str, list[float]]]:
        """dump(), and every arrival time of each token (one per receiver that got it)."""
        merged: dict[str, list] = {}
        every: dict[str, list[float]] = {}
        for reply in self._ask_all([{"cmd": "dump", "times": times} for _ in self._procs]):
            for token, arrivals in reply.get("times", {}).items():
                every.setdefault(token, []).extend(arrivals)
            for token, (count, first, last) in reply["arrivals"].items():
                entry = merged.get(token)
                if entry is None:
                    merged[token] = [count, first, last]
                else:
                    entry[0] += count
                    entry[1] = min(entry[1], first)
                    entry[2] = max(entry[2], last)
        return merged, every

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                try:
                    proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                    proc.stdin.flush()
                except (BrokenPipeError, OSError):
                    pass
        for proc in self._procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
