"""framecrypt's DAVE batch path, two more ways than one pool batch at a time
(:class:`~.dave.FramecryptPoolBatch`):

- :class:`FramecryptBatchLoop`: the columnar loop a worker runs per batch
  (``Engine.run_packed``: :mod:`framecrypt.workers.native_dave` over the extension, the
  pure loop with ``FRAMECRYPT_NATIVE=0``), in this process, on one core: the per-frame
  cost of the batch path without the broker/worker round trip. Building the columns
  (the join of the payloads) is timed; the outputs stay in the batch's buffer, as a
  columnar consumer reads them (one ``bytes`` per frame is cut out only for the check).
- :class:`FramecryptPoolPipelined`: ``Pool(format="dave")`` with the workload cut into
  :data:`CHUNKS` batches of :data:`CHUNKS` participants, all in flight at once (a
  gateway's steady state): the pool's throughput per frame, where one batch at a time
  measures its round trip.
"""

from __future__ import annotations

import asyncio
import secrets
import struct
import time
from array import array
from collections.abc import Sequence
from typing import Any

from .dave import Call, Contender, Workload

CHUNKS = 8
_RES = struct.Struct("<BxxxII")


def _chunks(frames: Sequence[bytes]) -> list[Sequence[bytes]]:
    step = -(-len(frames) // CHUNKS)
    return [frames[i : i + step] for i in range(0, len(frames), step)]


class _Outputs(Sequence[bytes]):
    """A batch's outputs where the loop left them (offsets into its buffer), as a
    columnar consumer reads them; a frame is cut out when indexed (the runner's check,
    after the timing)."""

    def __init__(self, res: bytearray, out: memoryview, spill: bytes, wire: Any) -> None:
        self.res, self.out, self.spill, self.wire = res, out, spill, wire

    def __len__(self) -> int:
        return len(self.res) // _RES.size

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self)))]
        if not -len(self) <= k < len(self):
            raise IndexError(k)
        status, off, size = _RES.unpack_from(self.res, _RES.size * (k % len(self)))
        if status == self.wire.ST_OK:
            return bytes(self.out[off : off + size])
        if status == self.wire.ST_INLINE:
            return self.spill[off : off + size]
        raise AssertionError(f"batch loop status {status}")


class FramecryptBatchLoop(Contender):
    """One in-process DAVE engine: seal as a bench-only sender, open as the member."""

    name = "framecrypt-batch-loop"

    async def start(self, call: Call) -> None:
        from framecrypt.transports import wire
        from framecrypt.workers.engine import Engine, EngineConfig

        self.wire = wire
        self.engine = Engine(EngineConfig(format="dave"))
        self.engine.clock = time.monotonic
        self.engine.control("dave_key", [0, "bench-sender", 1, secrets.token_bytes(16), 0])
        self.call = call
        self.opening: dict[str, int] = {}
        self.counter = 0

    def _run(self, op: int, pidx: int, codec: str, frames: Sequence[bytes]) -> list[bytes]:
        wire, n = self.wire, len(frames)
        data = b"".join(frames)
        lengths = array("I", map(len, frames))
        zeros = array("I", bytes(4 * n))
        out = self.engine.output_buffer(op, n, len(data))
        res, spill, _ = self.engine.run_packed(
            op, pidx, self.counter, -1, lengths, bytes([wire.CODECS.index(codec)]) * n,
            bytes(n), zeros, zeros, memoryview(data), memoryview(out))
        self.counter += n if op == wire.OP_ENCRYPT else 0
        return _Outputs(res, memoryview(out), b"".join(spill), wire)  # type: ignore[return-value]

    async def seal(self, wl: Workload) -> list[bytes]:
        return self._run(self.wire.OP_ENCRYPT, 0, wl.codec, wl.frames)

    async def open(self, wl: Workload, sealed: Sequence[bytes]) -> list[bytes]:
        pidx = self.opening.get(wl.name)
        if pidx is None:
            pidx = self.opening[wl.name] = 1 + len(self.opening)
            self.engine.control("dave_key", [pidx, f"fc-{wl.name}", self.call.epoch,
                                             self.call.fc_secret, 0])
        return self._run(self.wire.OP_DECRYPT, pidx, wl.codec, sealed)


class FramecryptPoolPipelined(Contender):
    """``workers`` shm workers; :data:`CHUNKS` senders seal a chunk each, and as many
    receivers open a chunk each, every batch in flight at once."""

    def __init__(self, workers: int) -> None:
        self.name = f"framecrypt-pool-pipelined-{workers}w"
        self.workers = workers
        self.pool: Any = None

    async def start(self, call: Call) -> None:
        from framecrypt import Pool

        self.pool = Pool(workers=self.workers, transport="shm", format="dave")
        await self.pool.start()
        for j in range(CHUNKS):
            await self.pool.set_dave_key(f"bench-sender-{j}", 1, secrets.token_bytes(16))
        self.call = call
        self.keyed: set[str] = set()

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def seal(self, wl: Workload) -> list[bytes]:
        from framecrypt.batch import FrameBatch

        parts = await asyncio.gather(*(
            self.pool.encrypt_batch(f"bench-sender-{j}", FrameBatch.of(list(c), wl.codec))
            for j, c in enumerate(_chunks(wl.frames))))
        return [f for p in parts for f in p]

    async def open(self, wl: Workload, sealed: Sequence[bytes]) -> list[bytes]:
        from framecrypt.batch import FrameBatch

        chunks = _chunks(sealed)
        for j in range(len(chunks)):  # each receiver opens its own chunk: its own window
            who = f"fc-{wl.name}-{j}"
            if who not in self.keyed:
                await self.pool.set_dave_key(who, self.call.epoch, self.call.fc_secret)
                self.keyed.add(who)
        parts = await asyncio.gather(*(
            self.pool.decrypt_batch(f"fc-{wl.name}-{j}", FrameBatch.of(list(c), wl.codec))
            for j, c in enumerate(chunks)))
        return [f for p in parts for f in p]
