"""Columnar batches: many frames of one participant with no Python object per frame.

:class:`FrameBatch` holds the payloads back to back in one buffer and the per-frame
fields in arrays; :meth:`framecrypt.Pool.encrypt_batch` / ``decrypt_batch`` ship it
to a worker as one copy into the request ring and one message, and hand back a
:class:`BatchResult` that holds the outputs the same way (one buffer, one packed
result array). The broker does O(1) Python work per batch instead of per frame —
the path for gateways that handle frames in bulk::

    >>> from framecrypt.batch import FrameBatch
    >>> b = FrameBatch.of([b"\\x90" * 40, b"\\x10" * 30], codec="vp8", ssrc=7)
    >>> len(b), b.nbytes
    (2, 70)
    >>> b.append(b"\\xf8" * 20, codec="opus", ssrc=8)
    >>> b.frame(2)
    Frame(opus delta, 20 B, ssrc=8, ts=0)
"""

from __future__ import annotations

import weakref
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import accumulate
from typing import Any, Protocol

from framecrypt.errors import (
    AuthenticationFailed,
    CounterExhausted,
    DroppedFrame,
    FramecryptError,
    InvalidArgument,
    KeyInvalidated,
    MalformedFrame,
    ReplayedFrame,
    ResultReleased,
    UnknownKey,
    UnsupportedCodec,
)
from framecrypt.frame import Frame
from framecrypt.transports import wire
from framecrypt.workers.native import NATIVE

__all__ = ["BatchResult", "FrameBatch", "InlineBatcher", "RingBatch"]

_KEYFRAME = wire.FLAG_KEYFRAME  # bit 0: FrameBatch.of maps keyframe flags with bool()


def _codec_id(codec: str) -> int:
    if not isinstance(codec, str):
        raise InvalidArgument("codec must be a str")
    cid = wire.CODEC_ID.get(codec)
    if cid is None:
        raise UnsupportedCodec(codec)
    return cid


def _column(value: int | Iterable[int], n: int) -> array[int]:
    """A u32 column: one shared value, or one per frame (taken mod 2**32)."""
    if type(value) is int:
        return array("I", [value & 0xFFFFFFFF]) * n
    try:
        col = array("I", value)  # type: ignore[arg-type]  # C speed when all fit
    except (OverflowError, TypeError):
        try:
            col = array("I", (v & 0xFFFFFFFF for v in value))  # type: ignore[union-attr]
        except TypeError:
            raise InvalidArgument("ssrcs and timestamps must be ints") from None
    if len(col) != n:
        raise ValueError(f"expected {n} values, got {len(col)}")
    return col


class FrameBatch:
    """Frames of one participant, columnar: ``data`` (payloads back to back),
    ``lengths``, ``codecs`` (codec numbers, one byte each), ``flags`` (bit 0 =
    keyframe), ``ssrcs`` and ``timestamps``. Build with :meth:`of` (vectorised) or
    :meth:`append` (one frame at a time)."""

    __slots__ = ("codecs", "data", "flags", "lengths", "ssrcs", "timestamps")

    def __init__(self) -> None:
        self.data = bytearray()
        self.lengths: array[int] = array("I")
        self.codecs = bytearray()
        self.flags = bytearray()
        self.ssrcs: array[int] = array("I")
        self.timestamps: array[int] = array("I")

    @classmethod
    def of(cls, payloads: Sequence[bytes], codec: str | Sequence[str] = "vp8", *,
           keyframes: bool | Sequence[bool] = False, ssrc: int | Sequence[int] = 0,
           timestamps: int | Sequence[int] = 0) -> FrameBatch:
        """A batch from payloads and per-frame (or shared) fields, built without a
        Python-level loop where a field is shared."""
        b = cls()
        try:
            b.data = bytearray().join(payloads)
        except TypeError:
            raise InvalidArgument("payloads must be bytes-like") from None
        b._columns(payloads, codec, keyframes, ssrc, timestamps)
        return b

    def _columns(self, payloads: Sequence[bytes], codec: str | Sequence[str],
                 keyframes: bool | Sequence[bool], ssrc: int | Sequence[int],
                 timestamps: int | Sequence[int]) -> None:
        """Set the per-frame columns of ``payloads`` (checked; no Python loop where a
        field is shared)."""
        b, n = self, len(payloads)
        b.lengths = array("I", map(len, payloads))
        if isinstance(codec, str):
            b.codecs = bytearray([_codec_id(codec)]) * n
        else:
            try:
                b.codecs = bytearray(map(wire.CODEC_ID.__getitem__, codec))
            except (KeyError, TypeError) as e:
                raise UnsupportedCodec(str(e.args[0])[:32]) from None
        if isinstance(keyframes, bool):
            b.flags = bytearray([_KEYFRAME if keyframes else 0]) * n
        else:
            b.flags = bytearray(map(bool, keyframes))  # FLAG_KEYFRAME is bit 0
        b.ssrcs = _column(ssrc, n)
        b.timestamps = _column(timestamps, n)
        if not (len(b.codecs) == len(b.flags) == n):
            raise ValueError("every per-frame field needs one value per payload")

    @classmethod
    def from_frames(cls, frames: Iterable[Frame]) -> FrameBatch:
        """A batch of :class:`~framecrypt.Frame` objects, each checked: a wrong type
        is :class:`~framecrypt.errors.InvalidArgument`, an unknown codec
        :class:`~framecrypt.errors.UnsupportedCodec`, at once."""
        b = cls()
        for f in frames:
            if not isinstance(f, Frame):
                raise InvalidArgument("expected a Frame")
            if not isinstance(f.keyframe, bool | int):
                raise InvalidArgument("frame keyframe must be a bool")
            b.append(f.data, f.codec, keyframe=bool(f.keyframe), ssrc=f.ssrc,
                     timestamp=f.timestamp)
        return b

    def append(self, data: bytes, codec: str = "vp8", *, keyframe: bool = False,
               ssrc: int = 0, timestamp: int = 0) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidArgument("frame data must be bytes-like")
        if type(ssrc) is not int or type(timestamp) is not int:
            raise InvalidArgument("ssrc and timestamp must be ints")
        self.codecs.append(_codec_id(codec))
        self.data += data
        self.lengths.append(len(data))
        self.flags.append(_KEYFRAME if keyframe else 0)
        self.ssrcs.append(ssrc & 0xFFFFFFFF)
        self.timestamps.append(timestamp & 0xFFFFFFFF)

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def nbytes(self) -> int:
        return len(self.data)

    def offsets(self) -> array[int]:
        """``len(self) + 1`` offsets of the payloads in :attr:`data`."""
        if NATIVE is not None and isinstance(self.lengths, array):
            got = array("Q")
            got.frombytes(NATIVE.column_offsets(self.lengths))
            return got
        return array("Q", accumulate(self.lengths, initial=0))

    def frame(self, i: int, offsets: Sequence[int] | None = None) -> Frame:
        """Frame ``i`` as a :class:`~framecrypt.Frame` (a copy; for slow paths)."""
        if offsets is None:
            a = sum(self.lengths[:i])
        else:
            a = offsets[i]
        return Frame(bytes(self.data[a : a + self.lengths[i]]), wire.CODECS[self.codecs[i]],
                     bool(self.flags[i] & _KEYFRAME), self.ssrcs[i], self.timestamps[i])

    def check(self, max_frame_bytes: int) -> None:
        """Raise a typed error before anything is admitted if the batch is unusable."""
        n = len(self.lengths)
        if not (len(self.codecs) == len(self.flags) == len(self.ssrcs) ==
                len(self.timestamps) == n):
            raise MalformedFrame("batch columns differ in length")
        if NATIVE is not None and isinstance(self.lengths, array):
            total, longest, top_codec = NATIVE.column_stats(self.lengths, self.codecs)
        else:
            total = sum(self.lengths)
            longest = max(self.lengths, default=-1)
            top_codec = max(self.codecs, default=-1)
        if total != len(self.data):
            raise MalformedFrame("batch lengths do not add up to its data")
        if top_codec >= len(wire.CODECS):
            raise UnsupportedCodec(f"codec number {top_codec}")
        if longest > max_frame_bytes:
            raise MalformedFrame("frame larger than max_frame_bytes")

    def __repr__(self) -> str:
        return f"FrameBatch({len(self)} frames, {self.nbytes} B)"


class RingBatch(FrameBatch):
    """A :class:`FrameBatch` over a fixed buffer that frames are written into in place:
    what :meth:`framecrypt.Pool.reserve` hands out, its buffer a reservation in the
    shared request ring of the worker that owns the participant (zero-copy ingress:
    the worker reads the frames where they were written). Write the next frame into
    :attr:`tail` (``sock.recv_into(batch.tail)``) and :meth:`commit` its size, or
    :meth:`put` bytes (one copy). The reservation is given back when the batch has
    been through one ``encrypt_batch``/``decrypt_batch`` (or on :meth:`release`, or
    when the batch is collected); using it after that raises
    :class:`~framecrypt.errors.ResultReleased`."""

    __slots__ = ("__weakref__", "_buf", "_finalizer", "_used", "home")

    def __init__(self, buf: memoryview, release: Callable[[], None] | None = None,
                 home: object = None) -> None:
        self._buf = buf
        self._used = 0
        self.home = home  # where the buffer lies (the pool's business)
        self.lengths = array("I")
        self.codecs = bytearray()
        self.flags = bytearray()
        self.ssrcs = array("I")
        self.timestamps = array("I")
        self._finalizer = weakref.finalize(self, release) if release is not None else None

    @property
    def data(self) -> memoryview:  # type: ignore[override]  # (the frames written so far)
        if self._buf is None:
            raise ResultReleased("this batch's reservation was given back")
        return self._buf[: self._used]

    @property
    def capacity(self) -> int:
        return len(self._buf) if self._buf is not None else 0

    @property
    def tail(self) -> memoryview:
        """The free part of the buffer: write the next frame here, then :meth:`commit`."""
        if self._buf is None:
            raise ResultReleased("this batch's reservation was given back")
        return self._buf[self._used :]

    def commit(self, n: int, codec: str = "vp8", *, keyframe: bool = False, ssrc: int = 0,
               timestamp: int = 0) -> None:
        """The next ``n`` bytes of :attr:`tail` are a frame."""
        if type(n) is not int or not 0 <= n <= len(self.tail):
            raise InvalidArgument("commit: n must be an int within the free space")
        if type(ssrc) is not int or type(timestamp) is not int:
            raise InvalidArgument("ssrc and timestamp must be ints")
        self.codecs.append(_codec_id(codec))
        self._used += n
        self.lengths.append(n)
        self.flags.append(_KEYFRAME if keyframe else 0)
        self.ssrcs.append(ssrc & 0xFFFFFFFF)
        self.timestamps.append(timestamp & 0xFFFFFFFF)

    def put(self, data: bytes | bytearray | memoryview, codec: str = "vp8", *,
            keyframe: bool = False, ssrc: int = 0, timestamp: int = 0) -> None:
        """Copy ``data`` in as the next frame (``ValueError`` when it does not fit)."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidArgument("frame data must be bytes-like")
        n = len(data)
        tail = self.tail
        if n > len(tail):
            raise ValueError(f"frame of {n} B does not fit the {len(tail)} B left")
        tail[:n] = data
        self.commit(n, codec, keyframe=keyframe, ssrc=ssrc, timestamp=timestamp)

    def append(self, data: bytes, codec: str = "vp8", *, keyframe: bool = False,
               ssrc: int = 0, timestamp: int = 0) -> None:
        self.put(data, codec, keyframe=keyframe, ssrc=ssrc, timestamp=timestamp)

    def put_many(self, payloads: Sequence[bytes], codec: str | Sequence[str] = "vp8", *,
                 keyframes: bool | Sequence[bool] = False, ssrc: int | Sequence[int] = 0,
                 timestamps: int | Sequence[int] = 0) -> None:
        """Copy many frames in (fields as :meth:`FrameBatch.of`), one ``memcpy`` each in
        C; all or nothing (``ValueError`` when they do not fit)."""
        cols = FrameBatch()
        try:
            cols._columns(payloads, codec, keyframes, ssrc, timestamps)
        except TypeError:
            raise InvalidArgument("payloads must be bytes-like") from None
        tail = self.tail
        if NATIVE is not None and isinstance(payloads, list | tuple):
            n = NATIVE.gather(payloads, tail)
        else:
            n = sum(cols.lengths)
            if n > len(tail):
                raise ValueError(f"{n} bytes of frames do not fit the {len(tail)} left")
            pos = 0
            for p in payloads:
                tail[pos : pos + len(p)] = p
                pos += len(p)
        self._used += n
        self.lengths += cols.lengths
        self.codecs += cols.codecs
        self.flags += cols.flags
        self.ssrcs += cols.ssrcs
        self.timestamps += cols.timestamps

    def release(self) -> None:
        """Give the buffer back (idempotent); the batch is unusable afterwards."""
        if self._buf is None:
            return
        self._buf = None  # type: ignore[assignment]
        if self._finalizer is not None:
            self._finalizer()

    def __repr__(self) -> str:
        return f"RingBatch({len(self)} frames, {self._used}/{self.capacity} B)"


def status_error(status: int, arg: int) -> FramecryptError:
    """The typed error a worker's result status stands for."""
    if status == wire.ST_AUTH:
        return AuthenticationFailed()
    if status == wire.ST_UNKNOWN_KEY:
        return UnknownKey(arg)
    if status == wire.ST_MALFORMED:
        return MalformedFrame("malformed frame")
    if status == wire.ST_KEY_INVALID:
        return KeyInvalidated(arg)
    if status == wire.ST_DROPPED:
        return DroppedFrame("server-injected frame is not a known blank")
    if status == wire.ST_REPLAYED:
        return ReplayedFrame(arg)
    if status == wire.ST_COUNTER:
        return CounterExhausted(arg)
    return FramecryptError("internal error in a worker")


class _Lease(Protocol):
    def drop(self) -> None: ...


class OutputPiece:
    """Outputs of frames ``[start, end)``: the reply region (``buf``, whose byte 0 was
    at ``base``: copied out of the ring, or a view into it held by ``lease`` for a
    zero-copy result), the outputs that did not fit (``overflow``) and the packed
    result records of those frames (``res``)."""

    __slots__ = ("base", "buf", "end", "lease", "overflow", "res", "start")

    def __init__(self, start: int, end: int, res: bytes | bytearray,
                 buf: bytes | bytearray | memoryview, base: int, overflow: bytes,
                 lease: _Lease | None = None) -> None:
        self.start = start
        self.end = end
        self.res = res
        self.buf = buf
        self.base = base
        self.overflow = overflow
        self.lease = lease


def drop_pieces(pieces: list[OutputPiece]) -> None:
    """Let go of the ring regions of zero-copy pieces (once)."""
    for p in pieces:
        lease, p.lease = p.lease, None
        if lease is not None:
            p.buf = b""
            lease.drop()


class BatchResult:
    """The outcomes of a :class:`FrameBatch`, in order: ``result[i]`` is the output
    bytes of frame ``i`` or the typed error it failed with. ``ok``/``failed`` count
    them; :meth:`payloads` gives every output or raises the first error; :meth:`view`
    is a zero-copy view of one output.

    A *zero-copy* result (``encrypt_batch(..., zero_copy=True)``) holds its outputs
    where the workers wrote them, in the pool's shared reply ring: :meth:`view` costs
    no copy, and the ring space is the result's until :meth:`release` (or the end of
    a ``with`` block, or garbage collection), after which reading raises
    :class:`~framecrypt.errors.ResultReleased` and views taken earlier must not be
    used. Unreleased results hold ring space: the pool waits for it (backpressure).
    """

    __slots__ = ("__weakref__", "_finalizer", "_n", "_outcomes", "_pieces", "_starts",
                 "failed")

    def __init__(self, n: int, outcomes: list[object], pieces: list[OutputPiece],
                 failed: int) -> None:
        self._n = n
        self._outcomes = outcomes  # per-frame outcomes delivered off the batch path
        self._pieces = sorted(pieces, key=lambda p: p.start)
        self._starts = [p.start for p in self._pieces]
        self.failed = failed
        self._finalizer: weakref.finalize[Any, Any] | None = None
        if any(p.lease is not None for p in self._pieces):
            self._finalizer = weakref.finalize(self, drop_pieces, self._pieces)

    @property
    def zero_copy(self) -> bool:
        """Whether outputs are views into the pool's reply ring (until released)."""
        return self._finalizer is not None

    def release(self) -> None:
        """Give the ring space of a zero-copy result back to the pool (idempotent;
        nothing to do for other results)."""
        if self._finalizer is not None:
            self._finalizer()
            self._pieces = []
            self._starts = []

    def __enter__(self) -> BatchResult:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @property
    def ok(self) -> int:
        return self._n - self.failed

    def __len__(self) -> int:
        return self._n

    def _locate(self, i: int) -> tuple[OutputPiece, int, int, int]:
        k = bisect_right(self._starts, i) - 1
        if k < 0 or i >= self._pieces[k].end:
            raise LookupError(i)
        p = self._pieces[k]
        status, off, n = wire.RES.unpack_from(p.res, (i - p.start) * wire.RES.size)
        return p, status, off, n

    def view(self, i: int) -> memoryview:
        """Frame ``i``'s output without a copy; raises its error if it failed."""
        if not -self._n <= i < self._n:
            raise IndexError(i)
        if self._finalizer is not None and not self._finalizer.alive:
            raise ResultReleased("this zero-copy result was released")
        i %= self._n
        o = self._outcomes[i]
        if o is not None:
            if isinstance(o, BaseException):
                raise o
            return memoryview(o)  # type: ignore[arg-type]
        p, status, off, n = self._locate(i)
        if status == wire.ST_OK:
            return memoryview(p.buf)[off - p.base : off - p.base + n]
        if status == wire.ST_INLINE:
            return memoryview(p.overflow)[off : off + n]
        raise status_error(status, off)

    def __getitem__(self, i: int) -> bytes | FramecryptError:
        try:
            return bytes(self.view(i))
        except FramecryptError as e:
            return e

    def __iter__(self) -> Iterator[bytes | FramecryptError]:
        for i in range(self._n):
            yield self[i]

    def payloads(self) -> list[bytes]:
        """Every output, in order; raises the first frame's error if any failed."""
        return [bytes(self.view(i)) for i in range(self._n)]

    def errors(self) -> list[tuple[int, FramecryptError]]:
        return [(i, o) for i, o in enumerate(self) if isinstance(o, FramecryptError)]

    def __repr__(self) -> str:
        return f"BatchResult({self._n} frames, {self.failed} failed)"


class InlineBatcher:
    """The pure core over :class:`FrameBatch` in the calling thread: the loop a crypto
    worker runs, without a pool (no processes, no asyncio). Owns the send counters the
    way a :class:`~framecrypt.Pool` does (LiveKit/Jitsi IV = ssrc ‖ random epoch ‖
    counter per participant; SFrame CTRs from a random 48-bit start)::

        >>> from framecrypt import livekit
        >>> ib = InlineBatcher()
        >>> ib.set_key("alice", b"shared secret")
        >>> sealed = ib.seal("alice", FrameBatch.of([b"\\x90" * 40], codec="vp8"))
        >>> opened = ib.open("alice", FrameBatch.of(sealed.payloads(), codec="vp8"))
        >>> opened.payloads() == [b"\\x90" * 40]
        True
    """

    def __init__(self, format: str = "livekit", *, suite: int = 4) -> None:
        import secrets

        from framecrypt.workers.engine import Engine, EngineConfig

        self._engine = Engine(EngineConfig(format=format, suite=suite))
        self._sframe = format == "sframe"
        self._epoch = -1 if self._sframe else secrets.randbits(32)
        self._randbits = secrets.randbits
        self._pidx: dict[str, int] = {}
        self._counters: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"InlineBatcher({self._engine.config.format}, participants={len(self._pidx)})"

    def set_key(self, participant: str, material: bytes | str, index: int = 0, *,
                kdf: str | None = None) -> None:
        """Install key ``index`` of ``participant`` and make it the one to seal with
        (LiveKit: HKDF of the material unless ``kdf="pbkdf2"``; SFrame: base key)."""
        pidx = self._pidx.setdefault(participant, len(self._pidx))
        self._engine.control("keyset", [pidx, participant, index, material, kdf, 0, True])

    def _run(self, participant: str, batch: FrameBatch, op: int) -> BatchResult:

        pidx = self._pidx.get(participant)
        if pidx is None:
            raise UnknownKey(0)
        n = len(batch)
        batch.check(1 << 30)
        counter0 = 0
        if op == wire.OP_ENCRYPT:
            counter0 = self._counters.get(pidx, -1)
            if counter0 < 0:
                counter0 = self._randbits(48) if self._sframe else 0
            self._counters[pidx] = counter0 + n
        out = self._engine.output_buffer(op, n, batch.nbytes)
        res, overflow, _ = self._engine.run_packed(
            op, pidx, counter0, self._epoch, batch.lengths, batch.codecs, batch.flags,
            batch.ssrcs, batch.timestamps, memoryview(batch.data), memoryview(out))
        statuses = res[0 :: wire.RES.size]
        failed = n - statuses.count(wire.ST_OK) - statuses.count(wire.ST_INLINE)
        piece = OutputPiece(0, n, res, out, 0, b"".join(overflow))
        return BatchResult(n, [None] * n, [piece], failed)

    def seal(self, participant: str, batch: FrameBatch) -> BatchResult:
        return self._run(participant, batch, wire.OP_ENCRYPT)

    def open(self, participant: str, batch: FrameBatch) -> BatchResult:
        return self._run(participant, batch, wire.OP_DECRYPT)
