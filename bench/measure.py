"""Measuring helpers: CPU time of other processes, peak RSS, percentiles, summaries,
the event-loop lag ticker. Linux-first (``/proc``); degrade to ``None`` elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import statistics
import time
from collections.abc import Iterable, Sequence
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) a live process has used.

    Reads the process CPU clock (``clock_gettime`` on the pid's CPU-clock id, the
    same figure as ``/proc/<pid>/stat`` utime+stime but in ns instead of 10 ms
    ticks); falls back to ``/proc/<pid>/stat``."""
    try:
        return time.clock_gettime(((~pid) << 3) | 2)  # MAKE_PROCESS_CPUCLOCK(pid, SCHED)
    except (OSError, OverflowError, AttributeError):
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return None


def cpu_of(pids: Iterable[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        v = proc_cpu_s(pid)
        if v is not None:
            out[pid] = v
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two :func:`cpu_of` snapshots (pids in both)."""
    return sum(max(0.0, after[p] - before[p]) for p in before if p in after)


def _status_kb(pid: int | str, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """VmHWM (peak resident set) of a process in MB (10^6 B)."""
    kb = _status_kb(pid, "VmHWM:")
    return None if kb is None else kb * 1024 / 1e6


def rss_mb(pid: int | str = "self") -> float | None:
    """VmRSS (resident set now) of a process in MB."""
    kb = _status_kb(pid, "VmRSS:")
    return None if kb is None else kb * 1024 / 1e6


def reset_peak_rss(pid: int | str = "self") -> bool:
    """Reset VmHWM to the current RSS (``echo 5 > /proc/<pid>/clear_refs``)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; nan when empty."""
    if not values:
        return math.nan
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


def summary(values: Sequence[float]) -> dict[str, float] | None:
    """``{"median", "min", "max"}`` of the runs (None when there are none)."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}


def median(values: Sequence[float]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(vals) if vals else None


class LagTicker:
    """Measures the event loop's lateness: a timer every ``interval`` s records how
    late it fired (``loop.time()`` at the callback minus the time it was due)."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due = 0.0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._due = self._loop.time() + self.interval
        self._handle = self._loop.call_at(self._due, self._fire)

    def _fire(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        self.samples.append(now - self._due)
        self._due = now + self.interval
        self._handle = self._loop.call_at(self._due, self._fire)

    def stop(self) -> dict[str, float]:
        if self._handle is not None:
            self._handle.cancel()
        s = self.samples
        return {"p50_ms": percentile(s, 50) * 1e3, "p99_ms": percentile(s, 99) * 1e3,
                "max_ms": (max(s) if s else math.nan) * 1e3, "ticks": float(len(s))}


def hardware_line() -> str:
    """``<cpu model>, <n> CPUs, <mem> GB RAM, <kernel>`` for the results header."""
    import platform

    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    mem = ""
    kb = _status_kb("self", "VmRSS:")  # touch /proc only to know it is there
    if kb is not None:
        with contextlib.suppress(OSError, ValueError):
            with open("/proc/meminfo") as f:
                mem = f", {int(f.readline().split()[1]) / 1e6:.0f} GB RAM"
    return f"{model}, {os.cpu_count()} CPUs{mem}, {platform.system()} {platform.release()}"


def jsonable(obj: Any) -> Any:
    """nan/inf -> None, recursively (JSON has no NaN)."""
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    return obj
