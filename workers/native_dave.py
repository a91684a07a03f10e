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

from framecrypt.transports import wire
from framecrypt.workers.native import NATIVE
from framecrypt.workers.native_loop import Batch, runner

__all__ = ["KINDS", "run"]

_KIND = {"opus": 0, "vp9": 0, "vp8": 1, "h264": 2, "h265": 3}  # fc_dave_run.inc DK_*
KINDS = bytes(_KIND.get(wire.CODECS[c], 255) if c < len(wire.CODECS) else 255
              for c in range(256))
OPUS = wire.CODECS.index("opus")


def _fast(b: Batch, k: int, i: int, o: int) -> tuple[int, int, int]:
    assert NATIVE is not None
    p = b.engine.participants.get(b.pidx)
    dp = p.dave if p is not None else None
    if dp is None:
        return k, i, o
    if b.op == wire.OP_ENCRYPT:
        plan = dp.seal_plan(b.counter0 + k)
        if plan is not None and type(plan[0]) is NATIVE.AesGcm:
            key, big, end, nxt, e = plan
            k_end = b.frames if nxt < 0 else min(b.frames, nxt - b.counter0)
            k, i, o, retries = NATIVE.dave_seal_run(key, big, end, KINDS, b.lengths, b.codecs,
                                                    k, k_end, b.inp, i, b.out, o, b.res)
            e.skew += retries
    elif b.op == wire.OP_DECRYPT and not b.stateless:
        core = dp.receiver._core
        if core is not None:
            got: tuple[int, int, int] = NATIVE.dave_open_run(
                core, b.engine.clock(), OPUS, b.lengths, b.codecs, k, b.inp, i, b.out, o,
                b.res)
            return got
    return k, i, o


run = runner(_fast)  # Engine.run_packed for DAVE
