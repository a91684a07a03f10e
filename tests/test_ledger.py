"""The broker's sans-I/O core with a fake clock: no socket, no process, no event loop.

Credits, counters, ordering and message selection, expiry, liveness, re-dispatch after
a death with the same counters, replies that skip dropped messages — each driven by
``now`` values the test chooses.
"""

from __future__ import annotations

from typing import Any

import pytest

from framecrypt.batch import FrameBatch
from framecrypt.broker.credits import Credits
from framecrypt.broker.keydir import KeyDirectory
from framecrypt.broker.ledger import READY, STARTING, Dead, Ledger, Ping, Selection, SlotBook
from framecrypt.broker.runs import ENCRYPT, Control, Group, InFlight, Run
from framecrypt.conf import load_settings
from framecrypt.errors import FrameExpired, ProtocolError, WorkerLost


def ledger(**options: Any) -> Ledger:
    s = load_settings().replace(workers=1, **options)
    led = Ledger(s, rand48=lambda: 1 << 40, sframe=False)
    led.add_slot("w0")
    return led


def ready(led: Ledger, now: float = 0.0) -> SlotBook:
    sl = led.slots[0]
    sl.state = READY
    sl.last_heard = sl.last_sent = now
    led.start_clock(now)
    return sl


def run_of(led: Ledger, name: str, sizes: list[int], *, t0: float = 0.0, ssrc: int = 1,
           keyframes: list[bool] | None = None, group: Group | None = None) -> Run:
    b = FrameBatch.of([bytes(n) for n in sizes], codec="vp8", ssrc=ssrc,
                      keyframes=keyframes if keyframes is not None else False)
    pidx = led.participant(name)
    g = group or Group(len(sizes))
    r = Run(ENCRYPT, pidx, g, t0, b, b.offsets(), 0, len(sizes),
            led.reserve_counters(pidx, len(sizes)))
    assert led.credit.try_take(len(sizes), b.nbytes)
    led.admit(r)
    return r


def send(led: Ledger, sl: SlotBook, now: float = 0.0, ring: int = 1 << 30) -> InFlight:
    sel = led.select(sl, ring)
    assert isinstance(sel, Selection)
    msg = InFlight(led.next_batch_id(), sel.segments, sel.count, sel.nbytes, None, None,
                   [], 0.0)
    led.commit(sl, sel, msg, now)
    return msg


# --- credits ---------------------------------------------------------------------------


def test_credits_bound_frames_and_bytes_and_serve_waiters_in_order() -> None:
    c = Credits(max_frames=10, max_bytes=1000)
    assert c.try_take(8, 100)
    assert not c.try_take(3, 100)  # frames
    granted: list[str] = []
    c.wait(3, 100, lambda: granted.append("a") is None)
    c.wait(1, 10, lambda: granted.append("b") is None)
    assert not c.try_take(1, 1)  # someone waits: no overtaking
    c.release(1, 10)  # 7 out: room for "a" (3) -> 10; not "b"
    assert granted == ["a"] and c.frames_out == 10
    c.release(10, 190)
    assert granted == ["a", "b"] and (c.frames_out, c.bytes_out) == (1, 10)
    # a cancelled waiter gives its reservation back
    c2 = Credits(1, 1000)
    assert c2.try_take(1, 1)
    c2.wait(1, 1, lambda: False)
    c2.release(1, 1)
    assert c2.frames_out == 0 and c2.waiting == 0
    # a frame bigger than the byte limit goes when nothing else is in flight
    assert Credits(10, 100).try_take(1, 10_000)


# --- counters, ordering, selection -----------------------------------------------------


def test_counters_are_one_sequence_per_participant_and_never_repeat() -> None:
    led = ledger()
    assert led.reserve_counters(0, 5) == 0 and led.reserve_counters(0, 3) == 5
    assert led.reserve_counters(1, 2) == 0
    sf = Ledger(load_settings().replace(workers=1), rand48=lambda: 12345, sframe=True)
    assert sf.reserve_counters(0, 4) == 12345 and sf.reserve_counters(0, 1) == 12349


def test_select_takes_head_spans_up_to_the_limits_and_stops_at_a_control() -> None:
    led = ledger(batch__max_frames=4, worker_frames_in_flight=100)  # 32 frames a message
    sl = ready(led)
    a = run_of(led, "a", [100] * 20)
    b = run_of(led, "b", [100] * 20)
    led.control(led.participant("a"), "ratchet", (0, 0), lambda *_: None)
    c = run_of(led, "a", [100] * 5)
    m1 = send(led, sl)
    assert [(r, x, y) for r, x, y in m1.segments] == [(a, 0, 20), (b, 0, 12)]
    m2 = send(led, sl)
    assert [(r, x, y) for r, x, y in m2.segments] == [(b, 12, 20)]  # stops at the control
    ctl = led.select(sl, 1 << 30)
    assert isinstance(ctl, Control) and ctl.op == "ratchet"
    led.sent_control(sl, ctl, 0.0)
    m3 = send(led, sl)
    assert [(r, x, y) for r, x, y in m3.segments] == [(c, 0, 5)]
    assert led.select(sl, 1 << 30) is None
    # the ring limit: bytes per message; one frame over it still goes alone
    d = run_of(led, "a", [300, 300, 300, 5000])
    assert [(x, y) for _, x, y in send(led, sl, ring=700).segments] == [(0, 2)]
    assert [(x, y) for _, x, y in send(led, sl, ring=700).segments] == [(2, 3)]
    assert [(x, y) for _, x, y in send(led, sl, ring=700).segments] == [(3, 4)]
    assert d.attempts == bytearray([1, 1, 1, 1])


def test_worker_credit_holds_back_the_queue() -> None:
    led = ledger(worker_frames_in_flight=8, batch__max_frames=8)
    sl = ready(led)
    run_of(led, "a", [10] * 20)
    assert send(led, sl).count == 8
    assert led.select(sl, 1 << 30) is None  # the worker holds its credit's worth


def test_streams_are_busy_while_their_frames_are_at_a_worker() -> None:
    led = ledger()
    sl = ready(led)
    r = run_of(led, "a", [10, 10], ssrc=7)
    probe = Run(ENCRYPT, r.pidx, Group(1), 0.0, r.batch, r.offsets, 0, 1, 0)
    assert led.stream_busy(probe)
    other = FrameBatch.of([b"x"], ssrc=8)
    assert not led.stream_busy(Run(ENCRYPT, r.pidx, Group(1), 0.0, other, other.offsets(),
                                   0, 1, 0))
    msg = send(led, sl)
    from framecrypt.broker.batcher import take_piece
    from framecrypt.transports import wire

    res = b"".join(wire.RES.pack(0, 0, 10) for _ in range(2))
    assert take_piece(led, r, 0, 2, res, bytes(20), 0, b"") == []
    led.batch_done(sl, msg, 1.0)
    assert not led.stream_busy(probe) and led.credit.frames_out == 0
    assert r.group.remaining == 0


# --- expiry ----------------------------------------------------------------------------


def test_expiry_fails_old_deltas_and_keeps_keyframes() -> None:
    led = ledger(latency_budget_ms=20)
    sl = ready(led)
    done: list[Group] = []
    g = Group(6, done.append)
    run_of(led, "a", [10] * 6, t0=0.0, keyframes=[True, False, False, True, False, False],
           group=g)
    led.expire(sl, 0.019)
    assert not done and led.counters["expired"] == 0  # within the budget
    led.expire(sl, 0.021)
    assert [type(r) for r in g.results] == [type(None), FrameExpired, FrameExpired,
                                           type(None), FrameExpired, FrameExpired]
    assert led.counters["expired"] == 4 and led.credit.frames_out == 2
    assert led.next_deadline() is not None
    m = send(led, sl)
    assert [(x, y) for _, x, y in m.segments] == [(0, 1), (3, 4)]


# --- liveness --------------------------------------------------------------------------


def test_heartbeats_pings_deaths_and_a_late_tick() -> None:
    led = ledger(heartbeat_interval_s=1.0, heartbeat_liveness=3)
    sl = ready(led, now=0.0)
    assert led.tick(0.5) == []
    acts = led.tick(1.0)
    assert acts == [Ping(sl)] and sl.last_sent == 1.0
    led.heard(sl, 1.5)
    assert led.tick(2.0) == [Ping(sl)]
    assert led.next_deadline() == pytest.approx(3.0)
    assert led.tick(3.0) == [Ping(sl)] and led.tick(4.0) == [Ping(sl)]
    assert led.tick(4.6) == [Dead(sl, "heartbeat")]  # silent 3.1 s > 3 x 1 s
    # a tick 10 intervals late is this process's stall, not the worker's death
    led2 = ledger(heartbeat_interval_s=1.0, heartbeat_liveness=3)
    sl2 = ready(led2, now=0.0)
    assert all(not isinstance(a, Dead) for a in led2.tick(10.0))
    assert led2.counters["loop_stalls"] == 1
    # a starting worker has the interpreter's start-up as its grace
    sl2.state = STARTING
    sl2.last_heard = 20.0
    led2.start_clock(20.0)
    assert led2.tick(21.0) == [] and led2.tick(22.0) == []


# --- deaths: re-dispatch with the same counters, then WorkerLost ------------------------


def test_a_dead_workers_frames_are_redispatched_with_their_counters() -> None:
    led = ledger(dispatch_attempts=2)
    sl = ready(led)
    r = run_of(led, "a", [10] * 4)
    first = send(led, sl)
    assert [(x, y) for _, x, y in first.segments] == [(0, 4)]
    requeued = led.worker_lost(sl, 1.0)
    assert len(requeued) == 1 and sl.inflight == type(sl.inflight)()
    assert led.counters["redispatched"] == 4 and led.credit.frames_out == 4
    sl.state = READY
    again = send(led, sl)
    (run, a, b), = again.segments
    assert run is r and (a, b) == (0, 4) and r.counter0 == 0  # same frames, same counters
    led.worker_lost(sl, 2.0)  # second attempt lost: WorkerLost, credit back
    assert all(isinstance(x, WorkerLost) for x in r.group.results)
    assert r.group.remaining == 0 and led.credit.frames_out == 0
    assert led.counters["worker_lost"] == 4


def test_a_reply_that_skips_messages_fails_the_skipped_ones() -> None:
    led = ledger(batch__max_frames=1)  # 8 frames a message
    sl = ready(led)
    r1 = run_of(led, "a", [10] * 8)
    r2 = run_of(led, "b", [10] * 8)
    m1, m2 = send(led, sl), send(led, sl)
    with pytest.raises(ProtocolError):
        led.answer_batch(sl, 999, 8, 1, 0.0)
    msg, dropped = led.answer_batch(sl, m2.batch_id, 8, 1, 0.0)
    assert msg is m2 and dropped == [m1]
    assert all(isinstance(x, ProtocolError) for x in r1.group.results)
    assert r2.group.remaining == 8 and led.counters["protocol_errors"] == 1
    with pytest.raises(ProtocolError):  # the count must match its message
        led.answer_batch(sl, m2.batch_id, 7, 1, 0.0)


def test_key_operations_answered_out_of_order_fail_typed() -> None:
    led = ledger()
    sl = ready(led)
    answers: list[Any] = []
    led.participant("a")
    c1 = led.control(0, "keyset", (), lambda c, r, e: answers.append((c.seq, e)))
    c2 = led.control(0, "ratchet", (), lambda c, r, e: answers.append((c.seq, e)))
    for c in (c1, c2):
        led.sent_control(sl, c, 0.0)
    assert led.controls_pending(0)
    got, _ = led.answer_control(sl, c2.seq, 0.0)
    assert got is c2 and answers[0][0] == c1.seq and isinstance(answers[0][1], ProtocolError)
    led.control_done(got, [1], None)
    assert not led.controls_pending(0) and answers[1] == (c2.seq, None)


def test_key_directory_snapshots_hold_material_and_generation_only() -> None:
    kd = KeyDirectory(sframe=True)
    kd.set_key(3, "alice", 0, b"k0", "hkdf", make_current=True)
    kd.set_key(3, "alice", 2, b"k2", "hkdf", make_current=False)
    assert kd.ratcheted(3, 0, 2, make_current=True)
    assert not kd.ratcheted(3, 0, 1, make_current=True)  # never backwards
    kd.raise_floors(3, [(0, 10), (0, 7), (2, 4)])
    ops = kd.snapshot(3)
    assert [o.op for o in ops] == ["keyset", "keyset", "replay_floor"]
    assert ops[1].args == (3, "alice", 0, b"k0", "hkdf", 2, True)  # current one last
    assert ops[2].args == (3, [[0, 10], [2, 4]])
    assert "k0" not in repr(ops) and "k0" not in repr(kd)
    kd.remove(3)
    assert kd.snapshot(3) == [] and kd.floors(3) == {}
