"""framecrypt.Pool as a contender (workers × transport × placement), through the frame
API: ``encrypt_many``/``decrypt_many`` in chunks per stream, ``encrypt``/``decrypt``
one frame at a time for the paced runs, ``ratchet_key`` for the storm."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from framecrypt import Frame, Pool
from framecrypt.bench.contenders.base import Contender, Record, by_stream, check
from framecrypt.bench.workloads import Op, Workload, material, passphrase, sframe_base


class PoolContender(Contender):
    kind = "pool"
    supports_storm = True

    def __init__(self, workers: int, transport: str, placement: str, chunk: int) -> None:
        self.workers = self.worker_count = workers
        self.transport = transport
        self.placement = placement
        self.chunk = chunk
        self.name = f"pool-{transport}-{workers}w-{placement}"
        self.description = (f"framecrypt.Pool(workers={workers}, transport={transport!r}, "
                            f"placement={placement!r}); encrypt_many/decrypt_many in chunks "
                            f"of {chunk} per stream")
        self.pools: dict[str, Pool] = {}
        self.names: dict[str, list[str]] = {}
        self.run_names: list[str] = []
        self._run_seq = 0
        self.prepared: dict[str, list[list[tuple[int, bool, list[list[Frame]],
                                                 list[list[Op]]]]]] = {}
        self._seg_fmts: list[str] = []
        self._paced_names: list[list[str]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def config(self) -> dict[str, Any]:
        return {**super().config(), "workers": self.workers, "transport": self.transport,
                "placement": self.placement, "chunk": self.chunk}

    def _make(self, fmt: str, suite: int = 4) -> Pool:
        return Pool(workers=self.workers, transport=self.transport, placement=self.placement,
                    format=fmt, sframe__suite=suite)

    async def start(self) -> None:
        p = self._make("livekit")
        await p.start()
        self.pools["livekit"] = p

    async def close(self) -> None:
        for p in list(self.pools.values()):
            await p.close()
        self.pools.clear()

    async def prepare(self, wl: Workload) -> None:
        for seg in wl.segments:
            if seg.fmt not in self.pools:
                p = self._make(seg.fmt, seg.suite)
                await p.start()
                self.pools[seg.fmt] = p
        lk = self.pools["livekit"]
        names = [f"{wl.name}/p{i}" for i in range(wl.participants)]
        self.names[wl.name] = names
        if "livekit" in wl.formats:
            storm = wl.kind == "storm"
            await asyncio.gather(*(lk.set_key(n, passphrase(i) if storm else material(i))
                                   for i, n in enumerate(names)))
        segs = []
        for seg in wl.segments:
            streams = by_stream(seg.ops)
            prepared = []
            for (pidx, enc), ops in streams.items():
                frames = [Frame(o.data, o.codec, o.keyframe, o.ssrc, o.ts) for o in ops]
                c = self.chunk
                prepared.append((pidx, enc, [frames[k:k + c] for k in range(0, len(frames), c)],
                                 [ops[k:k + c] for k in range(0, len(ops), c)]))
            segs.append(prepared)
        self.prepared[wl.name] = segs

    async def unprepare(self, wl: Workload) -> None:
        self.prepared.pop(wl.name, None)
        lk = self.pools.get("livekit")
        if lk is not None and "livekit" in wl.formats:
            for n in self.names.pop(wl.name, []):
                await lk.remove_participant(n)
        for fmt in list(self.pools):
            if fmt != "livekit":
                await self.pools.pop(fmt).close()

    async def before_run(self, wl: Workload) -> None:
        """SFrame receivers keep a replay window: every run opens with fresh ones."""
        self.run_names = []
        if "sframe" in wl.formats:
            self._run_seq += 1
            sf = self.pools["sframe"]
            self.run_names = [f"{wl.name}/r{self._run_seq}/p{i}" for i in range(wl.participants)]
            await asyncio.gather(*(sf.set_key(n, sframe_base(i))
                                   for i, n in enumerate(self.run_names)))

    async def after_run(self, wl: Workload) -> None:
        if self.run_names and "sframe" in self.pools:
            sf = self.pools["sframe"]
            for n in self.run_names:
                await sf.remove_participant(n)
        self.run_names = []

    def _names_for(self, wl: Workload, fmt: str) -> list[str]:
        return self.run_names if fmt == "sframe" else self.names[wl.name]

    async def drive(self, wl: Workload, verify: bool = False) -> int:
        bad = 0
        for seg, prepared in zip(wl.segments, self.prepared[wl.name], strict=True):
            pool = self.pools[seg.fmt]
            names = self._names_for(wl, seg.fmt)

            async def one(pidx: int, enc: bool, chunks: list[list[Frame]],
                          ops: list[list[Op]], pool: Pool = pool,
                          names: list[str] = names, seg_fmt: str = seg.fmt,
                          suite: int = seg.suite) -> int:
                f = pool.encrypt_many if enc else pool.decrypt_many
                name = names[pidx]
                wrong = 0
                for ch, chops in zip(chunks, ops, strict=True):
                    out = await f(name, ch)
                    if verify:
                        wrong += check(seg_fmt, suite, chops, out)
                return wrong

            res = await asyncio.gather(*(one(*s) for s in prepared))
            bad += sum(res)
        return bad

    def worker_pids(self) -> list[int]:
        return [pid for p in self.pools.values() for pid in p.worker_pids()]

    def inline_counts(self) -> tuple[int, int]:
        st = [p.stats() for p in self.pools.values()]
        return (sum(s["frames_inline"] for s in st), sum(s["frames_submitted"] for s in st))

    HEALTH_KEYS = ("worker_deaths", "worker_spawns", "redispatched", "worker_lost",
                   "ring_full", "expired", "overloaded", "protocol_errors", "frames_failed",
                   "control_errors")

    def health(self) -> dict[str, int]:
        out = dict.fromkeys(self.HEALTH_KEYS, 0)
        for p in self.pools.values():
            st = p.stats()
            for k in self.HEALTH_KEYS:
                out[k] += int(st.get(k, 0))
        return out

    async def settle(self, timeout: float = 15.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            sts = [p.stats() for p in self.pools.values()]
            if all(st["frames_in_flight"] == 0 and all(w["state"] == "ready"
                                                       for w in st["workers"])
                   for st in sts):
                return
            await asyncio.sleep(0.05)

    # paced submitter -----------------------------------------------------------------------

    def set_paced_workload(self, wl: Workload) -> None:
        self._seg_fmts = [s.fmt for s in wl.segments]
        self._paced_names = [self._names_for(wl, s.fmt) for s in wl.segments]

    def start_op(self, seg: int, op: Op, sched: float, record: Record) -> None:
        pool = self.pools[self._seg_fmts[seg]]
        name = self._paced_names[seg][op.pidx]
        frame = Frame(op.data, op.codec, op.keyframe, op.ssrc, op.ts)

        async def one() -> None:
            err = False
            try:
                if op.enc:
                    await pool.encrypt(name, frame)
                else:
                    await pool.decrypt(name, frame)
            except Exception:
                err = True
            record(sched, None, err)

        self._spawn(one())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    def ratchet_cap(self) -> int:
        return 2 * self.workers

    async def per_frame_probe(self, wl: Workload, duration: float,
                              concurrency: int = 64) -> dict[str, float]:
        """Closed loop: ``concurrency`` submitters, each awaiting one ``encrypt`` /
        ``decrypt`` per frame before the next, for ``duration`` s."""
        self.set_paced_workload(wl)
        loop = asyncio.get_running_loop()
        items = wl.interleaved()
        pos = [0, 0]  # next item, frames done
        worst = [0.0]
        stop = loop.time() + duration

        async def submitter() -> None:
            while pos[0] < len(items) and loop.time() < stop:
                si, op = items[pos[0]]
                pos[0] += 1
                pool = self.pools[self._seg_fmts[si]]
                name = self._paced_names[si][op.pidx]
                frame = Frame(op.data, op.codec, op.keyframe, op.ssrc, op.ts)
                t = loop.time()
                if op.enc:
                    await pool.encrypt(name, frame)
                else:
                    await pool.decrypt(name, frame)
                worst[0] = max(worst[0], loop.time() - t)
                pos[1] += 1

        t0 = loop.time()
        await asyncio.gather(*(submitter() for _ in range(concurrency)))
        elapsed = loop.time() - t0
        return {"per_s": pos[1] / max(1e-9, elapsed), "elapsed_s": elapsed,
                "max_latency_ms": worst[0] * 1e3}

    def start_ratchet(self, pidx: int, done: Callable[[bool], None]) -> None:
        pool = self.pools["livekit"]
        name = self._paced_names[0][pidx]

        async def one() -> None:
            ok = True
            try:
                await pool.ratchet_key(name)
            except Exception:
                ok = False
            done(ok)

        self._spawn(one())
