"""What the benchmark measures, one method per scenario, on the stack bench.stack started
(mixed into bench.run.Bench)."""

from __future__ import annotations

import json
import os
import shutil
import time

from bench import cpu, measure, profile
from bench.report import P99_TARGET_MS
from bench.services import REPO_DIR, wait_until
from bench.stack import BENCH_DIR, proc_memory


def _json_bytes(payload: dict) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


class Scenarios:
    """The measurements; each returns the dict the report reads."""

    def private_payload(self, index: int, seq_id: str) -> bytes:
        return _json_bytes(
            {
                "action": "msg.send_private",
                "to_employee_id": self.recipient_ids[index],
                "content": f"bench {seq_id}",
            }
        )

    def closed(self, label: str, in_flight: int, seconds: float | None = None) -> dict:
        plan = self.plan
        seconds = seconds or plan.closed_seconds
        clients = list(range(1 if in_flight == 1 else plan.senders))
        bar = self.sub_bar(None, label)
        with cpu.CpuWindow(self.cpu_groups()) as window:
            result = measure.closed_loop(
                self.requests,
                clients=clients,
                in_flight=in_flight,
                duration=seconds,
                warmup=plan.warmup_seconds,
                make_payload=self.private_payload,
                progress=lambda n: (setattr(bar, "n", n), bar.refresh()),
            )
        bar.close()
        self.pool.dump()  # deliveries of this run are not measured here
        summary = {"in_flight": in_flight, "seconds": seconds, **result.summary(), "cpu_cores": window.result}
        self.log(f"{label}: {summary['per_second']}/s, latency {summary['latency_ms']}")
        return summary

    def cpu_groups(self) -> dict:
        """Cores used per process group during a measurement (bench.cpu)."""
        return {
            "bridge": lambda: [b.pid for b in self.bridges if b.alive()],
            "postgres": lambda: (
                [self.pg.pid, *cpu.children_of(self.pg.pid)] if self.pg and self.pg.pid else []
            ),
            "broker": lambda: [self.broker.pid] if self.broker and self.broker.pid else [],
            "echo": lambda: [self.echo.pid] if self.echo is not None else [],
            "load_generator": lambda: [os.getpid()],
            "receivers": lambda: self.pool.pids if self.pool else [],
        }

    def raw_fanout(self) -> dict:
        from mchat.wire import group_topic

        out = {}
        for size, gid in self.population.fanout_groups.items():
            topic = group_topic(gid)
            sent = {}
            for r in range(self.plan.fanout_repeats):
                token = f"raw{size}x{r}"

                def fire(token=token, topic=topic, sent=sent) -> None:
                    sent[token] = time.monotonic()
                    self.publisher.publish(topic, _json_bytes({"content": f"bench {token}"}), qos=1)

                self.swarm.call_wait(fire)
                self.pool.wait({token: topic}, timeout=10)
                time.sleep(0.05)
            out[str(size)] = self._fanout_stats(sent, self.pool.dump(), self.pool.subscribers(topic))
            self.log(f"raw fan-out {size}: {out[str(size)]['all_received_ms']}")
        return out

    def _fanout_stats(self, sent: dict[str, float], arrivals: dict, expected: int) -> dict:
        complete, incomplete = [], []
        for token, t0 in sent.items():
            count, _first, last = arrivals.get(token, [0, None, None])
            if count >= expected:
                complete.append(last - t0)
            else:
                incomplete.append(count)
        return {
            "members": expected,
            "repeats": len(sent),
            "all_received_ms": measure.stats_ms(complete),
            "incomplete": incomplete,
            "duplicates": sum(max(0, arrivals.get(t, [0])[0] - expected) for t in sent),
        }

    def mchat_fanout(self) -> dict:
        from mchat.wire import group_topic

        out = {}
        for size, gid in self.population.fanout_groups.items():
            topic = group_topic(gid)
            sent, responses = {}, []
            bar = self.sub_bar(self.plan.fanout_repeats, f"fan-out {size}", "msg")
            for _ in range(self.plan.fanout_repeats):
                token, t0, latency = self.group_send(gid, topic)
                sent[token] = t0
                if latency is not None:
                    responses.append(latency)
                bar.update(1)
                time.sleep(0.05)
            bar.close()
            out[str(size)] = {
                **self._fanout_stats(sent, self.pool.dump(), self.pool.subscribers(topic)),
                "response_ms": measure.stats_ms(responses),
            }
            self.log(f"MChat fan-out {size}: {out[str(size)]['all_received_ms']}")
        return out

    def group_send(self, gid: str, topic: str, pad: str = "") -> tuple[str, float, float | None]:
        """One `msg.send_group` by the admin (every fan-out group's owner), waited for until
        every receiver of `topic` has it: (token, send time, response latency or None)."""
        box: dict = {}
        content = f"bench {{}} {pad}" if pad else "bench {}"

        def fire() -> None:
            box["t0"] = time.monotonic()

            def on_response(now: float, payload: bytes) -> None:
                box["latency"] = now - box["t0"]
                box["code"] = measure.response_code(payload)

            box["seq"] = self.requests.send(
                self.admin_index,
                lambda i, s: _json_bytes(
                    {"action": "msg.send_group", "group_id": gid, "content": content.format(s)}
                ),
                on_response,
            )

        self.swarm.call_wait(fire)
        self.pool.wait({box["seq"]: topic}, timeout=15)
        wait_until(lambda: "code" in box, 10)
        return box["seq"], box["t0"], box.get("latency")

    def offered(self, capacity: float) -> list[dict]:
        """`capacity`: responses/s measured with 64 in flight. A rate well above it can only
        build a queue; it runs for 2 s (a bounded backlog) and is marked over capacity."""
        rows = []
        for rate in self.plan.offered_rates:
            over = rate > 1.2 * capacity
            seconds = min(self.plan.open_seconds, 2.0) if over else self.plan.open_seconds
            total = int(rate * seconds)
            bar = self.sub_bar(total, f"{rate} msg/s offered")
            result = measure.open_loop(
                self.requests,
                clients=list(range(self.plan.senders)),
                rate=rate,
                duration=seconds,
                make_payload=self.private_payload,
                progress=lambda n, bar=bar: (setattr(bar, "n", n), bar.refresh()),
                drain=max(30.0, 2 * total / max(capacity, 1.0)),
            )
            bar.close()
            time.sleep(0.3)  # the last deliveries
            arrivals = self.pool.dump()
            e2e, missing, duplicates = [], 0, 0
            for seq_id, intended in result.sent.items():
                entry = arrivals.get(f"{seq_id}")
                if entry is None:
                    missing += 1
                    continue
                e2e.append(entry[1] - intended)
                duplicates += entry[0] - 1
            row = {
                "offered_per_second": rate,
                "seconds": seconds,
                "over_capacity": over,
                "answered_per_second": result.summary()["per_second"],
                "response_ms": measure.stats_ms(result.latencies),
                "end_to_end_ms": measure.stats_ms(e2e),
                # The load generator's own error: how late it sent (counted in the latencies).
                "send_late_ms": measure.stats_ms(result.late),
                "codes": {str(k): v for k, v in result.codes.items()},
                "unanswered": result.unanswered,
                "deliveries_missing": missing,
                "deliveries_duplicated": duplicates,
            }
            row["machine"] = self.ask_monitor(
                {"cmd": "span", "from": result.started, "to": result.started + seconds}
            )
            row["slow_spans"] = self.stall_report(result.timeline, result.started)
            self.log(f"offered {rate}/s: response {row['response_ms']} e2e {row['end_to_end_ms']}")
            rows.append(row)
            time.sleep(0.5)
        return rows

    def stall_report(self, timeline: list[tuple[float, float]], started: float) -> list[dict]:
        """Runs of responses over the p99 target (50 ms), each with what the machine monitor saw
        in it: a stall of the whole machine, a process waiting for the disk, or neither."""
        out = []
        for span in measure.slow_spans(timeline, threshold=P99_TARGET_MS / 1000)[:10]:
            out.append(
                {
                    "start_s": round(span["start"] - started, 3),
                    "seconds": round(span["end"] - span["start"], 3),
                    "requests": span["requests"],
                    "max_ms": round(span["max"] * 1000, 1),
                    "machine": self.ask_monitor({"cmd": "span", "from": span["start"], "to": span["end"]}),
                }
            )
        return out

    def org_tree(self) -> dict:
        full, unchanged, size, version = [], [], 0, None
        for _ in range(self.plan.tree_repeats):
            latency, payload = self.requests.request(
                self.admin_index, lambda i, s: b'{"action":"org.tree"}', timeout=60
            )
            body = json.loads(payload)
            if body["code"] != 0:
                raise RuntimeError(f"org.tree failed: {body}")
            full.append(latency)
            size = len(payload)
            version = body["data"]["version"]
        for _ in range(self.plan.tree_repeats):
            latency, payload = self.requests.request(
                self.admin_index, lambda i, s: _json_bytes({"action": "org.tree", "version": version})
            )
            unchanged.append(latency)
        return {
            "employees": len(self.population.employee_ids),
            "full_ms": measure.stats_ms(full),
            "response_bytes": size,
            "unchanged_version_ms": measure.stats_ms(unchanged),
        }

    def member_add(self) -> dict:
        from mchat.wire import group_topic

        samples, failures = [], []
        for k, ((gid, _members), target) in enumerate(
            zip(self.member_add_groups, self.target_ids, strict=True)
        ):
            owner = self.owner_index[k]
            _latency, payload = self.requests.request(
                owner,
                lambda i, s, gid=gid, target=target: _json_bytes(
                    {"action": "group.member_add", "group_id": gid, "member_ids": [target]}
                ),
            )
            responded = time.monotonic()
            if measure.response_code(payload) != 0:
                failures.append(json.loads(payload))
                continue
            token = f"madd{k}"
            stop = {"flag": False}
            probe = _json_bytes({"action": "msg.send_group", "group_id": gid, "content": f"bench {token}"})

            def tick(owner=owner, probe=probe, stop=stop) -> None:
                if stop["flag"]:
                    return
                self.requests.send(owner, lambda i, s: probe, lambda now, payload: None)
                self.swarm.call_at(time.monotonic() + 0.01, lambda: tick(owner, probe, stop))

            self.swarm.call(tick)
            counts = self.pool.wait({token: group_topic(gid)}, timeout=20)
            stop["flag"] = True
            time.sleep(0.1)
            arrivals = self.pool.dump()
            if counts.get(token):
                samples.append(arrivals[token][1] - responded)
            else:
                failures.append({"group_id": gid, "target": target, "error": "never received"})
        return {
            "repeats": len(self.member_add_groups),
            "probe_interval_ms": 10,
            "until_received_ms": measure.stats_ms(samples),
            "failures": failures,
        }

    def in_process(self) -> dict:
        """The pipeline alone: `Dispatcher.handle_batch` in this process on batches of 64
        `msg.send_private` (what the bridge does with a full inbox), no MQTT, profiled with
        py-spy; plus the SQL statements of one request."""
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        from bridge.dispatch import Dispatcher
        from bridge.ratelimit import RateLimiter
        from mchat import outbox as publisher
        from messaging import services

        memory = publisher.MemoryPublisher()
        publisher.install(memory)
        dispatcher = Dispatcher(memory, limiter=RateLimiter({}))
        client_id = f"{self.sender_ids[0]}_inproc"
        body = _json_bytes(
            {"action": "msg.send_private", "to_employee_id": self.recipient_ids[0], "content": "bench inproc"}
        )
        counter = iter(range(10**9))

        def batch(size: int) -> None:
            dispatcher.handle_batch(
                [(f"mchat/msg/req/{client_id}/ip{next(counter)}", body) for _ in range(size)]
            )
            memory.clear()

        batch(64)  # the conversation exists from here on, and this process has seen the pair
        with CaptureQueriesContext(connection) as one:
            batch(1)
        with CaptureQueriesContext(connection) as four:
            batch(4)
        # The usual way: a process that has not seen the pair (a new pair, or a refusal).
        services.private_conversation_ids_clear()
        with CaptureQueriesContext(connection) as usual:
            batch(1)
        # Every statement timed at Django's cursor (driver + server), by kind.
        timings: dict[str, list] = {}

        def timed(execute, sql, params, many, context):
            started = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                words = sql.split()
                table = next((w.strip('"').split('"')[0] for w in words[1:6] if w.startswith('"')), "")
                kind = f"{words[0]} {table}".strip() if words[0] not in ("SAVEPOINT", "RELEASE") else words[0]
                entry = timings.setdefault(kind, [0, 0.0])
                entry[0] += 1
                entry[1] += time.perf_counter() - started

        with connection.execute_wrapper(timed):
            timed_started, timed_done = time.perf_counter(), 0
            while time.perf_counter() - timed_started < 2.0:
                batch(64)
                timed_done += 64
            timed_seconds = time.perf_counter() - timed_started
        seconds = self.plan.profile_seconds
        output = self.work / "inprocess.raw"
        with cpu.CpuWindow(self.cpu_groups()) as window:
            spy = profile.record(os.getpid(), seconds, output)
            time.sleep(0.5)  # py-spy attaches; its samples of this sleep are not counted
            done, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds + 0.5:
                self._dispatch_loop(batch)
                done += 64
            rate = done / (time.perf_counter() - started)
            spy.communicate(timeout=seconds + 60)
        publisher.install(None)
        result = {
            "statements_one_request": len(one.captured_queries),
            "statements_batch_of_4": len(four.captured_queries),
            "statements_one_request_usual_way": len(usual.captured_queries),
            "sql": [q["sql"][:200] for q in one.captured_queries],
            "sql_usual_way": [q["sql"][:200] for q in usual.captured_queries],
            "batch64_ms_per_request": round(1000 / rate, 3),
            "batch64_per_second": round(rate, 1),
            "cpu_cores": window.result,
            "statement_timings": sorted(
                (
                    {
                        "statement": kind,
                        "per_request": round(count / timed_done, 2),
                        "ms_each": round(total / count * 1000, 3),
                        "ms_per_request": round(total / timed_done * 1000, 3),
                    }
                    for kind, (count, total) in timings.items()
                ),
                key=lambda row: -row["ms_per_request"],
            ),
            "timed_ms_per_request": round(timed_seconds / timed_done * 1000, 3),
        }
        if output.exists():
            stored = BENCH_DIR / "results" / f"inprocess-{self.stamp}.raw"
            shutil.copy(output, stored)
            result["raw_file"] = str(stored.relative_to(REPO_DIR))
            result["profile"] = profile.analyse(
                output, requests_per_second=rate, thread_marker="Scenarios._dispatch_loop", only_marked=True
            )
        return result

    @staticmethod
    def _dispatch_loop(batch) -> None:
        batch(64)

    def run_profile(self, in_flight: int = 64) -> dict:
        output = self.work / f"profile-{in_flight}.raw"
        bridge = self.bridges[0]
        spy = profile.record(bridge.pid, self.plan.profile_seconds, output)
        time.sleep(0.3)
        loop = self.closed(
            f"profiled: send_private, {in_flight} in flight", in_flight, seconds=self.plan.profile_seconds
        )
        _, err = spy.communicate(timeout=self.plan.profile_seconds + 60)
        if not output.exists():
            return {"error": f"py-spy failed: {err[-500:]}"}
        suffix = "" if in_flight == 64 else f"-{in_flight}"
        stored = BENCH_DIR / "results" / f"profile{suffix}-{self.stamp}.raw"
        shutil.copy(output, stored)
        analysis = profile.analyse(output, requests_per_second=loop["per_second"])
        return {"load": loop, "raw_file": str(stored.relative_to(REPO_DIR)), **analysis}

    def incidents(self) -> dict:
        """What went wrong under load, from the logs: batches the bridge had to serve one by
        one, PostgreSQL deadlocks, errors."""
        bridge_logs = "".join(b.log_tail(10**8) for b in self.bridges)
        out = {
            "bridge_batches_served_one_by_one": bridge_logs.count(
                "failed to commit; serving them one by one"
            ),
            "bridge_error_lines": sum(" ERROR " in line for line in bridge_logs.splitlines()),
            # Batches and periodic jobs over MCHAT_BRIDGE_SLOW_MS: a stall inside the bridge.
            "bridge_slow_lines": sum(" slow " in line for line in bridge_logs.splitlines()),
        }
        if self.pg is not None:
            try:
                pg_log = self.pg.log.read_text(errors="replace")
            except FileNotFoundError:
                pg_log = ""
            out["postgres_deadlocks"] = pg_log.count("deadlock detected")
            examples = [line for line in pg_log.splitlines() if "Process" in line and "UPDATE" in line][:2]
            out["postgres_deadlock_example"] = examples
        return out

    def lock_incidents(self) -> dict:
        """Counters to take before and after a row (their difference is the row's): PostgreSQL's
        deadlocks (pg_stat_database, and the "deadlock detected" lines of its log, which appear at
        once), batches the bridges served again one by one, and ERROR lines in their logs."""
        bridge_logs = "".join(b.log_tail(10**8) for b in self.bridges)
        out = {
            "bridge_batches_served_one_by_one": bridge_logs.count(
                "failed to commit; serving them one by one"
            ),
            "bridge_error_lines": sum(" ERROR " in line for line in bridge_logs.splitlines()),
        }
        if self.pg is not None:
            out["pg_stat_deadlocks"] = int(
                self.pg.psql("SELECT deadlocks FROM pg_stat_database WHERE datname = 'mchat'")
            )
            try:
                out["postgres_log_deadlocks"] = self.pg.log.read_text(errors="replace").count(
                    "deadlock detected"
                )
            except FileNotFoundError:
                out["postgres_log_deadlocks"] = 0
        return out

    def memory(self) -> dict:
        out = {"bridge_kib": self.bridges[0].memory_kib()}
        if self.broker and self.broker.pid:
            out["broker_kib"] = proc_memory(self.broker.pid)
        return out
