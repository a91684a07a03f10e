"""The DAVE engine's batch loop over the compiled extension (``fc_dave_run.inc``).

As :mod:`.native_loop` does for LiveKit/Jitsi: ``dave_seal_run`` seals a run of one
sender's frames with consecutive big nonces (the broker counters of
:class:`~framecrypt.workers.dave.contexts.DaveParticipant`, H.26x retries added to the
epoch's skew), ``dave_open_run`` opens them through the sender's C receiver
(``fc_dave_rx.inc``); each stops at the first frame it does not take (AV1, passthrough,
a generation or epoch boundary, a frame that does not open, an output that does not
fit), which goes to the engine's full path (the reference, typed errors), then the run
resumes after it. Outputs are the reference's byte for byte
(``tests/test_dave_native_state.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from framecrypt.transports import wire
from framecrypt.workers.native import NATIVE
from framecrypt.workers.native_loop import column_count, u8_column, u32_column

if TYPE_CHECKING:
    from framecrypt.workers.engine import Engine, Overflow

__all__ = ["KINDS", "run"]

_KIND = {"opus": 0, "vp9": 0, "vp8": 1, "h264": 2, "h265": 3}  # fc_dave_run.inc DK_*
KINDS = bytes(_KIND.get(wire.CODECS[c], 255) if c < len(wire.CODECS) else 255
              for c in range(256))
OPUS = wire.CODECS.index("opus")


def run(engine: Engine, op: int, pidx: int, counter0: int, epoch: int,
        lengths: Sequence[int], codecs: Sequence[int], flags: Sequence[int],
        ssrcs: Sequence[int], timestamps: Sequence[int], inp: memoryview, out: memoryview,
        tick: Callable[[], None] | None, stateless: bool, spill: Overflow,
        res: bytearray) -> int:
    """:meth:`Engine.run_packed` for DAVE; returns the bytes of ``out`` used."""
    assert NATIVE is not None
    enc = op == wire.OP_ENCRYPT
    count = column_count(enc, epoch, lengths, codecs, flags, ssrcs, timestamps)
    lengths, codecs = u32_column(lengths), u8_column(codecs)
    p = engine.participants.get(pidx)
    dp = p.dave if p is not None else None
    pack = wire.RES.pack_into
    k = i = o = 0
    while k < count:
        if dp is not None and enc:
            plan = dp.seal_plan(counter0 + k)
            if plan is not None and type(plan[0]) is NATIVE.AesGcm:
                key, big, end, nxt, e = plan
                k_end = count if nxt < 0 else min(count, nxt - counter0)
                k, i, o, retries = NATIVE.dave_seal_run(key, big, end, KINDS, lengths, codecs,
                                                        k, k_end, inp, i, out, o, res)
                e.skew += retries
        elif dp is not None and op == wire.OP_DECRYPT and not stateless:
            core = dp.receiver._core
            if core is not None:
                k, i, o = NATIVE.dave_open_run(core, engine.clock(), OPUS, lengths, codecs, k,
                                               inp, i, out, o, res)
        if k >= count:
            break
        ln = lengths[k]
        ts = epoch if enc and epoch >= 0 else timestamps[k]
        status, off, n = engine._full(op, pidx, codecs[k], flags[k], ssrcs[k], ts,
                                      counter0 + k, inp[i : i + ln], out[o:], spill, stateless)
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
