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

from framecrypt.transports import wire
from framecrypt.workers.native import NATIVE
from framecrypt.workers.native_loop import Batch, runner

__all__ = ["run"]

_U64 = 1 << 64


def _fast(b: Batch, k: int, i: int, o: int) -> tuple[int, int, int]:
    assert NATIVE is not None
    p = b.engine.participants.get(b.pidx)
    if p is None:
        return k, i, o
    if b.op == wire.OP_ENCRYPT:
        key = p.send_keys.get(p.send_kid)
        nk = key.native_key if key is not None else None
        if nk is not None and 0 <= b.counter0 < _U64:
            got: tuple[int, int, int] = NATIVE.sf_seal_run(
                nk, b.counter0, b.lengths, b.codecs, len(wire.CODECS), k, b.inp, i, b.out, o,
                b.res)
            return got
    elif b.op == wire.OP_DECRYPT and not b.stateless and p.receiver is not None:
        rx = p.receiver  # (stateless SFrame opens: ST_RETRY, on the full path)
        table = rx.native_table()
        if table:
            k, i, o, runs = NATIVE.sf_open_run(table, b.lengths, b.codecs, len(wire.CODECS),
                                               k, b.inp, i, b.out, o, b.res)
            if runs:
                rx.accept_runs(runs)
    return k, i, o


run = runner(_fast)  # Engine.run_packed for SFrame
