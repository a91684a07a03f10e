"""What a worker does with each message, independent of how messages arrive: the
process main loop (:mod:`.process`, over ZeroMQ) and the ``inline`` transport (a
thread in the broker's process) both feed :meth:`WorkerService.handle`.

Malformed messages are counted and answered with nothing; no input kills a worker.
"""

from __future__ import annotations

import sys
import time
from array import array
from collections.abc import Callable, Sequence
from typing import Any

from framecrypt.errors import FramecryptError, ProtocolError
from framecrypt.transports import wire
from framecrypt.workers.engine import Engine, EngineConfig, Overflow, reply_size

Parts = list[bytes]
Buffer = bytes | memoryview


class WorkerService:
    def __init__(self, slot: int, heartbeat: Callable[[], None] | None = None) -> None:
        self.slot = slot
        self.engine: Engine | None = None
        self.req: Any = None  # transports.shm.Segment when shm is used
        self.rep: Any = None
        self.stopped = False
        self.protocol_errors = 0
        self.heartbeat = heartbeat

    def close(self) -> None:
        for seg in (self.req, self.rep):
            if seg is not None:
                seg.close()
        self.req = self.rep = None

    def handle(self, parts: Sequence[Buffer]) -> list[Parts]:
        """Replies (each a list of parts) to one incoming message."""
        try:
            if not parts:
                raise ProtocolError("empty message")
            msg = wire.unpack(parts[0])
            kind = msg[0]
            if kind == wire.BATCH:
                return self._batch(msg, parts)
            if kind == wire.PACKED:
                return self._packed(msg, parts)
            if kind == wire.CONTROL:
                return [self._control(msg)]
            if kind == wire.PING:
                return [[wire.pack(wire.PONG, msg[1] if len(msg) > 1 else 0)]]
            if kind == wire.CONFIG:
                self._config(msg)
                return []
            if kind == wire.STOP:
                self.stopped = True
                return []
            raise ProtocolError("unexpected message kind for a worker")
        except ProtocolError:
            self.protocol_errors += 1
            return []
        except (TypeError, ValueError, IndexError, KeyError):
            self.protocol_errors += 1
            return []

    def _config(self, msg: list[Any]) -> None:
        _, settings, shm = msg
        if not isinstance(settings, dict):
            raise ProtocolError("bad CONFIG")
        self.engine = Engine(EngineConfig.from_wire(settings))
        self.close()
        if shm:
            from framecrypt.transports.shm import Segment

            req_name, rep_name, size, shm_dir = shm
            self.req = Segment.attach(req_name, dir=shm_dir, size=size)
            self.rep = Segment.attach(rep_name, dir=shm_dir, size=size)

    def _control(self, msg: list[Any]) -> Parts:
        if self.engine is None:
            raise ProtocolError("CONTROL before CONFIG")
        _, seq, op, *args = msg
        try:
            result = self.engine.control(op, args)
        except FramecryptError as e:
            return [wire.pack(wire.ACK, seq, False, type(e).__name__, str(e))]
        except Exception as e:  # malformed arguments: answer, so nothing waits forever
            return [wire.pack(wire.ACK, seq, False, "ProtocolError", type(e).__name__)]
        return [wire.pack(wire.ACK, seq, True, *result)]

    def _buffers(self, parts: Sequence[Buffer], blob: int) -> tuple[memoryview,
                                                                     memoryview | None]:
        if self.req is not None:
            return self.req.view, self.rep.view
        if len(parts) <= blob:
            raise ProtocolError("batch without payload blob")
        return memoryview(parts[blob]), None

    def _batch(self, msg: list[Any], parts: Sequence[Buffer]) -> list[Parts]:
        engine = self.engine
        if engine is None:
            raise ProtocolError("BATCH before CONFIG")
        _, batch_id, count = msg
        if not isinstance(count, int) or len(parts) < 2:
            raise ProtocolError("bad BATCH")
        desc = parts[1]
        wire.check_blob(desc, wire.REQ, count)
        inp, out = self._buffers(parts, 2)
        res, overflow = engine.run(wire.REQ.iter_unpack(desc), count, inp, out, self.heartbeat)
        return self._reply(engine, batch_id, count, res, overflow, out)

    def _packed(self, msg: list[Any], parts: Sequence[Buffer]) -> list[Parts]:
        engine = self.engine
        if engine is None:
            raise ProtocolError("PACKED before CONFIG")
        _, batch_id, count, epoch, heads = msg
        if not isinstance(count, int) or not isinstance(epoch, int) or count < 1 or \
                not isinstance(heads, list) or not heads or len(parts) < 2 or \
                not all(isinstance(h, list) and len(h) == 6 and
                        all(isinstance(v, int) and v >= 0 for v in h) for h in heads) or \
                sum(h[3] for h in heads) != count:
            raise ProtocolError("bad PACKED")
        cols = memoryview(parts[1])
        if len(cols) != 14 * count:
            raise ProtocolError("PACKED columns do not match the count")
        u32: Sequence[int]
        if sys.byteorder == "little":
            u32 = cols[: 12 * count].cast("I")
        else:  # the wire is little-endian
            swapped = array("I")
            swapped.frombytes(cols[: 12 * count])
            swapped.byteswap()
            u32 = swapped
        blob = None
        if self.req is None:
            if len(parts) < 3:
                raise ProtocolError("PACKED without its payload blob")
            blob = memoryview(parts[2])
        # every segment's payloads must lie in their buffer before any is processed
        sizes = []
        k = 0
        room = len(self.req.view) if blob is None else len(blob)
        for _, _, _, n, in_base, _ in heads:
            nbytes = sum(u32[k : k + n])
            if in_base + nbytes > room:
                raise ProtocolError("PACKED payloads outside their buffer")
            sizes.append(nbytes)
            k += n
        cpu0 = time.process_time()
        spill = Overflow()
        results: list[bytes | bytearray] = []
        used: list[int] = []
        floors: list[list[list[int]]] = []
        outs: list[bytes] = []
        k = 0
        for (op, pidx, counter0, n, in_base, out_base), nbytes in zip(heads, sizes,
                                                                       strict=True):
            lengths = u32[k : k + n]
            if blob is None:
                inp = self.req.view[in_base : in_base + nbytes]
                out = self.rep.view[out_base : out_base + reply_size(op, n, nbytes)]
            else:
                inp = blob[in_base : in_base + nbytes]
                out = memoryview(bytearray(reply_size(op, n, nbytes)))
            res, _, u = engine.run_packed(
                op, pidx, counter0, epoch, lengths, cols[12 * count + k : 12 * count + k + n],
                cols[13 * count + k : 13 * count + k + n], u32[count + k : count + k + n],
                u32[2 * count + k : 2 * count + k + n], inp, out, self.heartbeat, spill=spill)
            results.append(res)
            used.append(u)
            floors.append(engine.replay_floors(pidx)
                          if engine.sframe and op == wire.OP_DECRYPT else [])
            if blob is not None:
                outs.append(bytes(out[:u]))
            k += n
        cpu_us = (time.process_time() - cpu0) * 1e6
        replies = self._reply(engine, batch_id, count, bytearray().join(results), spill.parts,
                              None, used, floors, cpu_us)
        if blob is not None:  # the outputs travel in the reply (after the overflow blob)
            replies[-1].append(b"".join(outs))
        return replies

    def _reply(self, engine: Engine, batch_id: int, count: int, res: bytearray,
               overflow: list[bytes], out: memoryview | None, *extra: Any) -> list[Parts]:
        replies: list[Parts] = [[wire.pack(wire.EVENT, ev)] for ev in engine.events]
        engine.events.clear()
        reply: Parts = [wire.pack(wire.RESULT, batch_id, count, *extra), bytes(res)]
        if overflow or out is None:
            reply.append(b"".join(overflow))
        replies.append(reply)
        return replies
