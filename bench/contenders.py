"""The contenders, each able to run any workload: bare AES-GCM (the floor), the pure
core inline, :class:`framecrypt.Pool` (workers × transport × placement), and a naive
``multiprocessing.Pool``. (The livekit-client worker under Node is in :mod:`.node`.)

Every contender offers the same small interface to the harness:
``prepare``/``unprepare`` a workload (keys; untimed), ``before_run``/``after_run``
(untimed), ``drive`` (timed, throughput: as fast as it can), ``start_op`` (one frame
for the paced latency/storm submitter, calling ``record(sched)`` when done) and
``start_ratchet`` (the storm)."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from framecrypt import Frame, Pool, livekit, sframe
from framecrypt.batch import FrameBatch, InlineBatcher
from framecrypt.bench.workloads import (
    Op,
    Workload,
    material,
    passphrase,
    sframe_base,
)

Record = Callable[..., None]  # record(sched, t_done=None, error=False)
_CHUNK_OPS = 1024
_CHUNK_BYTES = 4 << 20


BATCH_BYTES = 2 << 20  # FrameBatch contenders: payload bytes per batch at most


def _chunks(items: list[Any], sizes: list[int], max_ops: int = _CHUNK_OPS,
            max_bytes: int = _CHUNK_BYTES) -> list[list[Any]]:
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


# --- bare AES-GCM: the floor ---------------------------------------------------------------


class Floor(Contender):
    name = "floor"
    kind = "floor"
    description = "bare cryptography AESGCM.encrypt/decrypt of the same payloads (the floor)"

    def __init__(self) -> None:
        self.aes = AESGCM(bytes(range(16)))
        self.items: dict[str, list[list[list[tuple[bool, bytes, bytes, bytes]]]]] = {}

    async def prepare(self, wl: Workload) -> None:
        segs = []
        for seg in wl.segments:
            items = []
            for j, op in enumerate(seg.ops):
                nonce = j.to_bytes(12, "big")
                clear = 3 if op.codec != "opus" else 1
                plain = op.expect if not op.enc else op.data
                aad, body = plain[:clear], plain[clear:]
                if not op.enc:
                    body = self.aes.encrypt(nonce, body, aad)
                items.append((op.enc, nonce, body, aad))
            segs.append(_chunks(items, [o.plain_len for o in seg.ops]))
        self.items[wl.name] = segs

    async def unprepare(self, wl: Workload) -> None:
        self.items.pop(wl.name, None)

    async def drive(self, wl: Workload, verify: bool = False) -> int:
        enc, dec = self.aes.encrypt, self.aes.decrypt
        for chunks in self.items[wl.name]:
            for chunk in chunks:
                for e, nonce, body, aad in chunk:
                    if e:
                        enc(nonce, body, aad)
                    else:
                        dec(nonce, body, aad)
                await asyncio.sleep(0)
        return 0


# --- the pure core inline ----------------------------------------------------------------------


class Inline(Contender):
    name = "inline"
    kind = "inline"
    description = ("framecrypt pure core in the calling process (livekit.protect/unprotect, "
                   "sframe.protect/unprotect), on the event loop")
    supports_storm = True

    def __init__(self) -> None:
        self.items: dict[str, list[tuple[str, int, list[list[tuple[Any, ...]]]]]] = {}
        self.keys: dict[int, bytes] = {}
        self.storm_material: dict[int, bytes | str] = {}
        self.storm_keys: dict[int, bytes] = {}
        self.storm = False
        self._seg_fmts: list[tuple[str, int]] = []

    def _key(self, pidx: int) -> bytes:
        k = self.keys.get(pidx)
        if k is None:
            k = self.keys[pidx] = livekit.derive_key(material(pidx))
        return k

    async def prepare(self, wl: Workload) -> None:
        self.storm = wl.kind == "storm"
        if self.storm:
            for i in range(wl.participants):
                self.storm_material[i] = passphrase(i)
                self.storm_keys[i] = livekit.derive_key(passphrase(i))
        segs = []
        for seg in wl.segments:
            items: list[tuple[Any, ...]] = []
            for op in seg.ops:
                if seg.fmt == "sframe":
                    items.append((op.enc, op.data, sframe_base(op.pidx), op.count))
                else:
                    items.append((op.enc, op.data, self._key(op.pidx), op.codec, op.keyframe,
                                  op.ssrc, op.ts, op.count))
            segs.append((seg.fmt, seg.suite, _chunks(items, [o.plain_len for o in seg.ops])))
        self.items[wl.name] = segs

    async def unprepare(self, wl: Workload) -> None:
        self.items.pop(wl.name, None)

    async def drive(self, wl: Workload, verify: bool = False) -> int:
        bad = 0
        expect = [o.expect for s in wl.segments for o in s.ops] if verify else []
        k = 0
        for fmt, suite, chunks in self.items[wl.name]:
            for chunk in chunks:
                if fmt == "sframe":
                    sp, su = sframe.protect, sframe.unprotect
                    for e, data, base, ctr in chunk:
                        if e:
                            out = sp(suite, base, 0, ctr, data)
                            if verify:
                                out = su(suite, base, out)[2]
                        else:
                            out = su(suite, base, data)[2]
                        if verify:
                            bad += out != expect[k]
                            k += 1
                else:
                    lp, lu = livekit.protect, livekit.unprotect
                    for e, data, key, codec, kf, ssrc, ts, cnt in chunk:
                        if e:
                            out = lp(data, key=key, codec=codec, keyframe=kf, ssrc=ssrc,
                                     timestamp=ts, send_count=cnt)
                            if verify:
                                out = lu(out, key=key, codec=codec, keyframe=kf)
                        else:
                            out = lu(data, key=key, codec=codec, keyframe=kf)
                        if verify:
                            bad += out != expect[k]
                            k += 1
                await asyncio.sleep(0)
        return bad

    def start_op(self, seg: int, op: Op, sched: float, record: Record) -> None:
        err = False
        try:
            fmt, suite = self._seg_fmts[seg] if self._seg_fmts else ("livekit", 0)
            if self.storm:
                livekit.protect(op.data, key=self.storm_keys[op.pidx], codec=op.codec,
                                keyframe=op.keyframe, ssrc=op.ssrc, timestamp=op.ts,
                                send_count=op.count)
            elif fmt == "sframe":
                if op.enc:
                    sframe.protect(suite, sframe_base(op.pidx), 0, op.count, op.data)
                else:
                    sframe.unprotect(suite, sframe_base(op.pidx), op.data)
            elif op.enc:
                livekit.protect(op.data, key=self._key(op.pidx), codec=op.codec,
                                keyframe=op.keyframe, ssrc=op.ssrc, timestamp=op.ts,
                                send_count=op.count)
            else:
                livekit.unprotect(op.data, key=self._key(op.pidx), codec=op.codec,
                                  keyframe=op.keyframe)
        except Exception:
            err = True
        record(sched, None, err)

    def set_paced_workload(self, wl: Workload) -> None:
        self._seg_fmts = [(s.fmt, s.suite) for s in wl.segments]
        self.storm = wl.kind == "storm"

    def start_ratchet(self, pidx: int, done: Callable[[bool], None]) -> None:
        # on the event loop, as a user of the pure core would: 2 × PBKDF2 (100k iterations)
        m = self.storm_material[pidx]
        nxt = livekit.ratchet(m, kdf="pbkdf2")
        self.storm_material[pidx] = nxt
        self.storm_keys[pidx] = livekit.derive_key(nxt, kdf="pbkdf2")
        done(True)


# --- framecrypt.Pool ---------------------------------------------------------------------------


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
            streams: dict[tuple[int, bool], list[Op]] = {}
            for op in seg.ops:
                streams.setdefault((op.pidx, op.enc), []).append(op)
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
                        wrong += _check(seg_fmt, suite, chops, out)
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


BatchArgs = tuple[list[bytes], list[str], list[bool], list[int], list[int]]


def _batch_args(frames: list[Frame]) -> BatchArgs:
    return ([f.data for f in frames], [f.codec for f in frames], [f.keyframe for f in frames],
            [f.ssrc for f in frames], [f.timestamp for f in frames])


def _batch_of(a: BatchArgs) -> FrameBatch:
    """Timed: what a caller holding a list of frames does to make a batch."""
    return FrameBatch.of(a[0], a[1], keyframes=a[2], ssrc=a[3], timestamps=a[4])


class BatchPoolContender(PoolContender):
    """The same pool, fed through the columnar API (:class:`FrameBatch` →
    ``encrypt_batch``/``decrypt_batch``): no Python object per frame in the broker.
    The paced (latency, storm) runs use the per-frame path, as the parent."""

    def __init__(self, workers: int, transport: str, placement: str, chunk: int) -> None:
        super().__init__(workers, transport, placement, chunk)
        self.name = f"batch-{transport}-{workers}w-{placement}"
        self.description = (f"framecrypt.Pool(workers={workers}, transport={transport!r}, "
                            f"placement={placement!r}); FrameBatch.of + encrypt_batch/"
                            f"decrypt_batch in chunks of {chunk} per stream")
        self.batches: dict[str, list[list[tuple[int, bool, list[BatchArgs]]]]] = {}

    paced = False

    def skip_reason(self, wl: Workload) -> str | None:
        if wl.kind == "storm":
            return "paced one frame at a time: the frame API's contender covers it"
        return super().skip_reason(wl)

    async def prepare(self, wl: Workload) -> None:
        await super().prepare(wl)
        # chunks of at most `chunk` frames and BATCH_BYTES (as FrameBatch advises)
        for seg in self.prepared[wl.name]:
            for k, (pidx, enc, chunks, ops) in enumerate(seg):
                fr = [f for ch in chunks for f in ch]
                ob = [o for ch in ops for o in ch]
                cut = _chunks(list(range(len(fr))), [len(f.data) for f in fr],
                              self.chunk, BATCH_BYTES)
                seg[k] = (pidx, enc, [[fr[i] for i in c] for c in cut],
                          [[ob[i] for i in c] for c in cut])
        self.batches[wl.name] = [[(pidx, enc, [_batch_args(ch) for ch in chunks])
                                  for pidx, enc, chunks, _ in seg]
                                 for seg in self.prepared[wl.name]]

    async def unprepare(self, wl: Workload) -> None:
        self.batches.pop(wl.name, None)
        await super().unprepare(wl)

    async def drive(self, wl: Workload, verify: bool = False) -> int:
        bad = 0
        for si, (seg, prepared) in enumerate(zip(wl.segments, self.batches[wl.name],
                                                 strict=True)):
            pool = self.pools[seg.fmt]
            names = self._names_for(wl, seg.fmt)
            ops_of = self.prepared[wl.name][si]

            async def one(k: int, pidx: int, enc: bool, chunks: list[BatchArgs],
                          pool: Pool = pool, names: list[str] = names, seg_fmt: str = seg.fmt,
                          suite: int = seg.suite,
                          ops_of: list[Any] = ops_of) -> int:
                f = pool.encrypt_batch if enc else pool.decrypt_batch
                name = names[pidx]
                wrong = 0
                for j, ch in enumerate(chunks):
                    out = await f(name, _batch_of(ch))
                    if verify:
                        wrong += _check(seg_fmt, suite, ops_of[k][3][j], list(out))
                return wrong

            res = await asyncio.gather(*(one(k, *s) for k, s in enumerate(prepared)))
            bad += sum(res)
        return bad


class InlineBatch(Contender):
    name = "inline-batch"
    kind = "inline"
    description = ("framecrypt pure core over FrameBatch in the calling process "
                   "(framecrypt.batch.InlineBatcher: the workers' loop, no pool), in chunks "
                   "per stream, on the event loop")

    paced = False

    def __init__(self, chunk: int) -> None:
        self.chunk = chunk
        self.items: dict[str, list[tuple[str, int, list[tuple[int, bool, BatchArgs,
                                                              list[Op]]]]]] = {}
        self.lk = InlineBatcher("livekit")
        self.run_batchers: dict[str, InlineBatcher] = {}

    async def prepare(self, wl: Workload) -> None:
        if "livekit" in wl.formats:
            for i in range(wl.participants):
                self.lk.set_key(f"{wl.name}/p{i}", material(i))
        segs = []
        for seg in wl.segments:
            streams: dict[tuple[int, bool], list[Op]] = {}
            for op in seg.ops:
                streams.setdefault((op.pidx, op.enc), []).append(op)
            items = []
            # interleave the streams chunk by chunk, as the pool contenders' gather does
            per = [[(pidx, enc, ch) for ch in _chunks(ops, [o.plain_len for o in ops],
                                                       self.chunk, BATCH_BYTES)]
                   for (pidx, enc), ops in streams.items()]
            for row in range(max((len(p) for p in per), default=0)):
                for p in per:
                    if row < len(p):
                        pidx, enc, ops = p[row]
                        fr = [Frame(o.data, o.codec, o.keyframe, o.ssrc, o.ts) for o in ops]
                        items.append((pidx, enc, _batch_args(fr), ops))
            segs.append((seg.fmt, seg.suite, items))
        self.items[wl.name] = segs

    async def unprepare(self, wl: Workload) -> None:
        self.items.pop(wl.name, None)

    async def before_run(self, wl: Workload) -> None:
        """SFrame receivers keep a replay window: every run opens with fresh ones."""
        for fmt, suite, _ in self.items[wl.name]:
            if fmt == "sframe":
                ib = InlineBatcher("sframe", suite=suite)
                for i in range(wl.participants):
                    ib.set_key(f"p{i}", sframe_base(i))
                self.run_batchers[wl.name] = ib

    async def drive(self, wl: Workload, verify: bool = False) -> int:
        bad = 0
        for fmt, suite, items in self.items[wl.name]:
            ib = self.run_batchers[wl.name] if fmt == "sframe" else self.lk
            pre = "p" if fmt == "sframe" else f"{wl.name}/p"
            nb = 0
            for pidx, enc, args, ops in items:
                b = _batch_of(args)
                out = (ib.seal if enc else ib.open)(f"{pre}{pidx}", b)
                if verify:
                    bad += _check(fmt, suite, ops, list(out))
                nb += b.nbytes
                if nb >= _CHUNK_BYTES:
                    nb = 0
                    await asyncio.sleep(0)
            await asyncio.sleep(0)
        return bad


_check_keys: dict[int, bytes] = {}


def _check(fmt: str, suite: int, ops: list[Op], out: list[Any]) -> int:
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


# --- the naive baseline: multiprocessing.Pool, one pickled task per frame -----------------------

_naive_keys: dict[tuple[str, int], bytes] = {}


def naive_task(task: tuple[str, int, int, bool, bytes, str, bool, int, int, int]) -> bytes:
    """What a user would write: seal/open one frame with the pure core in a worker."""
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
                            "frame (map, chunksize=1), sealing with the pure core")
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
