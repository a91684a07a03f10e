"""The broker's core, sans-I/O: credits, send counters (the only owner of nonces), the
in-flight table, per-stream ordering, outcomes, worker liveness and expiry.

No sockets, no processes, no clocks, no asyncio: every method that depends on time
takes ``now`` (seconds, any monotonic origin); sending is the caller's business
(:meth:`Ledger.select` says what to send next, :meth:`Ledger.commit` records that it
went); outcomes reach the caller through the ``on_done`` callbacks of
:class:`~framecrypt.broker.runs.Group` and :class:`~framecrypt.broker.runs.Control`;
:meth:`Ledger.tick` returns the heartbeat actions. Tested with a fake clock
(tests/test_ledger.py).

Invariants kept here (DESIGN.md): a frame keeps its counter when it is re-dispatched;
every admitted frame gets exactly one outcome; frames and bytes in flight are bounded
globally and per worker; a participant's frames and key operations go to one slot,
FIFO, so a stream's results come back in order.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from framecrypt.broker.credits import Credits
from framecrypt.broker.health import HealthBook
from framecrypt.broker.rendezvous import owner
from framecrypt.broker.runs import Control, Group, InFlight, Run, Segment, Span
from framecrypt.conf import Settings
from framecrypt.errors import FrameExpired, ProtocolError, WorkerLost
from framecrypt.transports.ring import RingAllocator

STARTING, READY, DEAD, STOPPED = "starting", "ready", "dead", "stopped"
LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                     0.25, 1.0)
STARTUP_GRACE_S = 20.0  # a starting worker's interpreter start-up
@dataclass(frozen=True, slots=True)
class Ping:
    slot: SlotBook


@dataclass(frozen=True, slots=True)
class Dead:
    slot: SlotBook
    why: str


@dataclass(frozen=True, slots=True)
class Selection:
    """What :meth:`Ledger.select` picked for one PACKED message."""

    segments: list[Segment]
    count: int
    nbytes: int
    consumed: int  # spans taken whole from the queue's head
    partial: int  # position the next head span resumes at, or -1


class SlotBook:
    """The ledger's view of one worker slot: state, queue, in-flight table, load."""

    def __init__(self, index: int, name: str, *, remote: bool = False) -> None:
        self.index = index
        self.name = name
        self.remote = remote
        self.state = STOPPED
        self.queue: deque[Span | Control] = deque()
        self.inflight: deque[InFlight | Control] = deque()
        self.frames = 0  # frames sent and not answered
        self.bytes = 0
        self.last_heard = 0.0
        self.last_sent = 0.0
        self.ready_at = 0.0
        self.frames_done = 0
        self.restarts = 0
        self.req_ring: RingAllocator | None = None
        self.rep_ring: RingAllocator | None = None

    def __repr__(self) -> str:
        return f"SlotBook({self.name}, {self.state}, queued={len(self.queue)})"


class Ledger:
    def __init__(self, settings: Settings, *, rand48: Callable[[], int], sframe: bool) -> None:
        s = settings
        self.worker_frames = s.limits.worker_frames_in_flight
        self.worker_bytes = s.limits.worker_bytes_in_flight
        self.message_frames = 8 * s.batch.max_frames
        self.attempts = s.supervision.dispatch_attempts
        self.interval = s.supervision.heartbeat_interval_s
        self.liveness = s.supervision.heartbeat_liveness
        self.budget = s.realtime.latency_budget_ms / 1000.0
        self._rand48 = rand48
        self._sframe = sframe
        self.slots: list[SlotBook] = []
        self.members: list[str] = []  # slot names that may own participants
        self.by_name: dict[str, SlotBook] = {}
        self.names: list[str] = []
        self._pidx: dict[str, int] = {}
        self._owner: dict[int, SlotBook] = {}
        self.moving: set[int] = set()
        self._counters: dict[int, int] = {}
        self._pending: dict[tuple[int, int], int] = {}  # (pidx, ssrc) -> frames at workers
        self._pending_runs: dict[int, int] = {}
        self._controls: dict[int, int] = {}  # pidx -> key operations not answered
        self.credit = Credits(s.limits.max_frames_in_flight, s.limits.max_bytes_in_flight)
        self._seq = 0
        self._batch_ids = 0
        self._last_tick = 0.0  # see start_clock
        self.on_idle: Callable[[], None] | None = None  # a moving participant went idle
        self.latency = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self.errors_by_reason: dict[str, int] = {}
        m = s.metrics  # per participant and stream outcomes (sans-I/O too)
        self.health = HealthBook(self.names, labels=m.participant_labels,
                                 label_max_chars=m.label_max_chars,
                                 streams=m.streams_per_participant,
                                 recover_after=m.recover_after_frames)
        self.counters: dict[str, int] = {
            "frames_submitted": 0, "frames_ok": 0, "frames_failed": 0,
            "frames_inline": 0, "frames_pool": 0, "bytes_in": 0, "bytes_out": 0,
            "batches_sent": 0, "overloaded": 0, "expired": 0, "worker_lost": 0,
            "redispatched": 0, "worker_deaths": 0, "worker_spawns": 0, "participants_moved": 0,
            "protocol_errors": 0, "events_dropped": 0, "control_errors": 0, "ring_full": 0,
            "loop_stalls": 0, "leases_stale": 0, "reserve_private": 0,
        }

    # --- slots, participants, owners ---------------------------------------------------

    def add_slot(self, name: str, *, remote: bool = False, member: bool = True) -> SlotBook:
        sl = SlotBook(len(self.slots), name, remote=remote)
        self.slots.append(sl)
        self.by_name[name] = sl
        if member:
            self.members.append(name)
        return sl

    def participant(self, name: str) -> int:
        pidx = self._pidx.get(name)
        if pidx is None:
            pidx = len(self.names)
            self._pidx[name] = pidx
            self.names.append(name)
        return pidx

    def owner(self, pidx: int) -> SlotBook:
        sl = self._owner.get(pidx)
        if sl is None:
            sl = self._owner[pidx] = self.by_name[owner(self.names[pidx], self.members)]
        return sl

    def owner_name(self, pidx: int) -> str:
        """The rendezvous owner of ``pidx`` among the current members."""
        return owner(self.names[pidx], self.members)

    def owned_by(self, sl: SlotBook) -> list[int]:
        return [p for p, o in self._owner.items() if o is sl]

    def busy(self, pidx: int) -> bool:
        """Frames or key operations of ``pidx`` queued or at a worker."""
        return bool(self._pending_runs.get(pidx) or self._controls.get(pidx))

    def hold(self, pidx: int) -> None:
        """Keep ``pidx`` off the inline path (its inline keys are being updated)."""
        self._controls[pidx] = self._controls.get(pidx, 0) + 1

    def unhold(self, pidx: int) -> None:
        n = self._controls.get(pidx, 1) - 1
        if n > 0:
            self._controls[pidx] = n
        else:
            self._controls.pop(pidx, None)
            if pidx in self.moving and self.on_idle is not None:
                self.on_idle()

    def controls_pending(self, pidx: int) -> bool:
        return bool(self._controls.get(pidx))

    def stream_busy(self, run: Run) -> bool:
        """Does any stream of ``run`` have frames at a worker (order: follow them)?"""
        pending, pidx = self._pending, run.pidx
        return any((pidx, ssrc) in pending for ssrc in run.streams)

    def reassign(self, pidx: int, sl: SlotBook) -> None:
        self._owner[pidx] = sl
        self.moving.discard(pidx)

    def drop_member(self, sl: SlotBook) -> None:
        if sl.name in self.members:
            self.members.remove(sl.name)

    def rebalance(self) -> list[tuple[int, SlotBook | None, SlotBook]]:
        """Participants whose rendezvous owner changed and who are idle now:
        ``(pidx, old, new)``, already reassigned (the caller hands their keys over).
        Busy ones wait in :attr:`moving` until they are idle."""
        for pidx, cur in list(self._owner.items()):
            if self.by_name[owner(self.names[pidx], self.members)] is not cur:
                self.moving.add(pidx)
        moves = []
        for pidx in list(self.moving):
            if self.busy(pidx):
                continue
            new = self.by_name[owner(self.names[pidx], self.members)]
            old = self._owner.get(pidx)
            self.moving.discard(pidx)
            if new is not old:
                self._owner[pidx] = new
                moves.append((pidx, old, new))
        return moves

    # --- counters (nonces) and credit --------------------------------------------------

    def reserve_counters(self, pidx: int, n: int) -> int:
        """Reserve ``n`` send counters of a participant; returns the first. One
        sequence per participant (all its streams and keys), so IV = ssrc ‖ epoch ‖
        counter and SFrame CTRs never repeat under a key, whatever the ssrc or KID."""
        c = self._counters.get(pidx, -1)
        if c < 0:
            c = self._rand48() if self._sframe else 0
        self._counters[pidx] = c + n
        return c

    # --- admission ---------------------------------------------------------------------

    def admit(self, run: Run) -> None:
        """Queue a run (its credit is taken) at its participant's slot."""
        pending, pidx = self._pending, run.pidx
        for ssrc, c in run.streams.items():
            pending[(pidx, ssrc)] = pending.get((pidx, ssrc), 0) + c
        run.queued = True
        self.owner(pidx).queue.append(Span(run, 0, len(run)))
        self._pending_runs[pidx] = self._pending_runs.get(pidx, 0) + 1
        self.counters["frames_pool"] += len(run)

    def control(self, pidx: int, op: str, args: tuple[Any, ...],
                on_done: Callable[[Control, list[Any] | None, BaseException | None], None]
                | None, *, slot: SlotBook | None = None) -> Control:
        """Queue a key operation behind the participant's frames (``slot``: another
        slot than its owner's, e.g. the old owner's ``remove`` after a move)."""
        self._seq += 1
        ctl = Control(self._seq, pidx, op, args, on_done)
        if on_done is not None:
            self._controls[pidx] = self._controls.get(pidx, 0) + 1
        (slot or self.owner(pidx)).queue.append(ctl)
        return ctl

    def replay(self, pidx: int, op: str, args: tuple[Any, ...]) -> Control:
        """A directory replay (nobody waits for it), sent straight to a new worker."""
        self._seq += 1
        return Control(self._seq, pidx, op, args)

    def control_done(self, ctl: Control, result: list[Any] | None,
                     err: BaseException | None) -> None:
        if ctl.on_done is not None:
            self.unhold(ctl.pidx)
        if err is not None:
            self.counters["control_errors"] += 1
        ctl.finish(result, err)

    # --- outcomes ----------------------------------------------------------------------

    def count_error(self, err: BaseException) -> None:
        self.counters["frames_failed"] += 1
        name = type(err).__name__
        self.errors_by_reason[name] = self.errors_by_reason.get(name, 0) + 1

    def fail_now(self, group: Group, pos: int, err: BaseException) -> None:
        """The outcome of a frame that never entered a run (no credit is held): it
        counts as submitted and failed, so the books add up."""
        self.counters["frames_submitted"] += 1
        group.results[pos] = err
        group.errors += 1
        self.count_error(err)
        group.done(1)

    def finish(self, run: Run, i: int, err: BaseException, now: float, *,
               release: bool = True) -> None:
        """Frame ``i`` of a run fails off the result path (expired, lost, closed):
        outcome, stream bookkeeping, credit (``release=False``: its message returns
        it)."""
        self.latency[bisect_left(LATENCY_BUCKETS_S, now - run.t0)] += 1
        g = run.group
        g.results[run.positions[i]] = err
        g.errors += 1
        self.count_error(err)
        k = run.lo + i
        self.health.record(run.pidx, run.op, run.batch.ssrcs, run.batch.codecs, k, k + 1,
                           fails=((k, type(err).__name__),))
        run.remaining -= 1
        if run.remaining == 0 and run.queued:
            self.run_done(run)
        g.done(1)
        if release:
            self.credit.release(1, run.size(i))

    def run_done(self, run: Run) -> None:
        """Every frame of a queued run has its outcome: its streams are free."""
        pidx = run.pidx
        left = self._pending_runs.get(pidx, 1) - 1
        if left > 0:
            self._pending_runs[pidx] = left
        else:
            self._pending_runs.pop(pidx, None)
            if pidx in self.moving and self.on_idle is not None:
                self.on_idle()
        pending = self._pending
        for ssrc, c in run.streams.items():
            left = pending.get((pidx, ssrc), c) - c
            if left > 0:
                pending[(pidx, ssrc)] = left
            else:
                pending.pop((pidx, ssrc), None)

    # --- dispatch ----------------------------------------------------------------------

    def select(self, sl: SlotBook, ring_limit: int) -> Control | Selection | None:
        """What to send ``sl`` next: the key operation at the head of its queue, or
        the head spans as one message (up to ``8 × batch.max_frames`` frames — larger
        messages leave broker and workers taking turns instead of overlapping — the
        worker's credit and ``ring_limit`` bytes), or None."""
        q = sl.queue
        if not q or sl.state != READY:
            return None
        if isinstance(q[0], Control):
            return q[0]
        if sl.frames >= self.worker_frames or sl.bytes >= self.worker_bytes:
            return None
        limit_b = min(ring_limit, self.worker_bytes - sl.bytes)
        segments: list[Segment] = []
        count = total = consumed = 0
        partial = -1
        for e in q:
            if isinstance(e, Control):
                break
            room = min(max(1, self.worker_frames - sl.frames), self.message_frames) - count
            if room <= 0:
                break
            run, a = e.run, e.pos
            offs, base = run.offsets, run.lo
            first = offs[base + a]
            stop = base + min(e.end, a + room)
            i = min(stop, bisect_right(offs, first + limit_b - total, base + a, stop + 1) - 1)
            if i <= base + a:
                if count:
                    break
                i = base + a + 1  # a frame bigger than the limit goes alone
            segments.append((run, a, i - base))
            count += i - base - a
            total += offs[i] - first
            if i - base < e.end:
                partial = i - base
                break
            consumed += 1
        if not count:
            return None
        return Selection(segments, count, total, consumed, partial)

    def next_batch_id(self) -> int:
        self._batch_ids += 1
        return self._batch_ids

    def sent_control(self, sl: SlotBook, ctl: Control, now: float) -> None:
        if sl.queue and sl.queue[0] is ctl:
            sl.queue.popleft()
        sl.inflight.append(ctl)
        sl.last_sent = now

    def commit(self, sl: SlotBook, sel: Selection, msg: InFlight, now: float) -> None:
        """``sel`` went out as ``msg``: off the queue, into the in-flight table."""
        q = sl.queue
        for _ in range(sel.consumed):
            q.popleft()
        if sel.partial >= 0:
            head = q[0]
            assert isinstance(head, Span)
            head.pos = sel.partial
        for run, a, b in sel.segments:
            att = run.attempts
            for i in range(a, b):
                att[i] += 1
        sl.inflight.append(msg)
        sl.frames += msg.count
        sl.bytes += msg.nbytes
        sl.last_sent = now
        self.counters["batches_sent"] += 1

    # --- replies -----------------------------------------------------------------------

    def heard(self, sl: SlotBook, now: float) -> None:
        sl.last_heard = now

    def _skip_to(self, sl: SlotBook, match: Callable[[InFlight | Control], bool],
                 now: float) -> list[InFlight]:
        """Replies come in order; entries before the one a reply answers were dropped
        by the worker (it could not parse them): they fail now, so nothing waits
        forever. Returns the dropped messages (their ring regions are the caller's)."""
        if not any(match(e) for e in sl.inflight):
            raise ProtocolError("reply matches nothing in flight")
        dropped = []
        while not match(sl.inflight[0]):
            e = sl.inflight.popleft()
            self.counters["protocol_errors"] += 1
            err = ProtocolError("the worker dropped this message")
            if isinstance(e, Control):
                self.control_done(e, None, err)
                continue
            sl.frames -= e.count
            sl.bytes -= e.nbytes
            for run, a, b in e.segments:
                for i in range(a, b):
                    self.finish(run, i, err, now)
            dropped.append(e)
        return dropped

    def answer_control(self, sl: SlotBook, seq: int, now: float) -> tuple[Control,
                                                                            list[InFlight]]:
        dropped = self._skip_to(sl, lambda e: isinstance(e, Control) and e.seq == seq, now)
        ctl = sl.inflight.popleft()
        assert isinstance(ctl, Control)
        return ctl, dropped

    def answer_batch(self, sl: SlotBook, batch_id: int, count: int, nsegments: int,
                     now: float) -> tuple[InFlight, list[InFlight]]:
        """The message a RESULT answers (still in the table until :meth:`batch_done`)."""
        dropped = self._skip_to(sl, lambda e: isinstance(e, InFlight) and
                                e.batch_id == batch_id, now)
        msg = sl.inflight[0]
        assert isinstance(msg, InFlight)
        if count != msg.count or nsegments != msg.nwire:
            raise ProtocolError("RESULT does not match its batch")
        return msg, dropped

    def batch_done(self, sl: SlotBook, msg: InFlight, now: float) -> None:
        """A message's frames have their outcomes: latency, the slot's load, its ring
        regions, credit."""
        sl.inflight.popleft()
        count = msg.count
        self.latency[bisect_left(LATENCY_BUCKETS_S, now - msg.segments[0][0].t0)] += count
        sl.frames -= count
        sl.frames_done += count
        sl.bytes -= msg.nbytes
        self.free_rings(sl, msg)
        self.credit.release(count, msg.nbytes)

    def free_rings(self, sl: SlotBook, msg: InFlight) -> None:
        if msg.req_span is not None and sl.req_ring is not None:
            sl.req_ring.release_any(*msg.req_span)
        if msg.rep_span is not None and sl.rep_ring is not None and not msg.rep_leased:
            sl.rep_ring.release_any(*msg.rep_span)

    # --- time: liveness and expiry -----------------------------------------------------

    def start_clock(self, now: float) -> None:
        """The time the first :meth:`tick` is measured from (lateness detection)."""
        self._last_tick = now

    def tick(self, now: float, *, check_silence: bool = True) -> list[Ping | Dead]:
        """Heartbeats: PINGs owed and workers silent past their liveness. A late tick
        (a stalled loop, a frozen VM) gives every worker a fresh interval instead of
        declaring them all dead."""
        actions: list[Ping | Dead] = []
        last, self._last_tick = self._last_tick, now
        if now - last > 2 * self.interval:
            self.counters["loop_stalls"] += 1
            for sl in self.slots:
                sl.last_heard = max(sl.last_heard, now - self.interval)
        for sl in self.slots:
            if sl.state not in (READY, STARTING):
                continue
            if check_silence or sl.remote:
                limit = self.interval * self.liveness
                if sl.state == STARTING:
                    limit = max(limit, STARTUP_GRACE_S)
                if now - sl.last_heard > limit:
                    actions.append(Dead(sl, "heartbeat"))
                    continue
            if sl.state == READY and now - sl.last_sent >= self.interval:
                actions.append(Ping(sl))
                sl.last_sent = now
            if sl.queue and self.budget:
                self.expire(sl, now)
        return actions

    def expire(self, sl: SlotBook, now: float) -> None:
        """Real-time policy: queued delta frames older than the budget fail with
        FrameExpired; key frames always go on. Spans queue in submission order
        (re-queued ones, older, at the front), so the expired ones are a prefix."""
        q = sl.queue
        cut = 0
        for e in q:
            if isinstance(e, Span) and now - e.run.t0 <= self.budget:
                break
            cut += 1
        if not any(isinstance(q[i], Span) for i in range(cut)):
            return
        keep: deque[Span | Control] = deque()
        for _ in range(cut):
            e = q.popleft()
            if isinstance(e, Control):
                keep.append(e)
                continue
            run = e.run
            err = FrameExpired((now - run.t0) * 1000)
            for i in range(e.pos, e.end):
                if run.keyframe(i):
                    keep.append(Span(run, i, i + 1))
                else:
                    self.counters["expired"] += 1
                    self.finish(run, i, err, now)
        keep.extend(q)
        sl.queue = keep

    # --- deaths and shutdown -----------------------------------------------------------

    def worker_lost(self, sl: SlotBook, now: float) -> list[Span | Control]:
        """``sl``'s worker is gone: what it held goes back to the head of its queue
        (same counters, same credit) unless a frame was dispatched ``attempts`` times
        (then WorkerLost); key operations somebody waits for are re-sent, directory
        replays are not (the next worker gets a fresh snapshot). Returns the entries
        re-queued, for a caller that moves them elsewhere."""
        self.counters["worker_deaths"] += 1
        sl.state = DEAD
        requeue: list[Span | Control] = []
        for entry in sl.inflight:
            if isinstance(entry, Control):
                if entry.on_done is not None:
                    requeue.append(entry)
                continue
            for run, a, b in entry.segments:
                start = a
                for i in range(a, b):
                    if run.attempts[i] >= self.attempts:
                        if i > start:
                            requeue.append(Span(run, start, i))
                        start = i + 1
                        self.counters["worker_lost"] += 1
                        self.finish(run, i, WorkerLost(run.attempts[i]), now)
                if b > start:
                    requeue.append(Span(run, start, b))
                    self.counters["redispatched"] += b - start
        sl.inflight.clear()
        sl.frames = sl.bytes = 0
        sl.req_ring = sl.rep_ring = None
        sl.queue.extendleft(reversed(requeue))
        return requeue

    def fail_slot(self, sl: SlotBook, err: BaseException, now: float) -> None:
        for entry in list(sl.inflight) + list(sl.queue):
            if isinstance(entry, InFlight):
                for run, a, b in entry.segments:
                    for i in range(a, b):
                        self.finish(run, i, err, now)
            elif isinstance(entry, Span):
                for i in range(entry.pos, entry.end):
                    self.finish(entry.run, i, err, now)
            else:
                self.control_done(entry, None, err)
        sl.inflight.clear()
        sl.queue.clear()

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has something to do (None: nothing runs): a PING
        owed, a worker's liveness running out, the oldest queued frame expiring."""
        ticks = [sl.last_sent + self.interval for sl in self.slots if sl.state == READY]
        ticks += [sl.last_heard + self.interval * self.liveness
                  for sl in self.slots if sl.state in (READY, STARTING)]
        if self.budget:
            heads = [sl.queue[0] for sl in self.slots if sl.queue]
            ticks += [e.run.t0 + self.budget for e in heads if isinstance(e, Span)]
        return min(ticks) if ticks else None
