"""The contenders fed through the columnar API (:class:`framecrypt.batch.FrameBatch`):
the pool's ``encrypt_batch``/``decrypt_batch`` and the same loop inline
(:class:`framecrypt.batch.InlineBatcher`) on the default, pure-Python or a native
path. Throughput only: no one-frame path."""

from __future__ import annotations

import asyncio
from typing import Any

from framecrypt import Frame, Pool
from framecrypt.batch import FrameBatch, InlineBatcher
from framecrypt.bench.contenders.base import CHUNK_BYTES, Contender, check, split_chunks
from framecrypt.bench.contenders.native import interleaved_chunks, on_path, path_unavailable
from framecrypt.bench.contenders.pool import PoolContender
from framecrypt.bench.workloads import Op, Workload, material, sframe_base

BATCH_BYTES = 2 << 20  # FrameBatch contenders: payload bytes per batch at most


BatchArgs = tuple[list[bytes], list[str], list[bool], list[int], list[int]]


def batch_args(frames: list[Frame]) -> BatchArgs:
    return ([f.data for f in frames], [f.codec for f in frames], [f.keyframe for f in frames],
            [f.ssrc for f in frames], [f.timestamp for f in frames])


def batch_of(a: BatchArgs) -> FrameBatch:
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
                cut = split_chunks(list(range(len(fr))), [len(f.data) for f in fr],
                                   self.chunk, BATCH_BYTES)
                seg[k] = (pidx, enc, [[fr[i] for i in c] for c in cut],
                          [[ob[i] for i in c] for c in cut])
        self.batches[wl.name] = [[(pidx, enc, [batch_args(ch) for ch in chunks])
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
                name = names[pidx]
                wrong = 0
                for j, ch in enumerate(chunks):
                    out = await self._chunk(pool, enc, name, ch, verify)
                    if verify:
                        wrong += check(seg_fmt, suite, ops_of[k][3][j], out)
                return wrong

            res = await asyncio.gather(*(one(k, *s) for k, s in enumerate(prepared)))
            bad += sum(res)
        return bad

    async def _chunk(self, pool: Pool, enc: bool, name: str, ch: BatchArgs,
                     verify: bool) -> list[Any]:
        """One timed chunk through the columnar API: its outcomes when verifying (read
        only then: reading is not part of the timed work), else []."""
        f = pool.encrypt_batch if enc else pool.decrypt_batch
        out = await f(name, batch_of(ch))
        return list(out) if verify else []


class ZeroCopyPoolContender(BatchPoolContender):
    """The same pool through the zero-copy API: each chunk written into a reservation
    in its owner worker's request ring (``pool.reserve`` + ``RingBatch.put_many``: one
    memcpy a frame, in C; timed) and sealed/opened with ``zero_copy=True``, the outputs
    read as views in the reply ring and released."""

    def __init__(self, workers: int, transport: str, placement: str, chunk: int) -> None:
        super().__init__(workers, transport, placement, chunk)
        self.name = f"zc-{transport}-{workers}w-{placement}"
        self.description = (f"framecrypt.Pool(workers={workers}, transport={transport!r}, "
                            f"placement={placement!r}); pool.reserve + put_many + "
                            f"encrypt_batch/decrypt_batch(zero_copy=True) in chunks of "
                            f"{chunk} per stream")

    async def _chunk(self, pool: Pool, enc: bool, name: str, ch: BatchArgs,
                     verify: bool) -> list[Any]:
        payloads, codecs, kfs, ssrcs, tss = ch
        b = pool.reserve(name, max(1, sum(map(len, payloads))))
        b.put_many(payloads, codecs, keyframes=kfs, ssrc=ssrcs, timestamps=tss)
        f = pool.encrypt_batch if enc else pool.decrypt_batch
        with await f(name, b, zero_copy=True) as out:  # (then the ring space goes back)
            return list(out) if verify else []


class InlineBatch(Contender):
    """:class:`framecrypt.batch.InlineBatcher` (the workers' loop, no pool) over
    FrameBatch chunks per stream, on the event loop. ``path`` None: the default path
    (``inline-batch``); else the batchers are made, keyed and called inside
    ``native.using(path)`` (``inline-batch-python``, ``batch-native-evp``,
    ``batch-native-ipsec-mb``)."""

    name = "inline-batch"
    kind = "inline"

    paced = False

    def __init__(self, chunk: int, path: str | None = None,
                 name: str = "inline-batch") -> None:
        self.chunk = chunk
        self.path = path
        self.name = name
        self.why = path_unavailable(path)
        what = {None: "the default path (FRAMECRYPT_NATIVE: the extension where built)",
                "python": "the pure-Python core (native.using('python'))"}.get(
                    path, f"the extension, AES-GCM by {path} (native.using({path!r}))")
        self.description = ("framecrypt over FrameBatch in the calling process "
                            "(framecrypt.batch.InlineBatcher: the workers' loop, no pool), "
                            f"in chunks per stream, on the event loop; {what}")
        self.items: dict[str, list[tuple[str, int, list[tuple[int, bool, BatchArgs,
                                                              list[Op]]]]]] = {}
        self.lk: InlineBatcher | None = None
        self.run_batchers: dict[str, InlineBatcher] = {}

    def skip_reason(self, wl: Workload) -> str | None:
        return self.why or super().skip_reason(wl)

    async def prepare(self, wl: Workload) -> None:
        if "livekit" in wl.formats:
            with on_path(self.path):
                if self.lk is None:
                    self.lk = InlineBatcher("livekit")
                for i in range(wl.participants):
                    self.lk.set_key(f"{wl.name}/p{i}", material(i))
        segs = []
        for seg in wl.segments:
            items = []
            for ops in interleaved_chunks(seg.ops, self.chunk, BATCH_BYTES):
                fr = [Frame(o.data, o.codec, o.keyframe, o.ssrc, o.ts) for o in ops]
                items.append((ops[0].pidx, ops[0].enc, batch_args(fr), ops))
            segs.append((seg.fmt, seg.suite, items))
        self.items[wl.name] = segs

    async def unprepare(self, wl: Workload) -> None:
        self.items.pop(wl.name, None)

    async def before_run(self, wl: Workload) -> None:
        """SFrame receivers keep a replay window: every run opens with fresh ones."""
        for fmt, suite, _ in self.items[wl.name]:
            if fmt == "sframe":
                with on_path(self.path):
                    ib = InlineBatcher("sframe", suite=suite)
                    for i in range(wl.participants):
                        ib.set_key(f"p{i}", sframe_base(i))
                self.run_batchers[wl.name] = ib

    async def drive(self, wl: Workload, verify: bool = False) -> int:
        bad = 0
        for fmt, suite, items in self.items[wl.name]:
            ib = self.run_batchers[wl.name] if fmt == "sframe" else self.lk
            assert ib is not None
            pre = "p" if fmt == "sframe" else f"{wl.name}/p"
            it = iter(items)
            more = True
            while more:  # the path held over each synchronous stretch, not across awaits
                more = False
                nb = 0
                with on_path(self.path):
                    for pidx, enc, args, ops in it:
                        b = batch_of(args)
                        out = (ib.seal if enc else ib.open)(f"{pre}{pidx}", b)
                        if verify:
                            bad += check(fmt, suite, ops, list(out))
                        nb += b.nbytes
                        if nb >= CHUNK_BYTES:
                            more = True
                            break
                await asyncio.sleep(0)
        return bad
