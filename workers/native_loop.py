"""The engine's batch loop over the compiled extension (:mod:`framecrypt.workers.native`).

``seal_run``/``open_run`` (C) take the LiveKit/Jitsi frames they handle, between the
caller's buffers, and stop at the first frame they do not: a missing or failing key,
a malformed frame, SIF, LKTS, an output that does not fit. That frame goes to the
engine's full path (the pure reference: typed errors, ratchets, failure counts),
then the C loop resumes after it. So every error has one implementation, and the
outputs are those of the pure core byte for byte (``tests/test_native_diff.py``).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from framecrypt.transports import wire
from framecrypt.workers.livekit import frame as lkframe
from framecrypt.workers.livekit.codecs import KF_KIND
from framecrypt.workers.native import NATIVE, is_native_key

if TYPE_CHECKING:
    from framecrypt.workers.engine import Engine, Overflow

__all__ = ["NO_INFER", "Batch", "column_count", "drive", "infer", "key_table", "rules", "run",
           "runner", "u8_column", "u32_column"]


def rules(jitsi: bool) -> bytes:
    """768 bytes: the clear rule of each ``codec id << 1 | keyframe`` (the fixed clear
    byte count, the H.26x NAL scan, or stop: no such codec, the full path's
    MalformedFrame), then the keyframe inference kind of each codec id byte
    (``codecs.KF_KIND``, 0 elsewhere): ``open_run`` reads each frame's type from the
    frame, as :func:`~framecrypt.workers.livekit.codecs.sealed_keyframe` does."""
    assert NATIVE is not None
    nal = {"h264": NATIVE.CLEAR_NAL264, "h265": NATIVE.CLEAR_NAL265}
    table = bytearray([NATIVE.CLEAR_STOP]) * 512 + bytearray(256)
    for cid, codec in enumerate(wire.CODECS):
        for kf in (0, 1):
            n = lkframe._fixed_clear(codec, bool(kf), jitsi)
            table[cid << 1 | kf] = nal[codec] if n is None else n
        table[512 + cid] = KF_KIND.get(codec, 0)
    return bytes(table)


NO_INFER: list[str | None] = [None] * 256
_INFER: dict[bool, list[str | None]] = {}


def infer(jitsi: bool) -> list[str | None]:
    """The pure batch loop's counterpart of the kinds in :func:`rules`: by codec id
    byte, the codec name where the fixed clear count depends on the frame type (read
    from the frame with ``codecs.sealed_keyframe``), else None (the flag is used; both
    rules are the same, or the frame takes the full path)."""
    got = _INFER.get(jitsi)
    if got is None:
        got = [None] * 256
        for cid, codec in enumerate(wire.CODECS):
            pair = (lkframe._fixed_clear(codec, False, jitsi),
                    lkframe._fixed_clear(codec, True, jitsi))
            got[cid] = codec if pair[0] is not None and pair[0] != pair[1] else None
        _INFER[jitsi] = got
    return got


def key_table(engine: Engine, pidx: int) -> tuple[Any, ...] | None:
    """The open loop's keys: the native AES-GCM object of each KID byte, None where
    there is no key or the slot has failures (the full path keeps those counts).
    Cached per participant until its key ring's ``version`` changes."""
    p = engine.participants.get(pidx)
    if p is None or p.cryptor is None or engine._sif:
        return None
    ring = p.cryptor.ring
    got = engine._tables.get(pidx)
    if got is not None and got[0] is ring and got[1] == ring.version:
        return got[2]  # (the same ring object: a removed and re-added participant has
        # a new ring whose version counts from 0 again)
    tolerant = engine._tolerant
    keys: list[Any] = []
    for kid in range(256):
        ks = ring.get(kid)
        keys.append(None if ks is None or (tolerant and ring.failures(kid))
                    or not is_native_key(ks.aead) else ks.aead)
    table = tuple(keys)
    engine._tables[pidx] = (ring, ring.version, table)
    return table


_BUFFERS = (array, memoryview, bytes, bytearray)


def u32_column(col: Sequence[int]) -> Sequence[int]:
    """A column as a buffer of 4-byte items (the columns are buffers already, except
    in tests and other direct callers that pass lists)."""
    return col if isinstance(col, _BUFFERS) else array("I", col)


def u8_column(col: Sequence[int]) -> Sequence[int]:
    return col if isinstance(col, _BUFFERS) else bytes(col)


def column_count(enc: bool, epoch: int, *cols: Sequence[int]) -> int:
    """Frames in a run of columns ``lengths, codecs, flags, ssrcs, timestamps``: as the
    reference's ``zip()``, the shortest ends it (timestamps do not count when an epoch
    replaces them in sealing)."""
    return min(len(c) for c in (cols[:4] if enc and epoch >= 0 else cols))


class Batch(NamedTuple):
    """One :meth:`Engine.run_packed` call's arguments, the columns as buffers."""

    engine: Engine
    op: int
    pidx: int
    counter0: int
    epoch: int
    frames: int  # how many frames the columns hold (the shortest)
    lengths: Sequence[int]
    codecs: Sequence[int]
    flags: Sequence[int]
    ssrcs: Sequence[int]
    timestamps: Sequence[int]
    inp: memoryview
    out: memoryview
    res: bytearray
    stateless: bool


# a format's C loop from frame k, input offset i, output offset o: the new (k, i, o)
FastRun = Callable[[Batch, int, int, int], tuple[int, int, int]]


def drive(engine: Engine, op: int, pidx: int, counter0: int, epoch: int,
          lengths: Sequence[int], codecs: Sequence[int], flags: Sequence[int],
          ssrcs: Sequence[int], timestamps: Sequence[int], inp: memoryview, out: memoryview,
          tick: Callable[[], None] | None, stateless: bool, spill: Overflow,
          res: bytearray, fast: FastRun) -> int:
    """The stop contract, for every format's C loop (``fast``: this module's
    :func:`run`, :mod:`.native_sframe`, :mod:`.native_dave`): the C loop takes frames
    until one it does not, that frame goes to the engine's full path, the C loop resumes
    after it. Returns the bytes of ``out`` used (the rest is cleared)."""
    assert NATIVE is not None
    count = column_count(op == wire.OP_ENCRYPT, epoch, lengths, codecs, flags, ssrcs,
                         timestamps)
    b = Batch(engine, op, pidx, counter0, epoch, count, u32_column(lengths),
              u8_column(codecs), u8_column(flags), u32_column(ssrcs), u32_column(timestamps),
              inp, out, res, stateless)
    lengths, codecs, flags, ssrcs, timestamps = b.lengths, b.codecs, b.flags, b.ssrcs, \
        b.timestamps
    pack, full = wire.RES.pack_into, engine._full
    seal_epoch = op == wire.OP_ENCRYPT and epoch >= 0
    k = i = o = 0
    while k < count:
        k, i, o = fast(b, k, i, o)
        if k >= count:
            break
        ln = lengths[k]
        status, off, n = full(op, pidx, codecs[k], flags[k], ssrcs[k],
                              epoch if seal_epoch else timestamps[k], counter0 + k,
                              inp[i : i + ln], out[o:], spill, stateless)
        if status == wire.ST_OK:
            off += o
            o += n
        pack(res, 12 * k, status, off, n)
        i += ln
        k += 1
        if tick is not None:
            tick()
    NATIVE.zero_tail(out, o)  # (Engine.output_buffer leaves the buffer uninitialised)
    return o


def _fast(b: Batch, k: int, i: int, o: int) -> tuple[int, int, int]:
    assert NATIVE is not None
    engine = b.engine
    if b.op == wire.OP_ENCRYPT:
        key, index = engine._send_key(b.pidx)
        if is_native_key(key):
            got: tuple[int, int, int] = NATIVE.seal_run(
                key, index, engine._rules, engine._scheme, b.counter0, b.epoch, b.lengths,
                b.codecs, b.flags, b.ssrcs, b.timestamps, k, b.inp, i, b.out, o, b.res)
            return got
    elif b.op == wire.OP_DECRYPT:
        keys = key_table(engine, b.pidx)
        if keys is not None:
            got = NATIVE.open_run(keys, engine._rules, b.lengths, b.codecs, b.flags, k, b.inp,
                                  i, b.out, o, b.res)
            return got
    return k, i, o


Run = Callable[..., int]  # Engine.run_packed's native part: (engine, op, …, res) -> bytes used


def runner(fast: FastRun) -> Run:
    """A format's ``run(engine, op, pidx, counter0, epoch, lengths, codecs, flags, ssrcs,
    timestamps, inp, out, tick, stateless, spill, res) -> bytes of out used``: its C loop
    ``fast`` under :func:`drive`."""

    def run(engine: Engine, op: int, pidx: int, counter0: int, epoch: int,
            lengths: Sequence[int], codecs: Sequence[int], flags: Sequence[int],
            ssrcs: Sequence[int], timestamps: Sequence[int], inp: memoryview,
            out: memoryview, tick: Callable[[], None] | None, stateless: bool,
            spill: Overflow, res: bytearray) -> int:
        return drive(engine, op, pidx, counter0, epoch, lengths, codecs, flags, ssrcs,
                     timestamps, inp, out, tick, stateless, spill, res, fast)

    return run


run = runner(_fast)  # LiveKit/Jitsi
