"""Sealing in the broker's own process: the worker's batch loop on a local engine.

The local engine learns keys exactly as a worker does: it is fed the same key
operations (``keyset``, ``ratchet``, ``remove``; derivations run in a thread, never
on the event loop), and follows a worker's receiver ratchets by ratcheting itself.
No derived key ever travels back from a worker. Opening here is state-free (no
ratchets, failure counts or replay windows): what it cannot open is marked
:data:`~framecrypt.transports.wire.ST_RETRY` and goes to the participant's worker.
"""

from __future__ import annotations

import time
from typing import Any

from framecrypt.broker.runs import Run
from framecrypt.errors import FramecryptError
from framecrypt.workers.engine import Engine, EngineConfig

__all__ = ["InlineSealer"]


class InlineSealer:
    def __init__(self, config: EngineConfig, epoch: int) -> None:
        self.engine = Engine(config)
        self.epoch = epoch  # -1: the frames' own RTP timestamps go into the IVs

    def __repr__(self) -> str:
        return f"InlineSealer({self.engine!r})"

    def apply(self, op: str, args: tuple[Any, ...]) -> None:
        """A key operation a worker also gets (runs in a thread: PBKDF2). Errors are
        the worker's to report; here they leave the participant without that key,
        so its frames go to the worker."""
        try:
            self.engine.control(op, list(args))
        except FramecryptError:
            self.engine.control("remove", [args[0]])

    def run(self, run: Run) -> tuple[bytes, bytearray, bytes, float]:
        """Seal/open a run here: its result records, outputs, spilled outputs and
        the seconds it took."""
        b, lo, hi, offs = run.batch, run.lo, run.hi, run.offsets
        t0 = time.perf_counter()
        out = self.engine.output_buffer(run.op, hi - lo, run.nbytes)
        if lo == 0 and hi == len(b):  # the whole batch: its columns as they are
            cols = (b.lengths, b.codecs, b.flags, b.ssrcs, b.timestamps)
            inp = memoryview(b.data)
        else:
            cols = (b.lengths[lo:hi], b.codecs[lo:hi], b.flags[lo:hi], b.ssrcs[lo:hi],
                    b.timestamps[lo:hi])
            inp = memoryview(b.data)[offs[lo] : offs[hi]]
        res, overflow, _ = self.engine.run_packed(
            run.op, run.pidx, run.counter0, self.epoch, *cols, inp, memoryview(out),
            stateless=True)
        return (bytes(res), out, b"".join(overflow) if overflow else b"",
                time.perf_counter() - t0)
