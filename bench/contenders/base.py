"""What every contender offers the harness, and the helpers they share.

Every contender offers the same small interface to the harness:
``prepare``/``unprepare`` a workload (keys; untimed), ``before_run``/``after_run``
(untimed), ``drive`` (timed, throughput: as fast as it can), ``start_op`` (one frame
for the paced latency/storm submitter, calling ``record(sched)`` when done) and
``start_ratchet`` (the storm)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from framecrypt import livekit, sframe
from framecrypt.bench.workloads import Op, Workload, material, sframe_base

Record = Callable[..., None]  # record(sched, t_done=None, error=False)
_CHUNK_OPS = 1024
CHUNK_BYTES = 4 << 20


def split_chunks(items: list[Any], sizes: list[int], max_ops: int = _CHUNK_OPS,
                 max_bytes: int = CHUNK_BYTES) -> list[list[Any]]:
    """Split so one synchronous chunk stays short (the loop gets a turn between)."""
    out: list[list[Any]] = []
    cur: list[Any] = []
    nb = 0
    for it, sz in zip(items, sizes, strict=True):
        if cur and nb + sz > max_bytes:
            out.append(cur)
            cur, nb = [], 0
        cur.append(it)
        nb += sz
        if len(cur) >= max_ops or nb >= max_bytes:
            out.append(cur)
            cur, nb = [], 0
    if cur:
        out.append(cur)
    return out


def by_stream(ops: list[Op]) -> dict[tuple[int, bool], list[Op]]:
    """The ops of one segment by stream (participant, seal or open), in order."""
    streams: dict[tuple[int, bool], list[Op]] = {}
    for op in ops:
        streams.setdefault((op.pidx, op.enc), []).append(op)
    return streams


class Contender:
    name = ""
    kind = ""
    description = ""
    supports_storm = False
    worker_count = 0
    paced = True  # has a one-frame-at-a-time path for the latency and storm phases

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "description": self.description}

    def skip_reason(self, wl: Workload) -> str | None:
        if wl.kind == "storm" and not self.supports_storm:
            return "no key ratchet on this contender's path"
        return None

    def op_cap(self) -> int | None:
        """At most this many ops per run (slow contenders); None = the whole workload."""
        return None

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def prepare(self, wl: Workload) -> None:
        pass

    async def unprepare(self, wl: Workload) -> None:
        pass

    async def before_run(self, wl: Workload) -> None:
        pass

    async def after_run(self, wl: Workload) -> None:
        pass

    async def drive(self, wl: Workload, verify: bool = False) -> int:
        """Process every op of ``wl`` once; returns the number of failed/wrong ops."""
        raise NotImplementedError

    def set_paced_workload(self, wl: Workload) -> None:
        """Called before a paced run (latency, storm) of ``wl``."""

    async def per_frame_probe(self, wl: Workload, duration: float) -> dict[str, float] | None:
        """The one-frame-per-call path's capacity (None: same path as :meth:`drive`):
        ``{"per_s", "elapsed_s", "max_latency_ms"}``."""
        return None

    def start_op(self, seg: int, op: Op, sched: float, record: Record) -> None:
        raise NotImplementedError

    def start_ratchet(self, pidx: int, done: Callable[[bool], None]) -> None:
        raise NotImplementedError

    def ratchet_cap(self) -> int:
        return 1

    def worker_pids(self) -> list[int]:
        return []

    def inline_counts(self) -> tuple[int, int] | None:
        """(frames sealed/opened in the broker process, frames submitted) so far."""
        return None

    def health(self) -> dict[str, int]:
        """Counters of trouble so far (worker deaths, re-dispatches, …); {} if none."""
        return {}

    async def settle(self, timeout: float = 15.0) -> None:
        """Wait until nothing is in flight and every worker is up (after overload)."""


_check_keys: dict[int, bytes] = {}


def check(fmt: str, suite: int, ops: list[Op], out: list[Any]) -> int:
    """Wrong results of one chunk: opens must give ``expect``, seals must open to it."""
    wrong = 0
    for op, res in zip(ops, out, strict=True):
        try:
            if not op.enc:
                got = res
            elif fmt == "sframe":
                got = sframe.unprotect(suite, sframe_base(op.pidx), res)[2]
            else:
                key = _check_keys.get(op.pidx)
                if key is None:
                    key = _check_keys[op.pidx] = livekit.derive_key(material(op.pidx))
                got = livekit.unprotect(res, key=key, codec=op.codec, keyframe=op.keyframe)
        except Exception:
            got = None
        wrong += got != op.expect
    return wrong
