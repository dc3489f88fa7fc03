"""A machine monitor process: samples, every 10 ms, what can stall every process at once, so
that a latency spike in the bench can be told apart from a stall of MChat itself. Driven by
JSON lines on stdin, answering JSON lines on stdout:

    {"cmd": "watch", "pids": {"bridge": 123, ...}, "directories": {"wal": "/path/pg_wal"}}
        -> {"ok": true}  (the processes' children too; the directories' files are counted)
    {"cmd": "span", "from": t0, "to": t1}  -> what happened between two time.monotonic() times
    {"cmd": "quit"}

What one sample holds:
- `late`: how much later than asked the monitor's own 10 ms sleep ended. A machine that took
  the CPU away (the hypervisor's steal, a frozen VM) delays it like everything else.
- the kernel's cumulative counters: steal and iowait time (/proc/stat), and pressure stall
  time (/proc/pressure: "some" = at least one task waited for CPU, I/O or memory; "full" = all
  non-idle tasks waited for I/O).
- the scheduler state of the watched processes: "D" = asleep in the kernel, uninterruptible,
  usually waiting for the disk (a PostgreSQL backend flushing its WAL, for instance).
- how many files the watched directories hold, every 100 ms: a new file in PostgreSQL's
  pg_wal is a WAL segment created (16 MB written and flushed) while a commit waits for it.
- the disk's own counters (/proc/diskstats, the device holding the first watched
  directory): writes, discards (TRIM: this machine mounts / with `discard`, so the blocks of
  every deleted file are discarded as the journal commits) and cache flushes (one per
  fdatasync), with the milliseconds the device took for each.
"""

from __future__ import annotations

import bisect
import json
import os
import sys
import threading
import time
from collections import deque
from typing import NamedTuple

INTERVAL = 0.01
KEEP = 60_000  # samples: 10 minutes
TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")
PRESSURE = (("cpu", "some"), ("io", "some"), ("io", "full"), ("memory", "some"))


def _pressure_us() -> list[int]:
    out = []
    for resource, kind in PRESSURE:
        try:
            with open(f"/proc/pressure/{resource}") as f:
                for line in f:
                    if line.startswith(kind):
                        out.append(int(line.rsplit("total=", 1)[1]))
                        break
                else:
                    out.append(0)
        except OSError:
            out.append(0)
    return out


def _cpu_ticks() -> tuple[int, int]:
    """(steal, iowait) over all CPUs, in clock ticks."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return int(fields[8]), int(fields[5])


# /proc/diskstats fields after the device name (Linux 5.5+), 1-based
DISK_FIELDS = (
    ("writes", 5),
    ("write_ms", 8),
    ("discards", 12),
    ("discard_ms", 15),
    ("flushes", 16),
    ("flush_ms", 17),
)


def _disk_of(path: str) -> tuple[int, int] | None:
    try:
        dev = os.stat(path).st_dev
    except OSError:
        return None
    return os.major(dev), os.minor(dev)


def _disk_counters(device: tuple[int, int] | None) -> tuple[int, ...]:
    if device is None:
        return ()
    with open("/proc/diskstats") as f:
        for line in f:
            fields = line.split()
            if (int(fields[0]), int(fields[1])) == device:
                values = fields[3:]
                return tuple(int(values[i - 1]) if len(values) >= i else 0 for _, i in DISK_FIELDS)
    return ()


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return "-"
    return chr(data[data.rfind(b")") + 2])


def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


class Sample(NamedTuple):
    at: float  # time.monotonic()
    late: float  # seconds the monitor's sleep overran
    steal: int  # clock ticks, all CPUs
    iowait: int
    pressure: tuple[int, ...]  # microseconds stalled, as PRESSURE lists them
    disk: tuple[int, ...]  # as DISK_FIELDS lists them; () before a directory is watched
    files: tuple[int, ...]  # files in each watched directory
    blocked: tuple[str, ...]  # names of watched processes in disk wait


class Monitor:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.samples: deque[Sample] = deque(maxlen=KEEP)
        self.watched: dict[str, int] = {}
        self.pids: list[tuple[str, int]] = []
        self.directories: dict[str, str] = {}
        self.files: tuple[int, ...] = ()
        self.device: tuple[int, int] | None = None
        self.stop = threading.Event()

    def watch(self, named: dict[str, int], directories: dict[str, str]) -> None:
        with self.lock:
            self.watched = dict(named)
            self.directories = dict(directories)
            self.device = _disk_of(next(iter(directories.values()), os.getcwd()))
        self._refresh_pids()
        self._count_files()

    def _count_files(self) -> None:
        counts = []
        for path in self.directories.values():
            try:
                counts.append(len(os.listdir(path)))
            except OSError:
                counts.append(0)
        self.files = tuple(counts)

    def _refresh_pids(self) -> None:
        pids = []
        for name, pid in self.watched.items():
            pids.append((name, pid))
            pids += [(name, child) for child in _children(pid)]
        with self.lock:
            self.pids = pids

    def run(self) -> None:
        asked = time.monotonic()
        refresh = asked + 1.0
        n = 0
        while not self.stop.is_set():
            asked += INTERVAL
            pause = asked - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            now = time.monotonic()
            late = max(0.0, now - asked)
            if late > INTERVAL:
                asked = now  # do not try to catch up
            steal, iowait = _cpu_ticks()
            with self.lock:
                pids = self.pids
            blocked = tuple(sorted({name for name, pid in pids if _state(pid) == "D"}))
            n += 1
            if n % 10 == 0:
                self._count_files()
            disk = _disk_counters(self.device)
            sample = Sample(now, late, steal, iowait, tuple(_pressure_us()), disk, self.files, blocked)
            with self.lock:
                self.samples.append(sample)
            if now > refresh:
                refresh = now + 1.0
                self._refresh_pids()

    def span(self, start: float, end: float) -> dict:
        with self.lock:
            samples = list(self.samples)
        times = [s.at for s in samples]
        lo = max(0, bisect.bisect_left(times, start) - 1)
        hi = bisect.bisect_right(times, end)
        inside = samples[lo : hi + 1]
        if len(inside) < 2:
            return {"samples": len(inside)}
        first, last = inside[0], inside[-1]
        blocked: dict[str, int] = {}
        for sample in inside[1:]:
            for name in sample.blocked:
                blocked[name] = blocked.get(name, 0) + 1
        out = {
            "samples": len(inside),
            "seconds": round(last.at - first.at, 3),
            "monitor_late_max_ms": round(max(s.late for s in inside[1:]) * 1000, 1),
            "steal_ms": round((last.steal - first.steal) * TICK_MS),
            "iowait_ms": round((last.iowait - first.iowait) * TICK_MS),
        }
        for (resource, kind), a, b in zip(PRESSURE, first.pressure, last.pressure, strict=True):
            out[f"{resource}_{kind}_ms"] = round((b - a) / 1000, 1)
        out["in_disk_wait_samples"] = blocked  # process name -> samples seen in state D
        if first.disk and last.disk:
            out["disk"] = {
                name: b - a for (name, _), a, b in zip(DISK_FIELDS, first.disk, last.disk, strict=True)
            }
        with self.lock:
            names = list(self.directories)
        for i, name in enumerate(names):
            if len(first.files) > i and len(last.files) > i:
                out[f"{name}_files_added"] = last.files[i] - first.files[i]
        return out


def main() -> None:
    monitor = Monitor()
    thread = threading.Thread(target=monitor.run, daemon=True)
    thread.start()
    for line in sys.stdin:
        command = json.loads(line)
        cmd = command.get("cmd")
        if cmd == "quit":
            break
        if cmd == "watch":
            monitor.watch({k: int(v) for k, v in command["pids"].items()}, command.get("directories") or {})
            reply: dict = {"ok": True}
        elif cmd == "span":
            reply = monitor.span(float(command["from"]), float(command["to"]))
        else:
            reply = {"error": f"unknown command {cmd!r}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    monitor.stop.set()
    thread.join(1)


if __name__ == "__main__":
    main()
