"""The broker's bookkeeping records: a call's outcome sink (:class:`Group`), the frames
of a call on their way (:class:`Run`, a slice of a :class:`~framecrypt.batch.FrameBatch`),
a queued range of a run (:class:`Span`), a key operation (:class:`Control`) and a
message in flight at a worker (:class:`InFlight`). No Python object per frame: a run's
frames are columns of its batch.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from framecrypt.batch import FrameBatch, OutputPiece
from framecrypt.broker.placement import Kind
from framecrypt.frame import Frame
from framecrypt.transports import wire

ENCRYPT = wire.OP_ENCRYPT
DECRYPT = wire.OP_DECRYPT


class Group:
    """The outcome sink of one call: ``results[i]`` is None (an output, held in
    ``pieces``) or the frame's typed error. ``on_done(group)`` runs once, when the last
    frame has its outcome."""

    __slots__ = ("errors", "n", "on_done", "pieces", "remaining", "results", "zero_copy")

    def __init__(self, n: int, on_done: Callable[[Group], None] | None = None, *,
                 zero_copy: bool = False) -> None:
        self.n = n
        # outputs stay in the reply ring (views + a lease) instead of being copied out
        self.zero_copy = zero_copy
        self.results: list[Any] = [None] * n
        self.remaining = n
        self.errors = 0
        self.pieces: list[OutputPiece] = []
        self.on_done = on_done

    def done(self, k: int) -> None:
        """``k`` more frames have their outcome."""
        self.remaining -= k
        if self.remaining == 0 and self.on_done is not None:
            cb, self.on_done = self.on_done, None
            cb(self)


class Lease:
    """A reply-ring region kept for zero-copy results: ``free()`` runs once, when the
    last of its ``holders`` (output pieces of zero-copy groups) let go of it."""

    __slots__ = ("free", "holders")

    def __init__(self, free: Callable[[], None]) -> None:
        self.free: Callable[[], None] | None = free
        self.holders = 0

    def hold(self) -> Lease:
        self.holders += 1
        return self

    def drop(self) -> None:
        self.holders -= 1
        if self.holders <= 0 and self.free is not None:
            free, self.free = self.free, None
            free()


class Run:
    """Frames ``[lo, hi)`` of ``batch`` for one participant and one op; frame ``i`` of
    the run is the group's outcome ``positions[i]`` and seals with counter
    ``counter0 + i``."""

    __slots__ = ("attempts", "batch", "counter0", "group", "hi", "kind", "lo", "nbytes",
                 "offsets", "op", "pidx", "positions", "queued", "remaining", "streams", "t0")

    def __init__(self, op: int, pidx: int, group: Group, t0: float, batch: FrameBatch,
                 offsets: array[int], lo: int, hi: int, counter0: int,
                 positions: Sequence[int] | None = None) -> None:
        self.op = op
        self.pidx = pidx
        self.group = group
        self.t0 = t0
        self.batch = batch
        self.offsets = offsets
        self.lo = lo
        self.hi = hi
        self.counter0 = counter0
        self.positions: Sequence[int] = range(lo, hi) if positions is None else positions
        n = hi - lo
        self.attempts = bytearray(n)  # dispatches per frame (<= supervision.dispatch_attempts)
        self.remaining = n
        self.nbytes = offsets[hi] - offsets[lo]
        # ssrc -> frames of that stream in this run (one stream: no loop in Python)
        ssrcs = batch.ssrcs[lo:hi]
        first = ssrcs[0] if n else 0
        if n and ssrcs.count(first) == n:
            self.streams: dict[int, int] = {first: n}
        else:
            self.streams = dict(Counter(ssrcs))
        self.kind: Kind = (0, False)
        self.queued = False  # admitted to a slot's queue (its streams are pending)

    def __len__(self) -> int:
        return self.hi - self.lo

    def size(self, i: int) -> int:
        return self.batch.lengths[self.lo + i]

    def keyframe(self, i: int) -> bool:
        return bool(self.batch.flags[self.lo + i] & wire.FLAG_KEYFRAME)

    def frame(self, i: int) -> Frame:
        return self.batch.frame(self.lo + i, self.offsets)

    def nbytes_of(self, a: int, b: int) -> int:
        return self.offsets[self.lo + b] - self.offsets[self.lo + a]


class Span:
    """Frames ``[pos, end)`` of a run, waiting in a slot's queue."""

    __slots__ = ("end", "pos", "run")

    def __init__(self, run: Run, pos: int, end: int) -> None:
        self.run = run
        self.pos = pos
        self.end = end


class Control:
    """A key operation, ordered with the frames of its participant's slot.
    ``on_done(control, result, error)`` runs once with the worker's answer; directory
    replays have none."""

    __slots__ = ("args", "on_done", "op", "pidx", "seq")

    def __init__(self, seq: int, pidx: int, op: str, args: tuple[Any, ...],
                 on_done: Callable[[Control, list[Any] | None, BaseException | None], None]
                 | None = None) -> None:
        self.seq = seq
        self.pidx = pidx
        self.op = op
        self.args = args
        self.on_done = on_done

    def finish(self, result: list[Any] | None, err: BaseException | None) -> None:
        cb, self.on_done = self.on_done, None
        if cb is not None:
            cb(self, result, err)


Segment = tuple[Run, int, int]  # frames [a, b) of a run


class InFlight:
    """One PACKED message at a worker: its runs' frame ranges, ring regions, and where
    each wire segment's outputs start in the reply region."""

    __slots__ = ("batch_id", "count", "nbytes", "nwire", "out_starts", "rep_leased", "rep_span",
                 "req_span", "segments", "spent", "wire_of")

    def __init__(self, batch_id: int, segments: list[Segment], count: int, nbytes: int,
                 req_span: tuple[int, int] | None, rep_span: tuple[int, int] | None,
                 out_starts: list[int], spent: float,
                 wire_of: list[int] | None = None) -> None:
        self.batch_id = batch_id
        self.segments = segments
        self.count = count
        self.nbytes = nbytes
        self.req_span = req_span
        self.rep_span = rep_span
        self.out_starts = out_starts
        self.spent = spent  # seconds this process spent building it (placement costs)
        # the wire segment each of ``segments`` travels in (runs of one participant and
        # op with consecutive counters share one), and how many there are
        self.wire_of = wire_of if wire_of is not None else list(range(len(segments)))
        self.nwire = self.wire_of[-1] + 1 if self.wire_of else 0
        # the reply region is held by zero-copy results (a Lease frees it, not the ledger)
        self.rep_leased = False
