"""One request at a time, in process (mixed into bench.run.Bench): what the bridge's pipeline
costs a lone request without MQTT, split into the database's part (each statement timed at
Django's cursor: driver, loopback, server, the COMMIT's WAL flush) and Python's (the rest), for
`msg.send_private` between a pair seen before and for `msg.send_group` to the 50-member
group (from a sender this process has seen sending there: one checked statement; and, for
comparison, the usual way, what this process remembered forgotten before each); with py-spy
profiles of the lone `msg.send_private` and the lone `msg.send_group`. On PostgreSQL also what
the lone `msg.send_private` writes to the WAL and how long its flush takes (pg_stat_wal).

At 1 in flight nothing overlaps: a request's answer time is the broker's hops (the raw echo)
plus this.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import suppress

from bench import profile
from bench.services import REPO_DIR, RedisServer, RedisUnavailable
from bench.stack import BENCH_DIR

SAVEPOINT_WORDS = ("SAVEPOINT", "RELEASE", "ROLLBACK")


def statement_kinds(statements: list[dict]) -> list[dict]:
    """Rows of one kind merged (runs from before savepoints were one kind: a row each)."""
    merged: dict[str, dict] = {}
    for row in statements:
        kind = (
            row["statement"].split()[0] if row["statement"].startswith(SAVEPOINT_WORDS) else row["statement"]
        )
        entry = merged.setdefault(kind, {"statement": kind, "per_request": 0.0, "ms": 0.0})
        entry["per_request"] += row["per_request"]
        entry["ms"] += row["per_request"] * row["ms_each"]
    return [
        {
            "statement": k,
            "per_request": round(e["per_request"], 2),
            "ms_each": round(e["ms"] / e["per_request"], 3),
        }
        for k, e in merged.items()
        if e["per_request"]
    ]


class _Discard:
    """A Publisher that drops everything (MemoryPublisher decodes each payload: not free)."""

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        pass


# pg_stat_wal's totals (the whole cluster: the bridge is idle meanwhile), with the time spent
# writing and flushing the WAL, which PostgreSQL times only with track_wal_io_timing.
_WAL_COUNTERS = "SELECT wal_records, wal_fpi, wal_bytes, wal_write, wal_sync, wal_write_time, wal_sync_time FROM pg_stat_wal"
_WAL_FIELDS = ("records", "full_page_images", "bytes", "writes", "fdatasyncs", "write_ms", "fdatasync_ms")


def _wal_counters(connection) -> tuple:
    """pg_stat_wal now, this session's own share included: a backend adds its share at most
    once a second, when it goes idle, hence the pause and a statement after it."""
    with connection.cursor() as cursor:
        cursor.execute("SET track_wal_io_timing = on")
        time.sleep(1.1)
        cursor.execute("SELECT 1")
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(_WAL_COUNTERS)
        return cursor.fetchone()


def _wal_per_request(before: tuple, after: tuple, requests: int) -> dict:
    """Per request: WAL records, full-page images, bytes, write() and fdatasync calls, and
    the ms they took (pg_stat_wal's times are in ms)."""
    return {
        name: round(float(b - a) / requests, 3) for name, a, b in zip(_WAL_FIELDS, before, after, strict=True)
    }


def _json_bytes(payload: dict) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


class SingleRequest:
    def single_request(self) -> dict:
        from django.db import connection

        from bridge.dispatch import Dispatcher
        from bridge.ratelimit import RateLimiter
        from mchat import outbox

        outbox.install(_Discard())
        state = {"dispatcher": Dispatcher(outbox.current(), limiter=RateLimiter({}))}
        counter = iter(range(10**9))
        sender, recipient = self.sender_ids[1], self.recipient_ids[1]
        private = _json_bytes(
            {"action": "msg.send_private", "to_employee_id": recipient, "content": "bench single"}
        )
        gid = self.population.fanout_groups.get(50)
        group = _json_bytes({"action": "msg.send_group", "group_id": gid, "content": "bench single"})
        admin = self.population.admin_id

        def one(client: str, body: bytes) -> None:
            (outcome,) = state["dispatcher"].handle_batch(
                [(f"mchat/msg/req/{client}_single/sg{next(counter)}", body)]
            )
            if outcome.response is None or outcome.response.get("code") != 0:
                raise RuntimeError(f"single request failed: {outcome.response}")

        statements: dict[str, list] = {}

        def timed(execute, sql, params, many, context):
            started = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                words = sql.split()
                table = next((w.strip('"').split('"')[0] for w in words[1:8] if w.startswith('"')), "")
                # A savepoint's name is new each time: one kind for all of them.
                kind = words[0] if words[0] in SAVEPOINT_WORDS else f"{words[0]} {table}".strip()
                entry = statements.setdefault(kind, [0, 0.0])
                entry[0] += 1
                entry[1] += time.perf_counter() - started

        def measure(
            client: str,
            body: bytes,
            seconds: float,
            cap: int,
            *,
            forget=None,
            wal: bool = False,
            gap: float = 0.0,
        ) -> dict:
            """`gap`: seconds of idleness before each request (not counted): the processes
            involved (this one, PostgreSQL) are asleep when it comes, as in a quiet hour."""
            one(client, body)  # the pair or group is known from here on
            statements.clear()
            wal_before = _wal_counters(connection) if wal else None
            done, wall, cpu = 0, 0.0, time.thread_time()
            with connection.execute_wrapper(timed):
                while done < cap and wall + done * gap < seconds:
                    if forget is not None:
                        forget()  # the usual way: as a process that has not seen the sender
                    if gap:
                        time.sleep(gap)
                    started = time.perf_counter()
                    one(client, body)
                    wall += time.perf_counter() - started
                    done += 1
            cpu = time.thread_time() - cpu
            sql = sum(total for _count, total in statements.values())
            wal_row = {}
            if wal_before is not None:
                wal_row["wal"] = _wal_per_request(wal_before, _wal_counters(connection), done)
            return {
                **wal_row,
                "requests": done,
                "ms_per_request": round(wall / done * 1000, 3),
                "sql_ms_per_request": round(sql / done * 1000, 3),
                "python_ms_per_request": round((wall - sql) / done * 1000, 3),
                # This thread's CPU (Python, Django, the driver): steadier than wall time on a
                # busy machine, where other processes take the CPU away.
                "cpu_ms_per_request": round(cpu / done * 1000, 3),
                "statements_per_request": round(sum(c for c, _t in statements.values()) / done, 2),
                "statements": sorted(
                    (
                        {
                            "statement": kind,
                            "per_request": round(count / done, 2),
                            "ms_each": round(total / count * 1000, 3),
                        }
                        for kind, (count, total) in statements.items()
                    ),
                    key=lambda row: -row["per_request"] * row["ms_each"],
                ),
            }

        postgresql = connection.vendor == "postgresql"
        result = {"send_private": measure(sender, private, 2.0, 5000, wal=postgresql)}
        if postgresql:
            # The statement's parts: a bare round trip to the server, and the same send without
            # waiting for the WAL flush (this session only; the bridge's commits stay durable).
            result["round_trip_ms"] = self._round_trip_ms(connection)
            with connection.cursor() as cursor:
                cursor.execute("SET synchronous_commit = off")
            try:
                result["send_private_no_flush"] = measure(sender, private, 2.0, 5000)
            finally:
                with connection.cursor() as cursor:
                    cursor.execute("RESET synchronous_commit")
        if gid:
            from messaging import services

            result["send_group_50"] = measure(admin, group, 2.0, 2000)
            result["send_group_50_usual"] = measure(
                admin, group, 2.0, 300, forget=services.known_group_sends_clear
            )
            # The same lone sends after 0.5 s of quiet each (the peer's fan-out gap): what
            # waking the processes costs on this machine.
            result["send_group_50_idle"] = measure(admin, group, 8.0, 16, gap=0.5)
        result["send_private_idle"] = measure(sender, private, 8.0, 16, gap=0.5)
        # The rate limit shared by every bridge through Redis (MCHAT_RATE_LIMIT_REDIS_URL, by
        # default Celery's Redis when that is Redis): one Redis round trip per batch. Without a
        # redis-server, no such row.
        with suppress(RedisUnavailable), RedisServer() as redis:
            from django.conf import settings

            from bridge.ratelimit import SharedRateLimiter

            plain = state["dispatcher"]
            state["dispatcher"] = Dispatcher(
                outbox.current(), limiter=SharedRateLimiter(settings.MCHAT_RATE_LIMITS, url=redis.url)
            )
            try:
                result["send_private_redis_rate_limit"] = measure(sender, private, 2.0, 5000)
            finally:
                state["dispatcher"] = plain
        # Where a lone request's time goes, by function.
        result.update(self._single_profile("single", one, sender, private))
        if gid:
            group_profile = self._single_profile("single-group", one, admin, group)
            result["group_raw_file"] = group_profile.get("raw_file")
            result["group_profile"] = group_profile.get("profile")
        outbox.install(None)
        return result

    @staticmethod
    def _round_trip_ms(connection, seconds: float = 1.0) -> float:
        """`SELECT 1` one after the other: loopback, the server's wake-up, the driver."""
        with connection.cursor() as cursor:
            done, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                cursor.execute("SELECT 1")
                cursor.fetchall()
                done += 1
        return round((time.perf_counter() - started) / done * 1000, 3)

    def _single_profile(self, name: str, one, client: str, body: bytes) -> dict:
        seconds = min(4.0, self.plan.profile_seconds)
        output = self.work / f"{name}.raw"
        spy = profile.record(os.getpid(), seconds, output)
        time.sleep(0.5)  # py-spy attaches
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            self._single_loop(one, client, body)
            done += 1
        rate = done / (time.perf_counter() - started)
        spy.communicate(timeout=seconds + 60)
        if not output.exists():
            return {}
        stored = BENCH_DIR / "results" / f"{name}-{self.stamp}.raw"
        shutil.copy(output, stored)
        return {
            "raw_file": str(stored.relative_to(REPO_DIR)),
            "profile": profile.analyse(
                output, requests_per_second=rate, thread_marker="SingleRequest._single_loop", only_marked=True
            ),
        }

    @staticmethod
    def _single_loop(one, sender: str, body: bytes) -> None:
        one(sender, body)
