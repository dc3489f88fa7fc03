"""The report's closing note: for each missed target, what would close it (from this run's numbers)."""

from __future__ import annotations


def closing_note(r: dict, measured: dict) -> list[str]:
    lines: list[str] = []
    rate = measured.get("send_private_64")
    q = r.get("queries_per_send_private", {})
    if rate is not None and rate < 2000:
        lines.append(
            f"- `msg.send_private` at {rate:,.0f}/s: the request thread is serial and pays "
            f"{q.get('statements', '?')} SQL round trips and one COMMIT per request. Draining up to "
            f"~32-64 queued requests per transaction (one BEGIN/COMMIT, idempotency records and "
            f"messages inserted in bulk with RETURNING, responses and deliveries published after "
            f"that commit) removes most round trips and commits; see database-throughput.md."
        )
    if measured.get("p99_at_1000") is not None and measured["p99_at_1000"] >= 50:
        lines.append(
            "- p99 at 1,000 msg/s: the offered rate is above (or near) what one bridge process "
            "serves, so a queue builds up; the throughput work above closes it."
        )
    if measured.get("e2e_p50_low") is not None and measured["e2e_p50_low"] >= 5:
        lines.append("- End-to-end at low load is the single-request latency of the pipeline.")
    if measured.get("fanout_1000_p50") is not None and measured["fanout_1000_p50"] >= 100:
        lines.append("- Fan-out: compare with the raw broker row: what MChat adds is the send itself.")
    if measured.get("bridge_rss") is not None and measured["bridge_rss"] >= 200:
        lines.append("- Memory: the bridge holds more than 200 MiB.")
    if not lines:
        lines.append("- Every target was met in this run.")
    return lines
