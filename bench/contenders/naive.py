"""The naive baseline: ``multiprocessing.Pool``, one pickled task per frame, sealing
with framecrypt's per-call functions on the default path (what a user would write
without framecrypt.Pool)."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from typing import Any

from framecrypt import livekit, sframe
from framecrypt.bench.contenders.base import Contender, Record
from framecrypt.bench.workloads import Op, Workload, material, sframe_base

_naive_keys: dict[tuple[str, int], bytes] = {}


def naive_task(task: tuple[str, int, int, bool, bytes, str, bool, int, int, int]) -> bytes:
    """What a user would write: seal/open one frame per call in a worker (default path)."""
    fmt, suite, pidx, enc, data, codec, kf, ssrc, ts, cnt = task
    if fmt == "sframe":
        base = _naive_keys.get((fmt, pidx))
        if base is None:
            base = _naive_keys[(fmt, pidx)] = sframe_base(pidx)
        if enc:
            return sframe.protect(suite, base, 0, cnt, data)
        return sframe.unprotect(suite, base, data)[2]
    key = _naive_keys.get((fmt, pidx))
    if key is None:
        key = _naive_keys[(fmt, pidx)] = livekit.derive_key(material(pidx))
    if enc:
        return livekit.protect(data, key=key, codec=codec, keyframe=kf, ssrc=ssrc, timestamp=ts,
                               send_count=cnt)
    return livekit.unprotect(data, key=key, codec=codec, keyframe=kf)


class Naive(Contender):
    name = "naive-mp"
    kind = "naive"

    def __init__(self, workers: int, cap: int) -> None:
        self.workers = self.worker_count = workers
        self.cap = cap
        self.description = (f"multiprocessing.Pool({workers}) (spawn), one pickled task per "
                            "frame (map, chunksize=1), sealing per call on the default path")
        self.mp: Any = None
        self.tasks: dict[str, list[tuple[Any, ...]]] = {}
        self._seg_fmts: list[tuple[str, int]] = []

    def op_cap(self) -> int | None:
        return self.cap

    async def start(self) -> None:
        self.mp = multiprocessing.get_context("spawn").Pool(self.workers)
        # import framecrypt in every worker before anything is timed
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.mp.map(naive_task, [
                ("livekit", 0, 0, True, b"\x00" * 100, "vp8", False, 1, 1, 1)] * 4 * self.workers,
                chunksize=1))

    async def close(self) -> None:
        if self.mp is not None:
            self.mp.terminate()
            self.mp.join()
            self.mp = None

    async def prepare(self, wl: Workload) -> None:
        self.tasks[wl.name] = [
            (seg.fmt, seg.suite, o.pidx, o.enc, o.data, o.codec, o.keyframe, o.ssrc, o.ts,
             o.count)
            for seg in wl.segments for o in seg.ops]

    async def unprepare(self, wl: Workload) -> None:
        self.tasks.pop(wl.name, None)

    async def drive(self, wl: Workload, verify: bool = False) -> int:
        tasks = self.tasks[wl.name]
        out = await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.mp.map(naive_task, tasks, chunksize=1))
        if not verify:
            return 0
        bad = 0
        ops = [o for s in wl.segments for o in s.ops]
        for t, op, res in zip(tasks, ops, out, strict=True):
            if t[3]:  # sealed: open it here
                res = naive_task((t[0], t[1], t[2], False, res, *t[5:]))
            bad += res != op.expect
        return bad

    def set_paced_workload(self, wl: Workload) -> None:
        self._seg_fmts = [(s.fmt, s.suite) for s in wl.segments]

    def start_op(self, seg: int, op: Op, sched: float, record: Record) -> None:
        fmt, suite = self._seg_fmts[seg]
        loop = asyncio.get_running_loop()
        task = (fmt, suite, op.pidx, op.enc, op.data, op.codec, op.keyframe, op.ssrc, op.ts,
                op.count)

        def ok(_: object) -> None:
            loop.call_soon_threadsafe(record, sched, time.monotonic(), False)

        def fail(_: BaseException) -> None:
            loop.call_soon_threadsafe(record, sched, time.monotonic(), True)

        self.mp.apply_async(naive_task, (task,), callback=ok, error_callback=fail)

    def worker_pids(self) -> list[int]:
        procs = getattr(self.mp, "_pool", None) or []
        return [p.pid for p in procs if p.pid is not None]
