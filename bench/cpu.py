"""Who used the CPUs during a measurement: per process group (bridge, PostgreSQL, broker, load
generator...) and in total, from /proc. On a shared 2-core machine this tells whether a
number is limited by our own work or by everything else running at the same time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Self

TICKS = os.sysconf("SC_CLK_TCK")


def _proc_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0
    # After the command name: state ppid ... utime(12th) stime(13th) counting from state = 0.
    return (int(fields[11]) + int(fields[12])) / TICKS


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        if ppid == pid:
            kids.append(int(entry.name))
    return kids


def _system() -> tuple[float, float]:
    """(busy, total) seconds of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return (total - idle) / TICKS, total / TICKS


class CpuWindow:
    """`groups`: name -> callable returning the pids of that group now (they may change)."""

    def __init__(self, groups: dict[str, callable]) -> None:
        self.groups = groups

    def __enter__(self) -> Self:
        self._pids = {name: list(get()) for name, get in self.groups.items()}
        self._start = {name: {p: _proc_seconds(p) for p in pids} for name, pids in self._pids.items()}
        self._sys_start = _system()
        return self

    def __exit__(self, *exc) -> None:
        busy0, total0 = self._sys_start
        busy1, total1 = _system()
        cores = os.cpu_count() or 1
        wall = (total1 - total0) / cores
        self.result = {"wall_seconds": round(wall, 2), "cores": cores}
        ours = 0.0
        for name, get in self.groups.items():
            pids = set(self._pids[name]) | set(get())
            # A process that exited during the window takes its CPU time with it: not counted.
            used = sum(
                max(0.0, _proc_seconds(p) - self._start[name].get(p, 0.0)) for p in pids if _proc_seconds(p)
            )
            ours += used
            self.result[name] = round(used / wall, 3) if wall else 0.0
        busy = busy1 - busy0
        self.result["all_processes"] = round(busy / wall, 3) if wall else 0.0
        self.result["outside_the_bench"] = round(max(0.0, busy - ours) / wall, 3) if wall else 0.0
