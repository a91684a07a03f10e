"""300,000 malformed worker replies into a running broker, while real frames and key
operations are in flight: no exception escapes, every call still gets its outcome (0
unresolved futures), credit adds up, and the pool serves the next frame.

The replies come in through the broker's own entry point for a worker's messages
(``pool.service.on_message`` with the worker's identity), so every one reaches the
parser and the ledger, as if the worker had been compromised.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import msgpack
import pytest
from pool_helpers import key_for, open_sealed, run

from framecrypt import Frame, Pool
from framecrypt.batch import FrameBatch
from framecrypt.broker.runs import Control, InFlight
from framecrypt.transports import wire

pytestmark = pytest.mark.timeout(300)

V = wire.VERSION
KINDS = [wire.READY, wire.RESULT, wire.ACK, wire.EVENT, wire.PONG, wire.PACKED, 99]
INTS = [0, 1, -1, 2, 7, 255, 2**31, 2**32 - 1, 2**32, 2**63, 2**64 - 1, True, None, 1.5]


def _value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if r < 0.45:
        return rng.choice(INTS)
    if r < 0.6:
        return rng.choice(["", "ratcheted", "KeyMissing", "hkdf", "x" * 40, "\u00e9"])
    if r < 0.7:
        return rng.randbytes(rng.randrange(0, 40))
    if depth < 2:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {}


def garbage(rng: random.Random, seqs: list[int], batch_ids: list[int]) -> list[bytes]:
    """One hostile message, often close to a valid reply to something in flight."""
    r = rng.random()
    if r < 0.05:
        return [rng.randbytes(rng.randrange(0, 64))]
    if r < 0.08:
        return []
    kind = rng.choice(KINDS)
    if kind == wire.ACK and seqs and rng.random() < 0.5:
        head = [V, kind, rng.choice(seqs), rng.choice([True, False, 1]),
                *[_value(rng) for _ in range(rng.randrange(0, 3))]]
    elif kind == wire.RESULT and batch_ids and rng.random() < 0.5:
        n = rng.randrange(0, 6)
        head = [V, kind, rng.choice(batch_ids), n, [rng.choice([0, 10, 2**40])],
                [[]], rng.choice([0.0, -1.0, 5, "x"])]
        return [msgpack.packb(head), rng.randbytes(12 * n + rng.choice([0, 0, 1])),
                rng.randbytes(rng.randrange(0, 8))][: rng.randrange(1, 4)]
    elif kind == wire.EVENT:
        head = [V, kind, [rng.choice(["ratcheted", "KeyMissing", "Nope", 5]),
                          rng.choice([0, 1, 2**32, -1]),
                          *[rng.choice(INTS) for _ in range(rng.randrange(0, 3))]]]
    else:
        head = [rng.choice([V, V, V, 0, 2]), kind,
                *[_value(rng) for _ in range(rng.randrange(0, 7))]]
    try:
        parts = [msgpack.packb(head)]
    except (TypeError, ValueError, OverflowError):
        parts = [rng.randbytes(8)]
    return parts + [rng.randbytes(rng.randrange(0, 30)) for _ in range(rng.randrange(0, 3))]


@pytest.mark.parametrize("transport", ["shm", "ipc"])
def test_300k_garbage_replies_leave_no_call_unresolved(transport: str) -> None:
    async def main() -> None:
        async with Pool(workers=1, transport=transport, placement="pool",
                        max_frames_in_flight=4096) as pool:
            await pool.set_key("a", key_for("a"))
            svc = pool.service
            sl = svc.ledger.slots[0]
            identity = svc.identity[0]
            rng = random.Random(1234 + len(transport))
            payloads = [bytes([0x90]) * rng.randrange(20, 400) for _ in range(64)]
            calls: list[asyncio.Future[Any]] = []
            sent = 0
            while sent < 300_000:
                # real work in flight: batches, single frames, key operations
                calls.append(asyncio.ensure_future(
                    pool.encrypt_batch("a", FrameBatch.of(payloads, codec="vp8", ssrc=3))))
                calls.append(asyncio.ensure_future(pool.encrypt("a", Frame(b"\x90" * 50,
                                                                           "vp8"))))
                if rng.random() < 0.2:
                    calls.append(asyncio.ensure_future(pool.ratchet_key("a")))
                await asyncio.sleep(0)
                seqs = [e.seq for e in sl.inflight if isinstance(e, Control)]
                ids = [e.batch_id for e in sl.inflight if isinstance(e, InFlight)]
                for _ in range(2000):
                    svc.on_message(identity, garbage(rng, seqs, ids))
                sent += 2000
            done, pending = await asyncio.wait(calls, timeout=60)
            assert not pending, f"{len(pending)} calls never got an outcome"
            for t in done:
                t.exception()  # an outcome each: a result or a typed error
            st = pool.stats()
            assert st["protocol_errors"] > 100_000
            assert st["frames_in_flight"] == 0 and st["bytes_in_flight"] == 0
            assert st["frames_submitted"] == st["frames_ok"] + st["frames_failed"]
            # the pool is not poisoned: a fresh key, a frame sealed and opened
            await pool.set_key("a", key_for("a"))
            f = Frame(b"\x90" * 60, "vp8")
            assert open_sealed("a", await pool.encrypt("a", f), f) == f.data
            assert st["worker_deaths"] == 0 or transport == "ipc"
    run(main, timeout=280)
