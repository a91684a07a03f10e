"""The broker's asyncio glue: moves bytes between the sans-I/O core
(:mod:`.ledger`, :mod:`.batcher`, :mod:`.keydir`) and the workers' sockets, and
re-arms one timer from the ledger's next deadline.

Readiness of the ZeroMQ socket is awaited once (``add_reader``) and then drained
without blocking (its FD is edge-triggered); flushes are scheduled with
``call_soon`` so frames admitted in one loop turn leave in one message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import zmq

from framecrypt.batch import FrameBatch
from framecrypt.broker import batcher, leases
from framecrypt.broker.events import EventHub, PoolEvent
from framecrypt.broker.inline import InlineSealer
from framecrypt.broker.keydir import KeyDirectory
from framecrypt.broker.ledger import DEAD, READY, STARTING, STOPPED, Dead, Ledger, SlotBook
from framecrypt.broker.placement import Placement, PlacementModel
from framecrypt.broker.runs import DECRYPT, ENCRYPT, Control, Group, Run
from framecrypt.broker.supervisor import Supervisor, Worker
from framecrypt.conf import Settings
from framecrypt.errors import FramecryptError, PoolClosed, ProtocolError, UnknownKey
from framecrypt.transports import hygiene, wire
from framecrypt.transports.to_broker import (
    Ack,
    ControlFailed,
    Event,
    KeysetDone,
    RatchetDone,
    Ready,
    Result,
    parse_to_broker,
)
from framecrypt.transports.to_worker import Config
from framecrypt.workers.engine import EngineConfig

Parts = Sequence[bytes | memoryview]
_HEAVY = bytes((wire.CODEC_ID["h264"], wire.CODEC_ID["h265"]))


class BrokerService:
    """One pool's running machinery (created by :class:`~framecrypt.Pool`)."""

    def __init__(self, settings: Settings, engine_cfg: EngineConfig, ledger: Ledger,
                 keys: KeyDirectory, placement: Placement, inline: InlineSealer,
                 events: EventHub, epoch: int) -> None:
        self.settings = settings
        self.engine_cfg = engine_cfg
        self.ledger = ledger
        self.keys = keys
        self.placement = placement
        self.inline = inline
        self.events = events
        self.epoch = epoch  # -1: RTP timestamps in the IVs
        self.transport = settings.pool.transport
        self.follow_keys = settings.pool.placement != "pool"  # the inline engine learns keys
        self.loop: asyncio.AbstractEventLoop | None = None
        self.supervisor: Supervisor | None = None
        self.by_identity: dict[bytes, SlotBook] = {}
        self.identity: dict[int, bytes] = {}  # slot index -> identity of its worker
        self.ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self.sock: zmq.Socket[bytes] | None = None
        self.remote_sock: zmq.Socket[bytes] | None = None
        self.endpoint = ""
        self.tag = ""
        self.registry = hygiene.Registry()
        self.swept: list[str] = []
        self._fds: list[int] = []
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._ready: dict[int, asyncio.Future[None]] = {}
        self._keyops: Any = None  # one thread for the inline engine's key derivations
        self.closing = False
        self.on_remote: Callable[[bytes, list[memoryview]], None] | None = None
        self.on_remote_lost: Callable[[SlotBook, list[Any]], None] | None = None

    # --- start and stop ------------------------------------------------------------------

    async def start(self, name: str, nonce: str) -> None:
        self.loop = loop = asyncio.get_running_loop()
        self.tag = hygiene.pool_tag(os.getpid(), name + nonce)
        if self.transport != "inline":
            rdir = self.settings.ipc.dir
            if rdir:
                os.makedirs(rdir, mode=0o700, exist_ok=True)
            else:
                rdir = hygiene.runtime_dir()
            self.swept = hygiene.sweep_stale(self.settings.shm.dir, rdir)
            sock_path = hygiene.socket_path(rdir, self.tag, "broker")
            self.endpoint = f"ipc://{sock_path}"
            self.ctx = zmq.Context()
            sock = self.router(self.ctx)
            old = os.umask(0o177)
            try:
                sock.bind(self.endpoint)
            finally:
                os.umask(old)
            self.registry.add(sock_path)
            self.sock = sock
            self.watch(sock, self.on_readable)
        self.supervisor = Supervisor(self.settings, loop, self.tag, self.endpoint,
                                     self.registry, self._on_exit)
        for sl in self.ledger.slots:
            w = self.supervisor.add()
            self._ready[sl.index] = loop.create_future()
            self._spawn(sl, w)
        await asyncio.wait_for(asyncio.gather(*self._ready.values()), timeout=30)
        self.ledger.start_clock(self.now())
        self._arm()

    @staticmethod
    def router(ctx: zmq.Context[zmq.Socket[bytes]]) -> zmq.Socket[bytes]:
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        return sock

    def watch(self, sock: zmq.Socket[bytes], cb: Callable[[], None]) -> None:
        assert self.loop is not None
        fd = int(sock.getsockopt(zmq.FD))
        self._fds.append(fd)
        self.loop.add_reader(fd, cb)

    async def stop(self) -> None:
        self.closing = True
        now = self.now()
        led = self.ledger
        led.credit.grant_all()
        for sl in led.slots:
            led.fail_slot(sl, PoolClosed(), now)
            if sl.state == READY and (sl.remote or self.transport != "inline"):
                with contextlib.suppress(zmq.ZMQError, OSError):
                    self.send(sl, [wire.pack(wire.STOP)])
            sl.state = STOPPED
        if self.supervisor is not None:
            await self.supervisor.stop()
        if self._timer is not None:
            self._timer.cancel()
        for fd in self._fds:
            if self.loop is not None:
                with contextlib.suppress(Exception):
                    self.loop.remove_reader(fd)
        for sock in (self.sock, self.remote_sock):
            if sock is not None:
                sock.close(0)
        self.sock = self.remote_sock = None
        if self._keyops is not None:
            self._keyops.shutdown(wait=True)
        for fut in self._ready.values():
            if not fut.done():
                fut.cancel()

    def term(self) -> None:
        if self.ctx is not None:
            self.ctx.term()
            self.ctx = None
        self.registry.cleanup()

    def now(self) -> float:
        assert self.loop is not None
        return self.loop.time()

    # --- workers -------------------------------------------------------------------------

    def _spawn(self, sl: SlotBook, w: Worker) -> None:
        assert self.supervisor is not None and self.loop is not None
        if self.closing:
            return
        sl.req_ring, sl.rep_ring = self.supervisor.spawn(w)
        self.identity[sl.index] = w.identity
        self.by_identity[w.identity] = sl
        sl.state = STARTING
        sl.last_heard = self.now()
        self.ledger.counters["worker_spawns"] += 1
        if self.transport == "inline":
            self.loop.call_soon(self.on_message, w.identity,
                                [wire.pack(wire.READY, os.getpid(), sl.index)])

    def _on_exit(self, w: Worker, epoch: int) -> None:
        sl = self.ledger.slots[w.index]
        if epoch == w.epoch and sl.state in (READY, STARTING):
            self.worker_died(sl, "exit")

    def worker_died(self, sl: SlotBook, why: str) -> None:
        """Requeue what the worker held (same counters), then respawn it (local) or
        move its participants (remote)."""
        now = self.now()
        self.by_identity.pop(self.identity.get(sl.index, b""), None)
        self.ledger.worker_lost(sl, now)
        if sl.remote:  # what it held and what waited for it move with its participants
            entries = list(sl.queue)
            sl.queue.clear()
            if self.on_remote_lost is not None:
                self.on_remote_lost(sl, entries)
            return
        assert self.supervisor is not None
        w = self.supervisor.workers[sl.index]
        delay = self.supervisor.died(w, now)
        sl.restarts += 1
        self.supervisor.schedule(w, delay, lambda w: self._spawn(sl, w))

    def worker_of(self, sl: SlotBook) -> Worker | None:
        if sl.remote or self.supervisor is None or sl.index >= len(self.supervisor.workers):
            return None
        return self.supervisor.workers[sl.index]

    def worker_pids(self) -> list[int]:
        if self.supervisor is None:
            return []
        return [w.pid for w in self.supervisor.workers
                if w.proc is not None and self.ledger.slots[w.index].state == READY]

    # --- admission: inline or the participant's slot -----------------------------------

    def place(self, name: str, batch: FrameBatch, offsets: Any, lo: int, hi: int, op: int,
              group: Group) -> None:
        """Counters, then inline or into the participant's slot queue (credit held)."""
        led, placement = self.ledger, self.placement
        pidx = led.participant(name)
        n = hi - lo
        counter0 = led.reserve_counters(pidx, n) if op == ENCRYPT else 0
        now = self.now()
        run = Run(op, pidx, group, now, batch, offsets, lo, hi, counter0)
        if n == 1:
            heavy = batch.codecs[lo] in _HEAVY or placement.heavy_suite
        else:
            codecs = batch.codecs[lo:hi]
            heavy = bool(codecs.count(_HEAVY[0]) or codecs.count(_HEAVY[1])
                         or placement.heavy_suite)
        run.kind = PlacementModel.kind(n, run.nbytes, heavy)
        counters = led.counters
        counters["frames_submitted"] += n
        counters["bytes_in"] += run.nbytes
        if placement.inline(run.kind, decrypt=op == DECRYPT,
                            keys_pending=led.controls_pending(pidx),
                            stream_busy=led.stream_busy(run),
                            workers_busy=self._workers_busy, now=now,
                            mean_size=run.nbytes // n):
            self._run_inline(run)
        else:
            led.admit(run)
            self.schedule_flush()

    def _workers_busy(self) -> bool:
        """Every worker holds a full batch's worth already."""
        slots = self.ledger.slots
        return sum(sl.frames for sl in slots) >= self.settings.batch.max_frames * len(slots)

    def _run_inline(self, run: Run) -> None:
        led = self.ledger
        res, out, spill, spent = self.inline.run(run)
        n = len(run)
        self.placement.note_inline(run.kind, spent, n)
        led.counters["frames_inline"] += n
        retry = batcher.take_piece(led, run, 0, n, res, out, 0, spill)
        led.credit.release(n - len(retry), run.nbytes - sum(run.size(i) for i in retry))
        if retry:  # what the state-free pass could not open: a run to the pool
            led.counters["frames_inline"] -= len(retry)
            again = FrameBatch.from_frames([run.frame(i) for i in retry])
            redo = Run(run.op, run.pidx, run.group, run.t0, again, again.offsets(), 0,
                       len(retry), 0, [run.positions[i] for i in retry])
            redo.kind = run.kind
            led.admit(redo)
            self.schedule_flush()

    # --- sending -------------------------------------------------------------------------

    def schedule_flush(self) -> None:
        if not self._flush_scheduled and self.loop is not None and not self.loop.is_closed():
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        for sl in self.ledger.slots:
            if sl.queue and sl.state == READY:
                self.dispatch(sl)
        self.on_readable()  # zmq's FD is edge-triggered: sends can swallow the signal

    def dispatch(self, sl: SlotBook) -> None:
        led = self.ledger
        if led.budget:
            led.expire(sl, self.now())
        limit = batcher.ring_limit(sl, self.settings.batch.max_bytes)
        view = self._req_view(sl)
        while True:
            sel = led.select(sl, limit)
            if sel is None:
                return
            if isinstance(sel, Control):
                self.send(sl, [wire.pack(wire.CONTROL, sel.seq, sel.op, *sel.args)])
                led.sent_control(sl, sel, self.now())
                continue
            t0 = time.perf_counter()
            built = batcher.encode(sl, sel, led.next_batch_id(), self.epoch, view)
            if built is None:
                led.counters["ring_full"] += 1
                return
            msg, parts = built
            led.commit(sl, sel, msg, self.now())
            self.send(sl, parts)
            msg.spent = time.perf_counter() - t0

    def _req_view(self, sl: SlotBook) -> memoryview | None:
        if sl.remote or self.supervisor is None or sl.req_ring is None:
            return None
        seg = self.supervisor.workers[sl.index].req_seg
        return seg.view if seg is not None else None

    def _rep_view(self, sl: SlotBook) -> memoryview | None:
        if sl.remote or self.supervisor is None or sl.rep_ring is None:
            return None
        seg = self.supervisor.workers[sl.index].rep_seg
        return seg.view if seg is not None else None

    def send(self, sl: SlotBook, parts: Sequence[bytes | memoryview]) -> None:
        sl.last_sent = self.now()
        if self.transport == "inline" and not sl.remote:
            assert self.supervisor is not None and self.loop is not None
            w = self.supervisor.workers[sl.index]
            svc, ex, identity, loop = w.service, w.executor, w.identity, self.loop
            if svc is None or ex is None:
                return

            def work() -> None:
                for r in svc.handle(parts):
                    loop.call_soon_threadsafe(self.on_message, identity, r)

            ex.submit(work)
            return
        sock = self.remote_sock if sl.remote else self.sock
        if sock is None:
            return
        try:
            sock.send_multipart([self.identity[sl.index], *parts],
                                copy=len(parts[-1]) < 65536)
        except zmq.ZMQError:
            pass  # unroutable (worker gone): its death handling re-dispatches what it held

    # --- receiving -----------------------------------------------------------------------

    def drain(self, sock: zmq.Socket[bytes] | None,
              handle: Callable[[bytes, list[memoryview]], None]) -> None:
        """Read everything a socket has, without blocking (its FD is edge-triggered)."""
        if sock is None:
            return
        while int(sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            try:
                msg = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            if len(msg) < 2:
                self.ledger.counters["protocol_errors"] += 1
                continue
            handle(msg[0].bytes, [m.buffer for m in msg[1:]])

    def on_readable(self) -> None:
        self.drain(self.sock, self.on_message)

    def on_message(self, identity: bytes, parts: Parts) -> None:
        sl = self.by_identity.get(identity)
        if sl is None:
            self.ledger.counters["protocol_errors"] += 1
            return
        self.handle(sl, parts)

    def handle(self, sl: SlotBook, parts: Parts) -> None:
        led = self.ledger
        if sl.state in (DEAD, STOPPED):
            led.counters["protocol_errors"] += 1
            return
        now = self.now()
        led.heard(sl, now)
        try:
            msg = parse_to_broker(parts)
            if isinstance(msg, Result):
                self._on_result(sl, msg, now)
            elif isinstance(msg, Ack):
                self._on_ack(sl, msg, now)
            elif isinstance(msg, Event):
                self._on_event(msg)
            elif isinstance(msg, Ready):
                self._on_ready(sl)
        except ProtocolError:
            led.counters["protocol_errors"] += 1

    def _on_ready(self, sl: SlotBook) -> None:
        if sl.state != STARTING:
            raise ProtocolError("READY twice")
        shm = None
        if not sl.remote and self.supervisor is not None:
            shm = self.supervisor.shm_config(self.supervisor.workers[sl.index])
        self.send(sl, Config(self.engine_cfg.as_wire(), shm).encode())
        sl.state = READY
        sl.ready_at = self.now()
        # replay the key directory of this slot's participants, then what it held
        for pidx in self.ledger.owned_by(sl):
            self.replay(sl, pidx)
        fut = self._ready.get(sl.index)
        if fut is not None and not fut.done():
            fut.set_result(None)
        self.schedule_flush()

    def replay(self, sl: SlotBook, pidx: int, *, queue: bool = False) -> None:
        """The directory's state of ``pidx`` to ``sl``'s worker: sent now (a fresh
        worker), or queued behind what ``sl`` holds (a participant moving in)."""
        for op in self.keys.snapshot(pidx):
            ctl = self.ledger.replay(pidx, op.op, op.args)
            if queue:
                sl.queue.append(ctl)
            else:
                self.send(sl, [wire.pack(wire.CONTROL, ctl.seq, ctl.op, *ctl.args)])
                sl.inflight.append(ctl)

    def _on_result(self, sl: SlotBook, msg: Result, now: float) -> None:
        led = self.ledger
        t0 = time.perf_counter()
        batch, dropped = led.answer_batch(sl, msg.batch_id, msg.count, len(msg.used), now)
        for d in dropped:
            led.free_rings(sl, d)
        lease = leases.lease_for(sl, batch, self.ledger.counters, self.schedule_flush)
        try:
            batcher.deliver(led, self.keys, batch, bytes(msg.results), list(msg.used),
                            [list(f) for f in msg.floors], self._rep_view(sl),
                            bytes(msg.overflow),
                            None if msg.outputs is None else bytes(msg.outputs), now, lease)
        finally:
            batch.rep_leased = lease is not None and lease.holders > 0
            led.batch_done(sl, batch, now)
        broker_us = (batch.spent + time.perf_counter() - t0) * 1e6 / batch.count
        worker_us = msg.cpu_us / batch.count
        for run, _, _ in batch.segments:
            self.placement.model.note_offload(run.kind, broker_us, worker_us)
        if sl.queue:
            self.schedule_flush()

    def reserve(self, name: str, nbytes: int
                ) -> tuple[memoryview, Callable[[], None], tuple[Any, int]] | None:
        """See :func:`framecrypt.broker.leases.reserve`."""
        led = self.ledger
        sl = led.owner(led.participant(name))
        return leases.reserve(sl, self._req_view(sl), nbytes, led.counters,
                              self.schedule_flush)

    def _on_ack(self, sl: SlotBook, msg: Ack, now: float) -> None:
        ctl, dropped = self.ledger.answer_control(sl, msg.seq, now)
        for d in dropped:
            self.ledger.free_rings(sl, d)
        if ctl.on_done is None:  # a directory replay: nobody waits
            return
        try:
            outcome = msg.outcome(ctl.op)
        except ProtocolError as e:  # the wrong shape for its op: fail it, never hang
            self.ledger.counters["protocol_errors"] += 1
            self.ledger.control_done(ctl, None, e)
            return
        if isinstance(outcome, ControlFailed):
            err: BaseException = FramecryptError(outcome.detail or outcome.error)
            if outcome.error == "UnknownKey":
                err = UnknownKey(int(ctl.args[1]) if ctl.op == "ratchet" else 0)
            self.ledger.control_done(ctl, None, err)
            return
        keys, pidx, a = self.keys, ctl.pidx, ctl.args
        local: tuple[str, tuple[Any, ...]] | None = None
        result: list[Any] = []
        if isinstance(outcome, KeysetDone):
            _, name, index, material, _, _, make_current = a
            keys.set_key(pidx, name, index, material, outcome.algorithm, make_current)
            local = ("keyset", (pidx, name, index, material, outcome.algorithm, 0,
                                make_current))
        elif isinstance(outcome, RatchetDone):
            if not self._plausible(pidx, a[1], outcome.generation):
                self.ledger.counters["protocol_errors"] += 1
                self.ledger.control_done(ctl, None, ProtocolError("ratchet generation"))
                return
            keys.ratcheted(pidx, a[1], outcome.generation, make_current=False)
            local = ("ratchet_to", (pidx, a[1], outcome.generation))
            result = [outcome.generation]
        elif ctl.op == "remove":
            keys.remove(pidx)
            self.inline.apply("remove", (pidx,))
        if local is None or not self.follow_keys:
            self.ledger.control_done(ctl, result, None)
            return
        self.hold_local(pidx, local, lambda: self.ledger.control_done(ctl, result, None))

    def hold_local(self, pidx: int, op: tuple[str, tuple[Any, ...]],
                   then: Callable[[], None] | None = None) -> None:
        """Apply a key operation to the inline engine in a thread; ``pidx`` is kept
        off the inline path until it is done."""
        import concurrent.futures

        assert self.loop is not None
        if self._keyops is None:
            self._keyops = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="framecrypt-keys")
        self.ledger.hold(pidx)

        def done(_: object) -> None:
            self.ledger.unhold(pidx)
            if then is not None:
                then()

        fut = self.loop.run_in_executor(self._keyops, self.inline.apply, *op)
        fut.add_done_callback(done)

    def _plausible(self, pidx: int, index: int, generation: int) -> bool:
        """A worker can only move a key forward by a ratchet or a receiver ratchet
        within the ratchet window; a claim beyond that (a buggy or hostile worker)
        would make the inline engine derive without bound."""
        known = self.keys.generation(pidx, index)
        return known is not None and \
            generation <= known + max(1, self.engine_cfg.ratchet_window)

    def _on_event(self, msg: Event) -> None:
        led, pidx = self.ledger, msg.pidx
        if pidx >= len(led.names):
            raise ProtocolError("event for an unknown participant")
        name = led.names[pidx]
        if msg.kind == "ratcheted":
            index, generation = msg.args
            if not self._plausible(pidx, index, generation):
                raise ProtocolError("a receiver ratchet beyond the ratchet window")
            if self.keys.ratcheted(pidx, index, generation, make_current=True) and \
                    self.follow_keys:
                self.hold_local(pidx, ("ratchet_to", (pidx, index, generation)))
            self.events.emit(PoolEvent(name, "key_ratcheted", index))
            return
        kind = {"DecryptionFailed": "decryption_failed", "KeyMissing": "missing_key",
                "KeyMarkedInvalid": "key_invalid", "SifDropped": "sif_dropped"}.get(msg.kind)
        if kind is not None:
            self.events.emit(PoolEvent(name, kind, msg.args[0]))

    # --- time ----------------------------------------------------------------------------

    def _arm(self) -> None:
        """One timer, re-armed from the ledger's next deadline (never later than a
        heartbeat interval: a respawned worker's deadlines start then)."""
        assert self.loop is not None
        now = self.now()
        interval = self.settings.supervision.heartbeat_interval_s
        nxt = self.ledger.next_deadline()
        at = now + interval if nxt is None else min(max(nxt, now + 0.001), now + interval)
        self._timer = self.loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        if self.closing:
            return
        try:
            self._tick()
        finally:
            self._arm()  # whatever happened, liveness keeps being watched

    def _tick(self) -> None:
        self.on_readable()  # read what has arrived before judging silence
        if self.on_remote is not None and self.remote_sock is not None:
            self.drain(self.remote_sock, self.on_remote)
        led = self.ledger
        for action in led.tick(self.now(), check_silence=self.transport != "inline"):
            if isinstance(action, Dead):
                self.worker_died(action.slot, action.why)
            else:
                self.send(action.slot, [wire.pack(wire.PING, 0)])
        if self.supervisor is not None:
            for w in self.supervisor.workers:
                if w.zombies:
                    self.supervisor.reap(w)
