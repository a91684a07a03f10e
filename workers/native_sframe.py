"""The engine's SFrame batch loop over the compiled extension (:mod:`framecrypt.workers.native`).

``sf_seal_run``/``sf_open_run`` (C, ``workers/csrc/fc_sframe.inc``) take the SFrame
frames they handle, between the caller's buffers, and stop at the first frame they
do not: no native key, a malformed header, an unknown KID, a short or unauthentic
frame, a counter past 2**64 - 1, an output that does not fit, and, when opening, a
counter at or below the highest its KID's replay window accepted (a possible
replay). That frame goes to the engine's full path (the pure reference: typed
errors, the window's verdict, error counts), then the C loop resumes after it.

Replay windows stay in Python (:class:`~framecrypt.workers.sframe.replay.ReplayWindow`).
The open loop gets each key's floor (:meth:`ReceiverContext.native_table`) and
opens only counters above it, and above every counter it opened before under the
same KID: frames the window could not refuse. It reports the runs of counters it
opened, which are accepted into the windows (:meth:`ReceiverContext.accept_runs`)
before the next frame goes anywhere, so every window sees the same accepts in the
same order as with the reference, frame by frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from framecrypt.transports import wire
from framecrypt.workers.native import NATIVE
from framecrypt.workers.native_loop import column_count, u8_column, u32_column

if TYPE_CHECKING:
    from framecrypt.workers.engine import Engine, Overflow

__all__ = ["run"]

_U64 = 1 << 64


def run(engine: Engine, op: int, pidx: int, counter0: int, epoch: int,
        lengths: Sequence[int], codecs: Sequence[int], flags: Sequence[int],
        ssrcs: Sequence[int], timestamps: Sequence[int], inp: memoryview, out: memoryview,
        tick: Callable[[], None] | None, stateless: bool, spill: Overflow,
        res: bytearray) -> int:
    """:meth:`Engine.run_packed` for SFrame; returns the bytes of ``out`` used."""
    assert NATIVE is not None
    enc = op == wire.OP_ENCRYPT
    count = column_count(enc, epoch, lengths, codecs, flags, ssrcs, timestamps)
    lengths, codecs = u32_column(lengths), u8_column(codecs)
    ncodecs = len(wire.CODECS)
    dec = op == wire.OP_DECRYPT and not stateless  # (stateless SFrame opens: ST_RETRY)
    full, pack = engine._full, wire.RES.pack_into
    k = i = o = 0
    while k < count:
        p = engine.participants.get(pidx)
        if p is not None:
            if enc:
                key = p.send_keys.get(p.send_kid)
                nk = key.native_key if key is not None else None
                if nk is not None and 0 <= counter0 < _U64:
                    k, i, o = NATIVE.sf_seal_run(nk, counter0, lengths, codecs, ncodecs, k,
                                                 inp, i, out, o, res)
            elif dec and p.receiver is not None:
                rx = p.receiver
                table = rx.native_table()
                if table:
                    k, i, o, runs = NATIVE.sf_open_run(table, lengths, codecs, ncodecs, k,
                                                       inp, i, out, o, res)
                    if runs:
                        rx.accept_runs(runs)
        if k >= count:
            break
        ln = lengths[k]
        ts = epoch if enc and epoch >= 0 else timestamps[k]
        status, off, n = full(op, pidx, codecs[k], flags[k], ssrcs[k], ts, counter0 + k,
                              inp[i : i + ln], out[o:], spill, stateless)
        if status == wire.ST_OK:
            off += o
            o += n
        pack(res, 12 * k, status, off, n)
        i += ln
        k += 1
        if tick is not None:
            tick()
    return o
