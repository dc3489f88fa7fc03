"""The report's analysis and closing note, written from one run's numbers (bench/run.py results).

Kept apart from the tables (bench/report.py) so the reasoning is easy to read and to revise.
"""

from __future__ import annotations


def _get(d, *path, default=None):
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return default
        d = d[key]
    return d


def _phase_ms(prof: dict | None, name: str) -> float:
    for row in (prof or {}).get("phases", []):
        if row["phase"].strip() == name:
            return row.get("ms_per_request") or 0.0
    return 0.0


def _phase_share(prof: dict | None, name: str) -> float:
    for row in (prof or {}).get("phases", []):
        if row["phase"].strip() == name:
            return row.get("share") or 0.0
    return 0.0


SQL = "[all] SQL statements: driver + server round trip"
ORM = "[all] ORM SQL compilation"
ATOMIC = "[all] transaction.atomic enter/exit"
IDLE = "waiting for a request (inbox queue empty)"


def analysis(r: dict, measured: dict) -> list[str]:
    lines: list[str] = []
    sp64 = _get(r, "send_private", "in_flight_64", default={})
    raw64 = _get(r, "raw_broker", "in_flight_64", default={})
    ip = r.get("in_process") or {}
    ip_prof = ip.get("profile")
    rate = sp64.get("per_second")
    if rate:
        cores = sp64.get("cpu_cores") or {}
        ip_ms = ip.get("batch64_ms_per_request")
        lines.append(
            f"- **Throughput.** One bridge answers `msg.send_private` at {rate:,.0f}/s with 64 in "
            f"flight, {sp64.get('ratio_to_raw', 0):.1%} of what the broker echoes "
            f"({raw64.get('per_second', 0):,.0f}/s): the broker is not the limit. The pipeline alone, in "
            f"process without MQTT, does about as much ({ip.get('batch64_per_second', 0):,.0f}/s, "
            f"{ip_ms} ms per request in batches of 64): MQTT and paho cost the bridge little; the "
            f"request pipeline itself is the limit of one process."
        )
        if ip_prof:
            sql, orm, atomic = _phase_ms(ip_prof, SQL), _phase_ms(ip_prof, ORM), _phase_ms(ip_prof, ATOMIC)
            per_request = sum(t["per_request"] for t in ip.get("statement_timings") or [])
            lines.append(
                f"- **Where a request's {ip_ms} ms go (in process).** Executing SQL (driver and "
                f"server round trip) {sql:.2f} ms for {per_request:.0f} statements per request in a "
                f"batch ({ip.get('statements_one_request')} for a request alone); "
                f"the rest is Python: building and compiling ORM queries {orm:.2f} ms, "
                f"transaction.atomic/savepoints {atomic:.2f} ms (each savepoint is two more round "
                f"trips), DRF validation {_phase_ms(ip_prof, 'validate (DRF serializer)'):.2f} ms, and "
                f"inside the service: recipient lookup "
                f"{_phase_ms(ip_prof, 'recipient lookup (employee_get)'):.2f} ms, conversation lookup "
                f"{_phase_ms(ip_prof, 'private_conversation_get_or_create'):.2f} ms, duplicate check "
                f"{_phase_ms(ip_prof, '_message_of_request (dedupe SELECT)'):.2f} ms, sequence number + "
                f"INSERT + read position {_phase_ms(ip_prof, '_message_append'):.2f} ms, idempotency "
                f"record {_phase_ms(ip_prof, '_record (ProcessedRequest INSERT)'):.2f} ms. Batching 64 "
                f"requests per transaction already removed BEGIN/COMMIT and the identity and "
                f"idempotency lookups from each request; what remains is per-request ORM work."
            )
        if cores:
            timings = ip.get("statement_timings") or []
            stmts = [t for t in timings if t["statement"] not in ("SAVEPOINT", "RELEASE")]
            sp = next((t for t in timings if t["statement"] == "SAVEPOINT"), None)
            span = (
                f"{min(t['ms_each'] for t in stmts):.2f}-{max(t['ms_each'] for t in stmts):.2f} ms each"
                if stmts
                else "?"
            )
            lines.append(
                f"- **Latency-bound, not CPU-bound.** During the 64-in-flight run the bridge used "
                f"{cores.get('bridge', 0):.2f} cores and PostgreSQL {cores.get('postgres', 0):.2f} (of "
                f"{cores.get('cores')}; everything else on the machine "
                f"{cores.get('outside_the_bench', 0):.2f}): neither is saturated. The request thread "
                f"spends {_phase_share(r.get('profile'), SQL):.0%} of its wall time inside SQL "
                f"statements ({_phase_share(ip_prof, SQL):.0%} in process), one after the other: "
                f"the ORM statements take {span} at the cursor"
                + (f", a SAVEPOINT {sp['ms_each']:.2f} ms" if sp else "")
                + ". Each is a full round trip: psycopg interpolates the parameters client-side, "
                "PostgreSQL parses and plans every statement again, executes, answers, and the "
                "bridge waits. Fewer statements per request is what counts, not faster ones."
            )
        off = _get(r, "send_private", "in_flight_64_sync_commit_off")
        if off:
            lines.append(
                f"- **Durability is not the cost.** With `synchronous_commit=off` (COMMIT does not "
                f"wait for the WAL flush; this disk's fdatasync takes "
                f"{_get(r, 'postgres', 'fdatasync_ms')} ms) the same load gives "
                f"{off['per_second']:,.0f}/s: one flush per batch of 64 is already cheap."
            )
        multi = _get(r, "send_private", "in_flight_64_multi_bridge")
        if multi:
            inc = r.get("incidents") or {}
            mc = multi.get("cpu_cores") or {}
            lines.append(
                f"- **More bridge processes make it worse.** {multi['bridges']} bridges on the shared "
                f"subscription give {multi['per_second']:,.0f}/s while using only "
                f"{mc.get('bridge', 0):.2f} cores between them: they wait on each other. The shared "
                f"subscription spreads one sender's requests over both processes, each batch "
                f"transaction takes the row locks of several conversations (`UPDATE "
                f"messaging_conversation ... RETURNING last_seq`) in arrival order and holds them "
                f"until its COMMIT, so two batches lock the same rows in opposite orders: PostgreSQL "
                f"logged {inc.get('postgres_deadlocks', '?')} deadlocks in this run (each detected "
                f"after deadlock_timeout, 1 s), and the bridges served "
                f"{inc.get('bridge_batches_served_one_by_one', '?')} batches again one by one. Even "
                f"without a deadlock a batch holds a conversation's lock for the whole batch, so the "
                f"other process queues behind it."
            )
    one = _get(r, "send_private", "in_flight_1", default={})
    if one.get("latency_ms", {}).get("count"):
        low = min(r.get("offered_load") or [{}], key=lambda row: row.get("offered_per_second", 0))
        lines.append(
            f"- **Latency.** One request alone takes p50 {one['latency_ms']['p50']:.1f} ms end to "
            f"end through MChat against {_get(r, 'raw_broker', 'in_flight_1', 'latency_ms', 'p50', default=0):.2f} ms "
            f"for the raw echo: a batch of one pays BEGIN, savepoints, "
            f"{ip.get('statements_one_request', '?')} statements and COMMIT. At "
            f"{low.get('offered_per_second')} msg/s offered the recipient has the message after "
            f"p50 {_get(low, 'end_to_end_ms', 'p50', default=0):.1f} ms. Above capacity "
            f"(rows marked over capacity) requests queue and latency is the backlog divided by the "
            f"throughput: the p99 target there follows from the throughput target."
        )
    fan = r.get("fanout") or {}
    raw_fan = _get(r, "raw_broker", "fanout", default={})
    if "1000" in fan:
        lines.append(
            f"- **Fan-out.** 1,000 members have a group message after p50 "
            f"{_get(fan, '1000', 'all_received_ms', 'p50', default=0):.0f} ms through MChat against "
            f"{_get(raw_fan, '1000', 'all_received_ms', 'p50', default=0):.0f} ms when the bridge user "
            f"publishes the same payload directly: MChat adds one `msg.send_group` request (response "
            f"p50 {_get(fan, '1000', 'response_ms', 'p50', default=0):.0f} ms, which is published "
            f"after the group delivery); the rest is Mosquitto writing 1,000 sockets and the receiving "
            f"Python clients ({_get(r, 'plan', 'receiver_processes')} processes) reading them."
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
    rss = measured.get("bridge_rss")
    if rss is not None:
        lines.append(f"- **Memory.** The bridge holds {rss:.0f} MiB at the end of the run.")
    return lines


def closing_note(r: dict, measured: dict) -> list[str]:
    lines: list[str] = []
    rate = measured.get("send_private_64")
    ip = r.get("in_process") or {}
    if rate is not None and rate < 2000:
        budget = 1000 / 2000
        lines.append(
            f"- **`msg.send_private` {rate:,.0f}/s → 2,000/s.** At 2,000/s one bridge process has "
            f"{budget:.1f} ms per request, while the pipeline alone needs "
            f"{ip.get('batch64_ms_per_request', '?')} ms, most of it waiting for one statement after "
            "another. Closing the gap needs far fewer statements and far less "
            "ORM per request, set-based per batch: resolve the batch's recipients and private "
            "conversations in one query each; take sequence numbers with one "
            "`UPDATE ... FROM (VALUES ...) RETURNING` per batch (n per conversation); insert the "
            "batch's messages with one INSERT ... ON CONFLICT (client_id, seq_id) DO NOTHING RETURNING "
            "(the unique constraint replaces the per-request duplicate SELECT); one UPDATE of the "
            "senders' read positions; one bulk INSERT of idempotency records; no savepoint per "
            "request (validate everything first; the dispatcher's one-by-one fallback handles a "
            "failing batch). On the hot path, psycopg with prepared statements instead of the ORM "
            "and plain checks instead of a DRF serializer. The database note's 4,000/s for batched "
            "psycopg shows the database side allows it; the Python side has to get to ~0.3 ms per "
            "request. Several bridge processes could add throughput only after the lock-order fix "
            "below, and only while cores are left over."
        )
    inc = r.get("incidents") or {}
    if inc.get("postgres_deadlocks"):
        lines.append(
            f"- **Several bridges: {inc['postgres_deadlocks']} deadlocks.** Before more processes can "
            "help, a batch must take its conversations' row locks in one global order and for a "
            "short time: e.g. run the handlers first, then take all sequence numbers of the batch in "
            "one `UPDATE messaging_conversation ... WHERE id IN (...)` ordered by id (or "
            "`SELECT ... ORDER BY id FOR UPDATE` first), insert the messages, commit. Routing a "
            "conversation's requests to one process is not possible with MQTT shared subscriptions."
        )
    p99 = measured.get("p99_at_1000")
    if p99 is not None and p99 >= 50:
        lines.append(
            f"- **p99 at 1,000 msg/s ({p99:,.0f} ms).** 1,000/s is above what one bridge serves, "
            "so requests queue; once throughput is well above 1,000/s (the item above), the p99 at "
            "1,000/s is a few batches' time, within 50 ms."
        )
    e2e = measured.get("e2e_p50_low")
    if e2e is not None and e2e >= 5:
        lines.append(
            f"- **End-to-end p50 {e2e:.1f} ms at low load.** A lone request pays the whole "
            "per-request cost plus BEGIN/COMMIT; the same set-based rework brings a batch of one "
            "to a handful of statements; until then this target is missed with the throughput one."
        )
    fan = measured.get("fanout_1000_p50")
    if fan is not None and fan >= 100:
        raw = _get(r, "raw_broker", "fanout", "1000", "all_received_ms", "p50", default=0)
        lines.append(
            f"- **Fan-out {fan:.0f} ms.** The raw publish takes {raw:.0f} ms on this machine, so "
            "most of it is Mosquitto and the receiving clients; what MChat adds is the send_group "
            "request, which the throughput work shortens too."
        )
    rss = measured.get("bridge_rss")
    if rss is not None and rss >= 200:
        lines.append(f"- **Memory {rss:.0f} MiB.** Profile the bridge's heap (tracemalloc) after org.tree.")
    if not lines:
        lines.append("- Every target was met in this run.")
    return lines
