"""Progress lines on stderr, each with the seconds since the run began."""

from __future__ import annotations

import sys
import time

T0 = time.perf_counter()


def restart() -> None:
    """The run begins now (``say`` counts from here)."""
    global T0
    T0 = time.perf_counter()


def elapsed() -> float:
    return time.perf_counter() - T0


def say(msg: str, *, end: str = "\n") -> None:
    print(f"[{elapsed():6.1f}s] {msg}", file=sys.stderr, end=end, flush=True)
