"""The report's analysis and closing note, written from one run's numbers (bench/run.py results).

Kept apart from the tables (bench/report.py) so the reasoning is easy to read and to revise.
"""

from __future__ import annotations

from bench import sysmon


def _get(d, *path, default=None):
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return default
        d = d[key]
    return d


def _phase_share(prof: dict | None, name: str) -> float:
    for row in (prof or {}).get("phases", []):
        if row["phase"].strip() == name:
            return row.get("share") or 0.0
    return 0.0


SQL = "[all] SQL statements: driver + server round trip"
NETWORK = "MQTT network pass (select, read, write; idle included)"
SAMPLE_MS = sysmon.INTERVAL * 1000  # one machine-monitor sample


def stall_reading(span: dict) -> str:
    """What the machine monitor says a run of slow responses was."""
    m = span.get("machine") or {}
    ms = (m.get("seconds") or span.get("seconds") or 0) * 1000
    if not m.get("samples"):
        return "no monitor samples"
    if m.get("monitor_late_max_ms", 0) >= 30 or m.get("steal_ms", 0) >= 0.3 * ms:
        return (
            f"the whole machine: the monitor woke {m['monitor_late_max_ms']:.0f} ms late, "
            f"steal {m['steal_ms']} ms"
        )
    waits_ms = {name: n * SAMPLE_MS for name, n in (m.get("in_disk_wait_samples") or {}).items()}
    if ms and (m.get("io_full_ms", 0) >= 0.3 * ms or max(waits_ms.values(), default=0) >= 0.3 * ms):
        waits = ", ".join(f"{name} {n:.0f} ms" for name, n in sorted(waits_ms.items()))
        disk = m.get("disk") or {}
        return (
            f"the disk: every busy task waited for I/O {m['io_full_ms']:.0f} ms of {ms:.0f} "
            f"(in disk wait: {waits or 'none of the stack'}; device flushes {disk.get('flush_ms', '?')} ms, "
            f"discards {disk.get('discard_ms', '?')} ms, WAL segments created {m.get('wal_files_added', '?')})"
        )
    return (
        f"neither a machine nor a disk stall (CPU some {m.get('cpu_some_ms', 0):.0f} ms, I/O full "
        f"{m.get('io_full_ms', 0):.0f} ms of {ms:.0f}): inside the stack; see the bridge's slow-batch lines"
    )


def analysis(r: dict, measured: dict) -> list[str]:
    lines: list[str] = []
    sp64 = _get(r, "send_private", "in_flight_64", default={})
    raw64 = _get(r, "raw_broker", "in_flight_64", default={})
    ip = r.get("in_process") or {}
    prof = r.get("profile")
    rate = sp64.get("per_second")
    if rate:
        cores = sp64.get("cpu_cores") or {}
        lines.append(
            f"- **Throughput.** One bridge answers `msg.send_private` at {rate:,.0f}/s with 64 in "
            f"flight, {sp64.get('ratio_to_raw') or 0:.1%} of what the broker echoes "
            f"({raw64.get('per_second', 0):,.0f}/s). The pipeline alone, in process without MQTT, "
            f"does {ip.get('batch64_per_second', 0):,.0f}/s ({ip.get('batch64_ms_per_request')} ms "
            f"per request in batches of 64). Requests that arrive together are served together. "
            f"Between pairs the bridge has served before, one statement stores the whole batch "
            f"and checks everything the bridge remembered (sender and recipient active and "
            f"unchanged, their conversation, no earlier answer): "
            f"{ip.get('statements_one_request', '?')} for a request alone, "
            f"{ip.get('statements_batch_of_4', '?')} for a batch of 4. Otherwise (a pair not seen "
            f"before, a failed check, an AI agent as recipient) the usual way: "
            f"{ip.get('statements_one_request_usual_way', '?')} for a request alone (the employees "
            f"with any earlier answers, the recipients' conversations, the store). The store "
            f"statement takes the sequence numbers, inserts the messages and moves read positions; "
            f"no BEGIN, COMMIT or INSERT of answers, as each message is its own idempotency record. "
            f"Each statement is prepared once per connection, with one text whatever the batch "
            f"size (rows travel as one jsonb parameter)."
        )
        lines.append(
            f"- **Where the time goes at 64 in flight.** CPU in cores: bridge "
            f"{cores.get('bridge', 0):.2f}, PostgreSQL {cores.get('postgres', 0):.2f}, Mosquitto "
            f"{cores.get('broker', 0):.2f}, load generator {cores.get('load_generator', 0):.2f}, "
            f"receivers {cores.get('receivers', 0):.2f} (of {cores.get('cores')}; everything else "
            f"{cores.get('outside_the_bench', 0):.2f}). The bridge is one thread (paho's network "
            f"loop runs in it): {_phase_share(prof, SQL):.0%} of its wall time is spent waiting "
            f"for SQL statements, {_phase_share(prof, NETWORK):.0%} in the MQTT network pass, the "
            f"rest in Python. The machine is close to full: what one more request costs is shared "
            f"by every process above."
        )
        off = _get(r, "send_private", "in_flight_64_sync_commit_off")
        if off:
            lines.append(
                f"- **Durability is not the cost.** With `synchronous_commit=off` (COMMIT does not "
                f"wait for the WAL flush; this disk's fdatasync takes "
                f"{_get(r, 'postgres', 'fdatasync_ms')} ms) the same load gives "
                f"{off['per_second']:,.0f}/s against {rate:,.0f}/s ({off['per_second'] / rate - 1:+.0%}): "
                f"one flush per batch (the store statement commits) is cheap; full runs of the same "
                f"code on this shared machine differ by more than that from one to the next."
            )
        multi = _get(r, "send_private", "in_flight_64_multi_bridge")
        if multi:
            inc = r.get("incidents") or {}
            mc = multi.get("cpu_cores") or {}
            lines.append(
                f"- **Several bridges.** {multi['bridges']} bridges on the shared subscription give "
                f"{multi['per_second']:,.0f}/s using {mc.get('bridge', 0):.2f} cores between them; "
                f"PostgreSQL logged {inc.get('postgres_deadlocks', '?')} deadlocks (conversation rows "
                f"are locked in id order) and {inc.get('bridge_batches_served_one_by_one', '?')} "
                f"batches were served again one by one. On two cores a second process has no core "
                f"of its own: it helps only where one bridge waits on the database."
            )
    one = _get(r, "send_private", "in_flight_1", default={})
    if one.get("latency_ms", {}).get("count"):
        low = min(r.get("offered_load") or [{}], key=lambda row: row.get("offered_per_second", 0))
        lines.append(
            f"- **Latency.** One request alone takes p50 {one['latency_ms']['p50']:.1f} ms through "
            f"MChat against {_get(r, 'raw_broker', 'in_flight_1', 'latency_ms', 'p50', default=0):.2f} ms "
            f"for the raw echo: {ip.get('statements_one_request', '?')} statement (a pair seen "
            f"before), a round trip to PostgreSQL that waits for the WAL flush, plus the Python "
            f"of the pipeline and the wake-up of each idle process on the way. At "
            f"{low.get('offered_per_second')} msg/s "
            f"offered the recipient has the message after p50 "
            f"{_get(low, 'end_to_end_ms', 'p50', default=0):.1f} ms."
        )
    lines += _one_in_flight(r)
    fan = r.get("fanout") or {}
    raw_fan = _get(r, "raw_broker", "fanout", default={})
    if "1000" in fan:
        lines.append(
            f"- **Fan-out.** 1,000 members have a group message after p50 "
            f"{_get(fan, '1000', 'all_received_ms', 'p50', default=0):.0f} ms through MChat against "
            f"{_get(raw_fan, '1000', 'all_received_ms', 'p50', default=0):.0f} ms when the bridge user "
            f"publishes the same payload directly: MChat adds one `msg.send_group` request (response "
            f"p50 {_get(fan, '1000', 'response_ms', 'p50', default=0):.0f} ms, published after the "
            f"group delivery); the rest is Mosquitto writing 1,000 sockets and the receiving Python "
            f"clients ({_get(r, 'plan', 'receiver_processes')} processes) reading them."
        )
    madd = r.get("member_add") or {}
    if _get(madd, "until_received_ms", "count"):
        lines.append(
            f"- **Membership.** After a `group.member_add` answer the new member receives group "
            f"messages within p50 {madd['until_received_ms']['p50']:.0f} ms: the bridge re-renders "
            f"the broker files after commit (debounce MCHAT_BROKER_SYNC_DEBOUNCE, 50 ms by default; "
            f"rendering {_get(r, 'broker_files', 'passwd_lines', default=0):,} passwd and "
            f"{_get(r, 'broker_files', 'groups_lines', default=0):,} group lines took "
            f"{_get(r, 'broker_files', 'render_seconds', default=0) * 1000:.0f} ms in the benchmark "
            f"process) and the plugin reads the new groups file."
        )
    tree = r.get("org_tree") or {}
    if _get(tree, "full_ms", "count"):
        lines.append(
            f"- **org.tree** for {tree['employees']:,} employees: p50 {tree['full_ms']['p50']:.0f} ms "
            f"for a {tree['response_bytes'] / 1024:,.0f} KiB answer; a client holding the current "
            f"version gets `unchanged` in p50 {tree['unchanged_version_ms']['p50']:.1f} ms."
        )
    offered = r.get("offered_load") or []
    if any("slow_spans" in row for row in offered):
        spans = [(row["offered_per_second"], span) for row in offered for span in row.get("slow_spans") or []]
        if not spans:
            lines.append("- **Stalls.** No response took 50 ms or more in any offered window.")
        for rate, span in spans:
            lines.append(
                f"- **Stall at {rate}/s**, {span['start_s']:.2f} s into the window: {span['requests']} "
                f"responses over 50 ms (max {span['max_ms']:.0f} ms) in {span['seconds'] * 1000:.0f} ms. "
                f"It was {stall_reading(span)}."
            )
    rss = measured.get("bridge_rss")
    if rss is not None:
        lines.append(f"- **Memory.** The bridge holds {rss:.0f} MiB at the end of the run.")
    return lines


IDLE = "of which waiting for traffic in select() (idle)"


def _one_in_flight(r: dict) -> list[str]:
    """Where one request's answer time goes at 1 in flight (bench.profile, bench.single)."""
    one = r.get("profile_1") or {}
    load = one.get("load") or {}
    rate, p50 = load.get("per_second"), _get(load, "latency_ms", "p50")
    mean = _get(load, "latency_ms", "mean", default=p50)
    if not one.get("phases") or not rate or p50 is None:
        return []
    per_request = 1000 / rate  # ms of the bridge's wall time per request (one at a time)
    idle = _phase_share(one, IDLE)
    sql = _phase_share(one, SQL)
    busy = (1 - idle) * per_request
    raw = _get(r, "raw_broker", "in_flight_1", "latency_ms", "mean")
    single = _get(r, "single_request", "send_private", default={})
    text = (
        f"- **One request at a time.** At 1 in flight the bridge answers {rate:,.0f}/s, p50 "
        f"{p50:.2f} ms; it is busy {busy:.3f} ms per request ({1 - idle:.0%} of its time), of which "
        f"{sql * per_request:.3f} ms waiting for its statement (PostgreSQL, loopback, the WAL flush) "
        f"and {busy - sql * per_request:.3f} ms of Python (reading, decoding, validating, building "
        f"the statement and the payloads, publishing, acknowledging)."
    )
    if raw is not None:
        text += (
            f" Of the mean answer time ({mean:.2f} ms), the raw echo's round trip through the broker "
            f"takes {raw:.2f} ms (mean) and the bridge {busy:.2f} ms; the rest "
            f"({max(0.0, mean - raw - busy):.2f} ms) is the wake-ups of the processes on the way and "
            "the broker's extra work (the two deliveries, their acknowledgements)."
        )
    if single:
        text += (
            f" In process without MQTT a lone request costs {single['ms_per_request']} ms: SQL "
            f"{single['sql_ms_per_request']} ms, Python {single['python_ms_per_request']} ms."
        )
    return [text]


def closing_note(r: dict, measured: dict) -> list[str]:
    lines: list[str] = []
    ip = r.get("in_process") or {}
    rate = measured.get("send_private_64")
    if rate is not None and rate < 2000:
        lines.append(
            f"- **`msg.send_private` {rate:,.0f}/s, short of 2,000/s.** The pipeline alone does "
            f"{ip.get('batch64_per_second', 0):,.0f}/s; over MQTT the bridge, the broker, the load "
            "generator and PostgreSQL share two cores. What is left: the request thread waits for "
            "its statement; overlapping the next batch's reading and decoding with the current "
            "batch's database round trip (or a second bridge once cores are free) would close it."
        )
    p99 = measured.get("p99_at_1000")
    if p99 is not None and p99 >= 50:
        lines.append(
            f"- **p99 at 1,000 msg/s ({p99:,.0f} ms).** Without a stall the p99 at 1,000/s is a "
            "few batches' time; the stalls of the window are in the analysis with what the "
            "machine monitor saw in each. A disk that holds a WAL flush for 100 ms holds every "
            "durable commit behind it; only an asynchronous commit (losing acknowledged messages "
            "in a crash) would not wait for it."
        )
    e2e = measured.get("e2e_p50_low")
    if e2e is not None and e2e >= 5:
        lines.append(
            f"- **End-to-end p50 {e2e:.1f} ms at low load, target 5 ms.** A lone request makes "
            f"{ip.get('statements_one_request', '?')} prepared statement(s); the deliveries go out "
            "as the last one returns. What is left is the wake-up of each idle process on the way "
            "(load generator, broker, bridge, PostgreSQL, broker, receiver) and the pipeline's "
            "Python."
        )
    fan = measured.get("fanout_1000_p50")
    if fan is not None and fan >= 100:
        raw = _get(r, "raw_broker", "fanout", "1000", "all_received_ms", "p50", default=0)
        lines.append(
            f"- **Fan-out {fan:.0f} ms.** The raw publish takes {raw:.0f} ms on this machine, so "
            "most of it is Mosquitto and the receiving clients."
        )
    rss = measured.get("bridge_rss")
    if rss is not None and rss >= 200:
        lines.append(f"- **Memory {rss:.0f} MiB.** Profile the bridge's heap (tracemalloc) after org.tree.")
    if not lines:
        lines.append("- Every target was met in this run.")
    return lines
