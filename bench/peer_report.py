"""The report's section beside the peer (bench.peer): MChat and ejabberd phase by phase, their
ratio, CPU per phase, and the goals of issue 19 as a targets table."""

from __future__ import annotations

from bench.peer import peer_rows


def _get(d, *path, default=None):
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return default
        d = d[key]
    return d


def _row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _num(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _lat(s: dict | None, keys=("p50", "p95", "p99")) -> str:
    if not s or not (s.get("count") or s.get("n")):
        return "–"
    return " / ".join(_num(s.get(k), 2) for k in keys)


def _ratio(mchat, peer) -> str:
    if mchat is None or not peer:
        return "–"
    return f"{mchat / peer:.2f}"


def _cpu(row: dict | None, peer: bool) -> str:
    if not row:
        return "–"
    if peer:
        cells = (
            row.get("hs_cpu_pct_of_core"),
            row.get("db_cpu_pct_of_core"),
            row.get("client_cpu_pct_of_core"),
            row.get("other_cpu_pct_of_core"),
        )
    else:
        pct = row.get("cpu_pct") or {}
        cells = (pct.get("server"), pct.get("db"), pct.get("client"), pct.get("other"))
    return " / ".join(_num(c, 0) for c in cells)


def _sends(label: str, mine: dict, theirs: dict, phase: str) -> tuple:
    """(label, MChat value, ejabberd value, higher is better) for a phase's answered sends/s:
    MChat's `per_second`, ejabberd's `msgs_per_s`."""
    return label, _get(mine, phase, "per_second"), _get(theirs, phase, "msgs_per_s"), True


def _ms(label: str, mine: dict, theirs: dict, phase: str, stats: str, q: str = "p50") -> tuple:
    """The same for a latency percentile in ms (lower is better), read alike on both sides."""
    return label, _get(mine, phase, stats, q), _get(theirs, phase, stats, q), False


def _comparisons(mine: dict, theirs: dict, r: dict) -> list[tuple]:
    """The side-by-side rows, from the phase rows of each (and MChat's 64 in flight)."""
    return [
        _sends("send 1 in flight: answered (acked) sends/s", mine, theirs, "send_1"),
        _ms("send 1 in flight: ack p50 ms", mine, theirs, "send_1", "ack_ms"),
        _ms("send 1 in flight: ack p99 ms", mine, theirs, "send_1", "ack_ms", "p99"),
        _sends("send 32 in flight: answered (acked) sends/s", mine, theirs, "send_32"),
        _ms("send 32 in flight: ack p50 ms", mine, theirs, "send_32", "ack_ms"),
        (
            "send 64 in flight (MChat) vs 32 (ejabberd): sends/s",
            _get(r, "send_private", "in_flight_64", "per_second"),
            _get(theirs, "send_32", "msgs_per_s"),
            True,
        ),
        _ms("delivery under 32 in flight p50 ms", mine, theirs, "send_32", "delivery_under_load_ms"),
        _ms("ping-pong send -> received p50 ms", mine, theirs, "pingpong", "e2e_ms"),
        _ms("ping-pong send -> received p99 ms", mine, theirs, "pingpong", "e2e_ms", "p99"),
        _ms("10 pairs at 10 msg/s: send -> received p50 ms", mine, theirs, "rate_10", "e2e_ms"),
        _ms("10 pairs at 50 msg/s: send -> received p50 ms", mine, theirs, "rate_50", "e2e_ms"),
        _ms("10 pairs at 50 msg/s: send -> received p99 ms", mine, theirs, "rate_50", "e2e_ms", "p99"),
        _ms("fan-out to 50: all received p50 ms", mine, theirs, "fanout_50", "all_received_ms"),
        _ms("fan-out to 50: per receiver p50 ms", mine, theirs, "fanout_50", "per_receiver_ms"),
    ]


def _phase_row(label: str, who: str, row: dict, rate, received: str, peer: bool) -> str:
    """One line of the per-phase table: rate, ack and received latencies, lost, CPU."""
    return _row(
        label,
        who,
        _num(rate),
        _lat(row.get("ack_ms")),
        _lat(row.get(received)),
        row.get("lost", "–"),
        _cpu(row, peer),
    )


def peer_section(r: dict) -> list[str]:
    mine = r.get("peer_phases") or {}
    peer = r.get("peer") or {}
    if not mine and not peer:
        return []
    result = peer.get("result") or {}
    theirs = peer_rows(result)
    meta = result.get("meta", {})
    lines = ["", "## Beside the peer: ejabberd (issue 19)", ""]
    if peer.get("error"):
        lines += [f"The peer harness did not give a result: `{peer['error'][:300]}`", ""]
    elif peer:
        mchat_load = (r.get("machine") or {}).get("loadavg_mchat_start")
        peer_load = meta.get("loadavg_before") or []
        if mchat_load and peer_load:
            try:
                apart = abs(float(peer_load[0]) - float(mchat_load[0]))
            except (TypeError, ValueError):
                apart = 0.0
            if apart >= 1.0:
                lines += [
                    f"**The two ran on a machine loaded differently** (1-minute load average "
                    f"{peer_load[0]} before ejabberd's run, {mchat_load[0]:.2f} before MChat's; the "
                    "last column of the phase table shows everything else's CPU in each phase): "
                    "the ratios below say little. Run again on a quiet machine.",
                    "",
                ]
        how = (
            f"run by this bench just before MChat's run (`{peer.get('command')}`, {peer.get('seconds')} s)"
            if peer.get("ran_here")
            else "a result the peer harness wrote before (not run by this bench)"
        )
        lines += [
            f"ejabberd {meta.get('server_version', '?')} + PostgreSQL (MAM on, fsync and "
            f"synchronous_commit on), measured by `{peer.get('harness', '/work/shared/peers/ejabberd')}`: "
            f"{how}; result `{peer.get('result_file')}`, started {meta.get('started_utc', '?')}, "
            f"load average before {', '.join(meta.get('loadavg_before', []) or ['?'])}.",
            "",
        ]
    else:
        lines += ["No peer run in this invocation (`--peer ejabberd` runs it): MChat's side only.", ""]
    lines += [
        "The same phases on both (bench.peer): 50 employees online for the whole run, 1:1 messages",
        "round a ring (j to j+1), bodies padded by 100 bytes, "
        f"{r.get('plan', {}).get('fanout_repeats', '?')} fan-outs to the 50-member group",
        f"0.5 s apart; {r.get('plan', {}).get('peer_seconds', '?')} s per MChat phase, "
        f"{meta.get('duration_s', '?')} s per ejabberd phase. What an answer means differs a little:",
        "ejabberd's ack (XEP-0198) = the sender's archive row committed and the message routed to",
        "the recipient's session; MChat's answer = the message committed (with its idempotency",
        "record and its conversation's sequence number) and its deliveries handed to the broker in",
        "the same write as the answer. MChat also delivers a copy to the sender's own inbox (its",
        "other devices; the online connection reads it), ejabberd without carbons does not. Latencies",
        "in ms. Ratio = MChat / ejabberd (above 1 is better for sends/s, below 1 for latencies).",
    ]
    before = r.get("before") or {}
    earlier = (
        {label: m for label, m, _p, _h in _comparisons(before.get("peer_phases") or {}, {}, before)}
        if before
        else {}
    )
    if before:
        lines += [
            f"MChat before = `{before.get('source')}` ({before.get('git_commit', '?')}, "
            f"{before.get('started_at', '?')}): the same bench on the code before this work.",
        ]
    lines += [
        "",
        _row("phase", "ejabberd", "MChat", "ratio", "better", *(["MChat before"] if before else [])),
        _row("---", "---:", "---:", "---:", "---", *(["---:"] if before else [])),
    ]
    for label, m, p, higher in _comparisons(mine, theirs, r):
        better = "–"
        if m is not None and p is not None:
            better = "MChat" if (m >= p if higher else m <= p) else "ejabberd"
        digits = 2 if not higher else 1
        lines.append(
            _row(
                label,
                _num(p, digits),
                _num(m, digits),
                _ratio(m, p),
                better,
                *([_num(earlier.get(label), digits)] if before else []),
            )
        )
    lines += [
        "",
        "Each phase in full (MChat; ejabberd below it). CPU in % of one core: server (MChat: bridge +",
        "Mosquitto; ejabberd: beam.smp) / database / client (load generator + receivers) / everything",
        "else on the machine.",
        "",
        _row("phase", "who", "sends/s", "ack p50 / p95 / p99", "received p50 / p95 / p99", "lost", "CPU %"),
        _row("---", "---", "---:", "---", "---", "---:", "---"),
    ]
    phases = [
        ("send K=1", "send_1", "delivery_under_load_ms"),
        ("send K=32", "send_32", "delivery_under_load_ms"),
        ("ping-pong", "pingpong", "e2e_ms"),
        ("10 pairs @10/s", "rate_10", "e2e_ms"),
        ("10 pairs @50/s", "rate_50", "e2e_ms"),
        ("fan-out 50 (all received)", "fanout_50", "all_received_ms"),
    ]
    for label, key, received in phases:
        m, p = mine.get(key) or {}, theirs.get(key)
        rate = m.get("per_second", m.get("round_trips_per_second", m.get("answered_per_second")))
        lines.append(_phase_row(label, "MChat", m, rate, received, peer=False))
        if p:
            lines.append(_phase_row("", "ejabberd", p, p.get("msgs_per_s"), received, peer=True))
    fan_m, fan_p = mine.get("fanout_50") or {}, theirs.get("fanout_50") or {}
    lines += [
        "",
        "Fan-out to 50, each receiver's latency p50 / p95 / p99: MChat "
        f"{_lat(fan_m.get('per_receiver_ms'))}, ejabberd {_lat(fan_p.get('per_receiver_ms'))}; "
        f"all received max: MChat {_num(_get(fan_m, 'all_received_ms', 'max'), 2)}, "
        f"ejabberd {_num(_get(fan_p, 'all_received_ms', 'max'), 2)}. The delivery rows of K=1 and "
        "K=32 are the recipient's delivery under that load (from the send).",
    ]
    lines += targets_section(r, mine, theirs)
    lines += gaps_explained(r, mine, theirs)
    return lines


def _verdict(value, goal, higher) -> tuple[str, str]:
    if value is None or goal is None:
        return "not measured", ""
    met = value >= goal if higher else value <= goal
    if met:
        return "met", ""
    if higher:
        return "gap", f"{goal - value:,.2f} short ({value / goal:.0%} of the goal)"
    return "gap", f"{value - goal:,.2f} over ({value / goal:.2f}x the goal)"


def issue19_gaps(r: dict) -> list[str]:
    """The closing note's lines: issue 19's goals this run missed (see the analysis for where the
    time goes)."""
    if not r.get("peer_phases"):
        return []
    theirs = peer_rows((r.get("peer") or {}).get("result") or {})
    lines = []
    for text, value, goal, higher, unit in _goals(r, r.get("peer_phases") or {}, theirs):
        verdict, gap = _verdict(value, goal, higher)
        if verdict == "gap":
            lines.append(
                f"- **Issue 19, {text}**: {_num(value, 2)}{unit} against {_num(goal, 2)}{unit}; {gap}."
            )
    return lines


def _goals(r: dict, mine: dict, theirs: dict) -> list[tuple]:
    """(goal, MChat value, goal value, higher is better, unit); ejabberd's value where it is the goal."""
    p99_1000 = next((row for row in r.get("offered_load") or [] if row.get("offered_per_second") == 1000), {})
    raw64 = _get(r, "raw_broker", "in_flight_64", "per_second")
    sp64 = _get(r, "send_private", "in_flight_64", "per_second")
    ej32 = _get(theirs, "send_32", "msgs_per_s")
    goals = [
        (*_sends("1 in flight: answered sends/s ≥ ejabberd's", mine, theirs, "send_1"), "/s"),
        (*_ms("1 in flight: ack p50 ≤ ejabberd's", mine, theirs, "send_1", "ack_ms"), " ms"),
        (*_ms("ping-pong p50 ≤ ejabberd's", mine, theirs, "pingpong", "e2e_ms"), " ms"),
        (
            *_ms(
                "fan-out to 50, all received p50 ≤ ejabberd's", mine, theirs, "fanout_50", "all_received_ms"
            ),
            " ms",
        ),
        (*_sends("32 in flight ≥ ejabberd at 32", mine, theirs, "send_32"), "/s"),
        ("64 in flight ≥ ejabberd at 32", sp64, ej32, True, "/s"),
        (
            "response p99 at 1,000 msg/s offered < 25 ms",
            _get(p99_1000, "response_ms", "p99"),
            25,
            False,
            " ms",
        ),
        (
            "`msg.send_private` at 64 in flight ≥ 0.45 of the raw broker echo",
            round(sp64 / raw64, 3) if sp64 and raw64 else None,
            0.45,
            True,
            "",
        ),
    ]
    return goals


def targets_section(r: dict, mine: dict, theirs: dict) -> list[str]:
    """Issue 19 item 2, goal by goal."""
    goals = _goals(r, mine, theirs)
    lines = [
        "",
        "### The goals of issue 19 (item 2), this run",
        "",
        _row("goal", "goal value", "MChat", "verdict", "gap"),
        _row("---", "---:", "---:", "---", "---"),
    ]
    for text, value, goal, higher, unit in goals:
        verdict, gap = _verdict(value, goal, higher)
        lines.append(
            _row(
                text,
                _num(goal, 2) + unit if goal is not None else "–",
                _num(value, 2) + unit if value is not None else "–",
                verdict,
                gap,
            )
        )
    pg = r.get("postgres") or {}
    if r.get("database") == "postgresql":
        durable = pg.get("synchronous_commit") == "on" and pg.get("fsync") == "on"
        lines.append(
            _row(
                "durability unchanged: every answered message committed with synchronous_commit=on",
                "on",
                f"fsync={pg.get('fsync')}, synchronous_commit={pg.get('synchronous_commit')}",
                "met" if durable else "gap",
                "" if durable else "the rows above were not measured durable",
            )
        )
        lines += [
            "",
            "(The `synchronous_commit=off` row of the requests table is a reference, not a result.)",
        ]
    else:
        lines += ["", "This run used SQLite: the goals are stated for PostgreSQL (`--postgres`)."]
    return lines


def gaps_explained(r: dict, mine: dict, theirs: dict) -> list[str]:
    """For each goal of issue 19 this run missed, where MChat's time goes, from this run's own
    measurements: the raw broker rows, the in-process single requests (bench.single) and the
    CPU of each phase."""
    missed = {
        text
        for text, value, goal, higher, _unit in _goals(r, mine, theirs)
        if _verdict(value, goal, higher)[0] == "gap"
    }
    if not missed:
        return []
    single = r.get("single_request") or {}
    lone, no_flush = single.get("send_private") or {}, single.get("send_private_no_flush") or {}
    group = single.get("send_group_50") or {}
    raw1 = _get(r, "raw_broker", "in_flight_1", "latency_ms", "p50")
    lines = ["", "### Where the time of each remaining gap goes (this run)", ""]

    def ms(value) -> str:
        return "–" if value is None else f"{value:.2f} ms"

    ack = _get(mine, "send_1", "ack_ms", "p50")
    if (
        missed
        & {
            "1 in flight: answered sends/s ≥ ejabberd's",
            "1 in flight: ack p50 ≤ ejabberd's",
            "ping-pong p50 ≤ ejabberd's",
        }
        and ack
        and lone
    ):
        sql, sql_no_flush = lone.get("sql_ms_per_request"), no_flush.get("sql_ms_per_request")
        flush = sql - sql_no_flush if sql is not None and sql_no_flush is not None else None
        trip = single.get("round_trip_ms")
        execution = sql_no_flush - trip if sql_no_flush is not None and trip is not None else None
        rest = ack - (raw1 or 0) - lone.get("ms_per_request", 0)
        lines += [
            f"- **A lone send** (1 in flight, ack p50 {ms(ack)} against ejabberd's "
            f"{ms(_get(theirs, 'send_1', 'ack_ms', 'p50'))}; ping-pong {ms(_get(mine, 'pingpong', 'e2e_ms', 'p50'))} "
            f"against {ms(_get(theirs, 'pingpong', 'e2e_ms', 'p50'))}):",
            f"  - the broker and the clients, a raw round trip: {ms(raw1)} (raw echo, 1 in flight);",
            f"  - the bridge's work, in process: {ms(lone.get('ms_per_request'))}, of which the one statement "
            f"{ms(sql)}: the WAL flush of its commit {ms(flush)} (the statement with `synchronous_commit=off` "
            f"takes {ms(sql_no_flush)}), a bare round trip to PostgreSQL {ms(trip)}, its execution "
            f"{ms(execution)}; Python {ms(lone.get('python_ms_per_request'))};",
            f"  - the rest, {ms(rest)}: the bridge's MQTT read and write, and the two deliveries (the "
            "recipient's, the copy for the sender's other devices) the broker routes beside the answer.",
        ]
        gap = ack - (_get(theirs, "send_1", "ack_ms", "p50") or ack)
        if flush is not None and execution is not None and gap > 0:
            lines.append(
                f"  - ejabberd's ack covers one INSERT into its archive and routing to one session. The gap, "
                f"{ms(gap)}, is {gap / (flush + execution):.0%} of the statement's execution and flush together "
                f"({ms(flush + execution)})."
            )
    fan = _get(mine, "fanout_50", "all_received_ms", "p50")
    if "fan-out to 50, all received p50 ≤ ejabberd's" in missed and fan:
        statements = group.get("statements") or []
        lines += [
            f"- **Fan-out to 50** (all received p50 {ms(fan)} against ejabberd's "
            f"{ms(_get(theirs, 'fanout_50', 'all_received_ms', 'p50'))}): the `msg.send_group` answer p50 "
            f"{ms(_get(mine, 'fanout_50', 'ack_ms', 'p50'))} (sends 0.5 s apart: each one finds the processes "
            f"idle); in process {ms(group.get('ms_per_request'))} per send with "
            f"{_num(group.get('statements_per_request'), 0)} statements ("
            + ", ".join(f"`{row['statement']}` {row['ms_each']:.2f}" for row in statements)
            + f"); the broker's own fan-out of the published message to 50 subscribers, raw: "
            f"{ms(_get(r, 'raw_broker', 'fanout', '50', 'all_received_ms', 'p50'))}.",
        ]
        idle = single.get("send_group_50_idle") or {}
        if idle.get("ms_per_request"):
            lines.append(
                f"  - The same send in process, each after 0.5 s of quiet: {ms(idle['ms_per_request'])} "
                f"(its SQL {ms(idle.get('sql_ms_per_request'))}) against {ms(group.get('ms_per_request'))} "
                "back to back: on this machine a process that has slept (PostgreSQL's backend, the "
                "bridge, the broker) takes a while to wake, and a send after a pause pays it at each hop."
            )
    goal_ratio = "`msg.send_private` at 64 in flight ≥ 0.45 of the raw broker echo"
    row64 = _get(r, "send_private", "in_flight_64") or {}
    raw64 = _get(r, "raw_broker", "in_flight_64") or {}
    if goal_ratio in missed and row64.get("per_second") and raw64.get("per_second"):
        cores, rate = row64.get("cpu_cores") or {}, row64["per_second"]
        raw_cores, raw_rate = raw64.get("cpu_cores") or {}, raw64["per_second"]

        def per(cores_used, per_second) -> str:
            return "–" if cores_used is None else f"{cores_used / per_second * 1000:.3f} ms"

        off = _get(r, "send_private", "in_flight_64_sync_commit_off", "per_second")
        lines += [
            f"- **64 in flight against the raw echo** ({_num(rate)}/s against {_num(raw_rate)}/s): a raw round "
            f"trip costs the machine {per(raw_cores.get('all_processes'), raw_rate)} of CPU (broker "
            f"{per(raw_cores.get('broker'), raw_rate)}, echo {per(raw_cores.get('echo'), raw_rate)}); a send "
            f"costs {per(cores.get('all_processes'), rate)} (bridge {per(cores.get('bridge'), rate)}, PostgreSQL "
            f"{per(cores.get('postgres'), rate)}, broker {per(cores.get('broker'), rate)}: three publishes "
            f"instead of one) while the machine's {cores.get('cores', 2)} cores are not saturated "
            f"({_num(cores.get('all_processes'), 2)} busy): the bridge serves a batch, then waits for its "
            f"statement and the commit's flush, one batch at a time. Without the flush "
            f"(`synchronous_commit=off`, a reference only) the same load gives {_num(off)}/s. 0.45 of the "
            f"echo is {_num(0.45 * raw_rate)}/s: with every core busy, at most "
            f"{cores.get('cores', 2) * 1000 / (0.45 * raw_rate):.3f} ms of the machine's CPU per send, "
            f"against {per(cores.get('postgres'), rate)} for PostgreSQL alone today.",
        ]
    return lines


def before_after(r: dict) -> list[str]:
    """The closing note's lines: each phase before this work and now (--before)."""
    before = r.get("before") or {}
    if not before:
        return []
    earlier = {label: m for label, m, _p, _h in _comparisons(before.get("peer_phases") or {}, {}, before)}
    lines = [
        f"- **Before / after** (before: `{before.get('source')}`, {before.get('git_commit', '?')}; "
        "after: this run):"
    ]
    for label, m, _p, higher in _comparisons(r.get("peer_phases") or {}, {}, r):
        old = earlier.get(label)
        if m is None and old is None:
            continue
        change = f" ({m / old - 1:+.0%})" if m is not None and old else ""
        digits = 1 if higher else 2
        lines.append(f"  - {label}: {_num(old, digits)} -> {_num(m, digits)}{change}")
    return lines


BEFORE_KEYS = (
    "started_at",
    "database",
    "mode",
    "peer_phases",
    "send_private",
    "raw_broker",
    "offered_load",
    "fanout",
    "machine",
)


def before_of(results: dict, source: str) -> dict:
    """What the report keeps of an earlier run's results (--before)."""
    kept = {key: results[key] for key in BEFORE_KEYS if key in results}
    kept["git_commit"] = (results.get("versions") or {}).get("git_commit")
    kept["source"] = source
    return kept
