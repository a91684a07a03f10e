"""What a worker does with each message, independent of how messages arrive: the
process main loop (:mod:`.process`, over ZeroMQ) and the ``inline`` transport (a
thread in the broker's process) both feed :meth:`WorkerService.handle`.

No input kills or wedges a worker: :meth:`~WorkerService.handle` parses with
:func:`~framecrypt.transports.to_worker.parse_to_worker` and never raises. A malformed
message — malformed on the wire, or fine on the wire but refused where it is used
(segments that cannot be attached, payloads or outputs outside their buffer, key
operation arguments the engine cannot use) — is counted in ``protocol_errors`` and
answered with nothing; except a CONTROL whose ``seq`` parsed, which is always ACKed
(``ok`` False and the error's name), so nothing in the broker waits for it. A refused
CONFIG leaves the service as it was (engine and rings).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from framecrypt.errors import FramecryptError, ProtocolError
from framecrypt.transports import wire
from framecrypt.transports.to_broker import Ack, Event, Pong, Result
from framecrypt.transports.to_worker import (
    Config,
    Control,
    ControlRejected,
    InheritedRings,
    Packed,
    Ping,
    Stop,
    parse_to_worker,
)
from framecrypt.transports.wire import Blob, Parts
from framecrypt.workers.engine import Engine, EngineConfig, Overflow, reply_size

if TYPE_CHECKING:
    from collections.abc import Callable

    from framecrypt.transports.shm import Segment

Buffer = bytes | memoryview


class WorkerService:
    def __init__(self, slot: int, heartbeat: Callable[[], None] | None = None) -> None:
        self.slot = slot
        self.engine: Engine | None = None
        self.req: Segment | None = None  # the rings, when payloads travel in shm
        self.rep: Segment | None = None
        self.stopped = False
        self.protocol_errors = 0
        self.heartbeat = heartbeat

    def close(self) -> None:
        for seg in (self.req, self.rep):
            if seg is not None:
                seg.close()
        self.req = self.rep = None

    def handle(self, parts: Sequence[Buffer]) -> list[Parts]:
        """Replies (each a list of parts) to one incoming message. Never raises."""
        try:
            msg = parse_to_worker(parts)
            if type(msg) is Packed:
                return self._packed(msg)
            if type(msg) is Control:
                return [self._control(msg)]
            if type(msg) is Ping:
                return [Pong(msg.t).encode()]
            if type(msg) is Config:
                self._configure(msg)
            elif type(msg) is Stop:
                self.stopped = True
            return []
        except ControlRejected as e:
            self.protocol_errors += 1
            return [Ack(e.seq, False, ("ProtocolError", e.reason)).encode()]
        except Exception:  # ProtocolError, or what engine or segments raised for the input
            self.protocol_errors += 1
            return []

    def _engine(self, what: str) -> Engine:
        if self.engine is None:
            raise ProtocolError(f"{what} before CONFIG")
        return self.engine

    def _configure(self, cfg: Config) -> None:
        """A new engine and rings, or (when anything fails) the old ones untouched."""
        engine = Engine(EngineConfig.from_wire(dict(cfg.settings)))
        engine.clock = time.monotonic  # DAVE receivers' epoch transitions
        req = rep = None
        if isinstance(cfg.shm, InheritedRings):  # memfds inherited at spawn (no names)
            from framecrypt.transports.memfd import RingPair

            pair = RingPair.attach((cfg.shm.request_fd, cfg.shm.reply_fd), cfg.shm.size)
            req, rep = pair.request, pair.reply
        elif cfg.shm is not None:
            from framecrypt.transports.shm import Segment

            rings = cfg.shm
            try:
                req = Segment.attach(rings.request, dir=rings.dir, size=rings.size)
                rep = Segment.attach(rings.reply, dir=rings.dir, size=rings.size)
            except BaseException:
                if req is not None:
                    req.close()
                raise
        self.close()
        self.engine, self.req, self.rep = engine, req, rep

    def _control(self, msg: Control) -> Parts:
        """Always an ACK: ok with the op's result, or a failure (its error's name)."""
        if self.engine is None:
            self.protocol_errors += 1
            return Ack(msg.seq, False, ("ProtocolError", "CONTROL before CONFIG")).encode()
        try:
            result = self.engine.control(msg.op, list(msg.args), self.heartbeat)
        except ProtocolError as e:
            self.protocol_errors += 1
            return Ack(msg.seq, False, ("ProtocolError", e.reason)).encode()
        except FramecryptError as e:  # a typed refusal (unknown key, bad key material)
            return Ack(msg.seq, False, (type(e).__name__, str(e))).encode()
        except Exception as e:  # arguments the engine cannot use: answered all the same
            self.protocol_errors += 1
            return Ack(msg.seq, False, ("ProtocolError", type(e).__name__)).encode()
        return Ack(msg.seq, True, tuple(result)).encode()

    def _buffers(self, payload: Blob | None) -> tuple[memoryview, memoryview | None]:
        """Where payloads are read from and outputs go: the rings, or the message's
        payload blob and the reply (exactly one of the two is there)."""
        if self.req is not None and self.rep is not None:
            if payload is not None:
                raise ProtocolError("a payload blob, but payloads travel in the ring")
            return self.req.view, self.rep.view
        if payload is None:
            raise ProtocolError("a batch without its payload blob")
        return memoryview(payload), None

    def _packed(self, msg: Packed) -> list[Parts]:
        engine = self._engine("PACKED")
        inp, rep = self._buffers(msg.payload)
        count = msg.count
        u32 = msg.u32_columns()
        sizes = msg.payload_sizes(u32)
        # every segment must lie in its buffers before any is processed
        room, out_room = len(inp), len(rep) if rep is not None else 0
        for s, nbytes in zip(msg.segments, sizes, strict=True):
            if s.in_base + nbytes > room:
                raise ProtocolError("PACKED payloads outside their buffer")
            if rep is not None and s.out_base + reply_size(s.op, s.n, nbytes) > out_room:
                raise ProtocolError("PACKED outputs outside the reply ring")
        codecs, flags = msg.codecs(), msg.flags()
        opening_sframe, dave = engine.sframe, engine.dave
        cpu0 = time.process_time()
        spill = Overflow()
        results: list[bytes | bytearray] = []
        used: list[int] = []
        floors: list[tuple[tuple[int, int], ...]] = []
        outs: list[memoryview] = []
        k = 0
        for s, nbytes in zip(msg.segments, sizes, strict=True):
            op, pidx, n = s.op, s.participant, s.n
            size = reply_size(op, n, nbytes)
            out = rep[s.out_base : s.out_base + size] if rep is not None else \
                memoryview(engine.output_buffer(op, n, nbytes))
            res, _, u = engine.run_packed(
                op, pidx, s.counter0, msg.epoch, u32[k : k + n], codecs[k : k + n],
                flags[k : k + n], u32[count + k : count + k + n],
                u32[2 * count + k : 2 * count + k + n], inp[s.in_base : s.in_base + nbytes],
                out, self.heartbeat, spill=spill)
            results.append(res)
            used.append(u)
            # SFrame: receivers' floors; DAVE: retry skews and receivers' windows
            floors.append(tuple((kid, ctr) for kid, ctr in engine.replay_floors(pidx))
                          if dave or (opening_sframe and op == wire.OP_DECRYPT) else ())
            if rep is None:
                outs.append(out[:u])
            k += n
        cpu_us = (time.process_time() - cpu0) * 1e6
        return self._reply(engine, Result(
            msg.batch_id, count, bytes(bytearray().join(results)), b"".join(spill.parts),
            tuple(used), tuple(floors), cpu_us, b"".join(outs) if rep is None else None))

    def _reply(self, engine: Engine, result: Result) -> list[Parts]:
        """The engine's events since the last reply, then the result."""
        replies = [Event(ev[0], ev[1], tuple(ev[2:])).encode() for ev in engine.events]
        engine.events.clear()
        replies.append(result.encode())
        return replies
