"""Where the bridge's time goes: py-spy samples of a running bridge process, aggregated.

`record(pid, seconds, output)` runs `py-spy record --idle --threads --nonblocking --format raw`
(wall-clock samples of every thread, idle ones included, without pausing the process), and
`analyse(path)` turns the collapsed stacks into:

- `phases`: for the bridge's request thread (the one in BridgeClient.run), the share of wall
  time spent inside each step of the pipeline (inclusive: a step's share contains its
  sub-steps), and in cross-cutting work (SQL round trips, ORM compilation, JSON);
- `project_top`: every function of MChat's own code by inclusive share (robust to renames);
- `self_top`: the functions where that thread's samples end (self time), grouped by function;
- `threads`: samples per thread (request thread, paho network thread, others).
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

from bench.services import REPO_DIR

PY_SPY = REPO_DIR / ".venv" / "bin" / "py-spy"

# (label, [(function name as py-spy prints it, path fragment of its file), ...]): a sample
# counts for a step if any of the alternatives is on its stack (the dispatcher is being
# reworked: old and new names both count). Indentation shows nesting; shares are inclusive.
PHASES: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "MQTT network pass (select, read, write; idle included)",
        [("BridgeClient._network", "bridge/client.py")],
    ),
    (
        "  read and parse what arrived (paho + bridge.gathering)",
        [("BridgeClient._read_available", "bridge/client.py")],
    ),
    ("  paho loop_misc (keepalive)", [("Client.loop_misc", "paho/mqtt/client.py")]),
    (
        "write what the batch gathered (one send)",
        [("GatheringSocket.flush", "bridge/gathering.py")],
    ),
    ("metrics of the batch (Prometheus)", [("RequestMetrics.batch", "bridge/metrics.py")]),
    ("periodic jobs", [("PeriodicJobs.run_due", "bridge/periodic.py")]),
    (
        "Dispatcher: requests in hand, total",
        [("Dispatcher.handle_batch", "bridge/dispatch.py"), ("Dispatcher.handle", "bridge/dispatch.py")],
    ),
    (
        "  topic parse + envelope decode",
        [("parse_request_topic", "bridge/protocol.py"), ("decode_envelope", "bridge/protocol.py")],
    ),
    (
        "  optimistic: a run of msg.send_private between pairs seen before, or a lone msg.send_group"
        " from a sender seen there before (one checked statement)",
        [("Dispatcher._serve_optimistically", "bridge/dispatch.py")],
    ),
    ("    send_private_known (handler)", [("send_private_known", "bridge/handlers/messages.py")]),
    ("      validate (DRF serializer, reused)", [("validate_many", "bridge/handlers/__init__.py")]),
    (
        "      services.message_send_private, known pairs -> messages_post (checks, number, insert, read positions)",
        [("_sends_between_known_pairs", "messaging/services/private_sends.py")],
    ),
    ("    send_group_known (handler)", [("send_group_known", "bridge/handlers/messages.py")]),
    (
        "      services.message_send_group, a known group -> messages_post (checks, number, insert, read positions)",
        [("_send_to_known_group", "messaging/services/messages.py")],
    ),
    (
        "  identity + idempotency SELECT (employees, earlier answers; the usual way)",
        [("Dispatcher._employees_and_records", "bridge/dispatch.py")],
    ),
    (
        "  rate limiter",
        [("RateLimiter.take", "bridge/ratelimit.py"), ("RateLimiter.take_all", "bridge/ratelimit.py")],
    ),
    ("  handler transaction(s) (the usual way)", [("Dispatcher._execute", "bridge/dispatch.py")]),
    (
        "    _execute_many (a run: many-handler; answers recorded for refusals only)",
        [("Dispatcher._execute_many", "bridge/dispatch.py")],
    ),
    ("      send_private_many (batch handler)", [("send_private_many", "bridge/handlers/messages.py")]),
    (
        "        services.message_send_private, the usual way: _sends_checked (refusals, conversations)",
        [("_sends_checked", "messaging/services/private_sends.py")],
    ),
    (
        "          recipients + conversations SELECT (pairs not seen before)",
        [("_recipients_with_conversations_query", "messaging/services/private_sends.py")],
    ),
    (
        "          new conversations (first message of a pair)",
        [("private_conversation_get_or_create", "messaging/services/conversations.py")],
    ),
    (
        "    _execute_one (one request in its own transaction: any other action)",
        [("Dispatcher._execute_one", "bridge/dispatch.py")],
    ),
    ("      send_group (handler)", [("send_group", "bridge/handlers/messages.py")]),
    (
        "        services.message_send_group, the usual way (group looked up, then the store)",
        [("_send_looked_up", "messaging/services/messages.py")],
    ),
    (
        "        group_access + group_conversation (SELECTs)",
        [("group_access", "messaging/selectors.py"), ("group_conversation", "messaging/selectors.py")],
    ),
    ("      the answer's record (INSERT)", [("Dispatcher._record", "bridge/dispatch.py")]),
    ("  [both ways] content_parse", [("content_parse", "messaging/content.py")]),
    (
        "  [both ways] messages_post (number, insert, read positions; deliveries)",
        [("messages_post", "messaging/services/store.py")],
    ),
    (
        "    PostgreSQL: one statement (checks when optimistic, numbers, INSERT, read positions)",
        [("store_postgresql", "messaging/services/store.py")],
    ),
    ("    elsewhere: three statements", [("store_sqlite", "messaging/services/store.py")]),
    ("    events.message_sent (payload, publish)", [("message_sent", "messaging/events.py")]),
    (
        "    COMMIT (batches that need a transaction)",
        [("BaseDatabaseWrapper._commit", "django/db/backends/base/base.py")],
    ),
    (
        "    on_commit hooks (publish deliveries)",
        [("BaseDatabaseWrapper.run_and_clear_commit_hooks", "django/db/backends/base/base.py")],
    ),
    (
        "  publish responses",
        [("Dispatcher._publish", "bridge/dispatch.py"), ("Dispatcher._reply", "bridge/dispatch.py")],
    ),
    (
        "MQTT publish (responses + deliveries; bridge.gathering or paho)",
        [("GatheringClient.publish", "bridge/gathering.py"), ("Client.publish", "paho/mqtt/client.py")],
    ),
    (
        "MQTT PUBACK to the broker (bridge.gathering or paho)",
        [("GatheringClient.ack", "bridge/gathering.py"), ("Client.ack", "paho/mqtt/client.py")],
    ),
    (
        "[all] SQL statements: driver + server round trip",
        [("CursorWrapper._execute", "django/db/backends/utils.py")],
    ),
    ("[all] ORM SQL compilation", [("SQLCompiler.as_sql", "django/db/models/sql/compiler.py")]),
    ("[all] model instance construction", [("Model.__init__", "django/db/models/base.py")]),
    ("[all] JSON encode", [("JSONEncoder.encode", "json/encoder.py")]),
    ("[all] JSON decode", [("JSONDecoder.decode", "json/decoder.py")]),
    (
        "[all] transaction.atomic enter/exit",
        [("Atomic.__enter__", "django/db/transaction.py"), ("Atomic.__exit__", "django/db/transaction.py")],
    ),
]
IDLE_LEAF = "BridgeClient._network"
PROJECT_DIRS = ("bridge/", "messaging/", "org/", "mchat/")
OUTER_FRAMES = {"Command.handle", "BridgeClient.run"}

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
_THREAD = re.compile(r"^thread \((?P<tid>\d+)\)(?::\s*(?P<name>.*))?$")


def record(pid: int, seconds: float, output: Path, rate: int = 250) -> subprocess.Popen:
    """Start py-spy in the background; wait on the returned process."""
    return subprocess.Popen(
        [
            str(PY_SPY),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--output",
            str(output),
            "--idle",
            "--threads",
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _parse(path: Path) -> list[tuple[str, list[tuple[str, str]], int]]:
    samples = []
    for line in Path(path).read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        parts = stack.split(";")
        head = _THREAD.match(parts[0].split(";")[0])
        tid = head.group("tid") if head else "?"
        frames = []
        if head and head.group("name"):
            frames.append((head.group("name"), ""))
        for part in parts[1:]:
            match = _FRAME.match(part)
            frames.append((match.group("func"), match.group("file")) if match else (part, ""))
        samples.append((tid, frames, int(count)))
    return samples


def analyse(
    path: Path,
    *,
    requests_per_second: float | None = None,
    thread_marker: str = "BridgeClient.run",
    only_marked: bool = False,
) -> dict:
    """`thread_marker`: a function on every stack of the thread that serves requests;
    `only_marked`: count only the samples with it on the stack (the thread does other things)."""
    samples = _parse(path)
    by_thread: Counter = Counter()
    kinds: dict[str, str] = {}
    for tid, frames, count in samples:
        by_thread[tid] += count
        funcs = {f for f, _ in frames}
        if thread_marker in funcs:
            kinds[tid] = f"request thread ({thread_marker})"
        elif tid not in kinds and ("Client.loop_forever" in funcs or "Client._thread_main" in funcs):
            kinds[tid] = "paho network thread"
    main = [tid for tid, kind in kinds.items() if kind.startswith("request")]
    main_tid = main[0] if main else None
    main_samples = [
        (frames, count)
        for tid, frames, count in samples
        if tid == main_tid and (not only_marked or any(f == thread_marker for f, _ in frames))
    ]
    total = sum(count for _, count in main_samples) or 1

    phases = []
    # Waiting for traffic: the request thread's samples that end in the network pass itself
    # (select() is C: py-spy shows its caller as the leaf).
    idle = sum(count for frames, count in main_samples if frames and frames[-1][0] == IDLE_LEAF)
    for label, alternatives in PHASES:
        hit = sum(
            count
            for frames, count in main_samples
            if any(f == func and part in path_ for f, path_ in frames for func, part in alternatives)
        )
        share = hit / total
        row = {"phase": label, "share": round(share, 4)}
        if requests_per_second:
            row["ms_per_request"] = round(share * 1000 / requests_per_second, 3)
        phases.append(row)
        if alternatives[0][0] == IDLE_LEAF:
            row = {
                "phase": "  of which waiting for traffic in select() (idle)",
                "share": round(idle / total, 4),
            }
            if requests_per_second:
                row["ms_per_request"] = round(idle / total * 1000 / requests_per_second, 3)
            phases.append(row)

    leaves: Counter = Counter()
    for frames, count in main_samples:
        if frames:
            func, file_ = frames[-1]
            leaves[f"{func} ({file_})"] += count
    self_top = [
        {"function": name, "share": round(count / total, 4)} for name, count in leaves.most_common(25)
    ]
    project: Counter = Counter()
    for frames, count in main_samples:
        seen = {
            f"{func} ({file_})"
            for func, file_ in frames
            if file_.startswith(PROJECT_DIRS) and func not in OUTER_FRAMES
        }
        for name in seen:
            project[name] += count
    project_top = [
        {"function": name, "share": round(count / total, 4)} for name, count in project.most_common(30)
    ]
    threads = [
        {"thread": tid, "kind": kinds.get(tid, "other"), "samples": count}
        for tid, count in by_thread.most_common()
    ]
    return {
        "samples_request_thread": total,
        "phases": phases,
        "project_top": project_top,
        "self_top": self_top,
        "threads": threads,
    }
