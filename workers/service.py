"""What a worker does with each message, independent of how messages arrive: the
process main loop (:mod:`.process`, over ZeroMQ) and the ``inline`` transport (a
thread in the broker's process) both feed :meth:`WorkerService.handle`.

Malformed messages are counted and answered with nothing; no input kills a worker.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Sequence
from typing import Any

from framecrypt.broker import wire
from framecrypt.errors import FramecryptError, ProtocolError
from framecrypt.workers.engine import Engine, EngineConfig, reply_size

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
        _, batch_id, count, op, pidx, counter0, epoch, in_base, out_base = msg
        if not all(isinstance(v, int) for v in (count, op, pidx, counter0, epoch, in_base,
                                                out_base)) or count < 1 or len(parts) < 2:
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
        lengths, ssrcs, tss = u32[:count], u32[count : 2 * count], u32[2 * count :]
        codecs, flags = cols[12 * count : 13 * count], cols[13 * count :]
        nbytes = sum(lengths)
        if self.req is not None:
            inp = self.req.view[in_base : in_base + nbytes]
            out = self.rep.view[out_base : out_base + reply_size(op, count, nbytes)]
            if len(inp) != nbytes:
                raise ProtocolError("PACKED payloads outside the ring")
        else:
            if len(parts) < 3 or len(parts[2]) != nbytes:
                raise ProtocolError("PACKED without its payload blob")
            inp = memoryview(parts[2])
            out = memoryview(bytearray(reply_size(op, count, nbytes)))
        res, overflow, used = engine.run_packed(op, pidx, counter0, epoch, lengths, codecs,
                                                flags, ssrcs, tss, inp, out, self.heartbeat)
        extra: list[Any] = [used]
        if engine.sframe and op == wire.OP_DECRYPT:
            extra.append(engine.replay_floors(pidx))
        replies = self._reply(engine, batch_id, count, res, overflow, None, *extra)
        if self.req is None:  # the outputs travel in the reply (after the overflow blob)
            replies[-1].append(bytes(out[:used]))
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
