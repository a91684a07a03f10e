"""PACKED messages out of queued spans, and their results back into outcomes
(sans-I/O: buffers in, message parts and outcomes out; no sockets, no clocks).

A message carries several columnar segments (one run's frames ``[a, b)`` each): one
copy of each segment's payloads into the worker's request ring, back to back; the
per-frame columns (lengths, ssrcs, timestamps as little-endian u32; codecs, flags as
bytes) in one blob; outputs land in a reply-ring region reserved per message.
Without rings (``ipc``/``tcp``) payloads and outputs travel in the messages.
"""

from __future__ import annotations

import sys
from array import array
from itertools import accumulate

from framecrypt.batch import OutputPiece, status_error
from framecrypt.broker.keydir import KeyDirectory
from framecrypt.broker.ledger import Ledger, Selection, SlotBook
from framecrypt.broker.runs import ENCRYPT, InFlight, Lease, Run
from framecrypt.errors import ProtocolError
from framecrypt.transports import wire
from framecrypt.workers.engine import reply_size

__all__ = ["deliver", "encode", "ring_limit", "take_piece"]

_LITTLE = sys.byteorder == "little"


def _le(col: array[int]) -> bytes:
    """A u32 column as little-endian bytes (the wire's byte order)."""
    if _LITTLE:
        return col.tobytes()
    c = array("I", col)
    c.byteswap()
    return c.tobytes()




def _bytes_out(res: bytes) -> int:
    """Output bytes of result records ``(status, offset, length)``, little-endian u32s."""
    if _LITTLE:
        return sum(memoryview(res).cast("I")[2::3])
    records = array("I")
    records.frombytes(res)
    records.byteswap()
    return sum(records[2::3])


def take_piece(ledger: Ledger, run: Run, a: int, b: int, res: bytes,
               buf: bytes | bytearray | memoryview, base: int, spill: bytes,
               lease: Lease | None = None) -> list[int]:
    """Outcomes of frames ``[a, b)`` of a run from their result records: outputs
    stay in ``buf``/``spill``, errors are typed and counted. Returns the frames
    marked for a retry (:data:`wire.ST_RETRY`), which have no outcome yet."""
    g = run.group
    statuses = res[0 :: wire.RES.size]
    count = b - a
    nok = statuses.count(wire.ST_OK) + statuses.count(wire.ST_INLINE)
    retry: list[int] = []
    fails: list[tuple[int, str]] = []  # (batch index, error class): per-stream health
    k0 = run.lo + a
    if nok != count:
        unpack = wire.RES.unpack_from
        for k, st in enumerate(statuses):
            if st == wire.ST_OK or st == wire.ST_INLINE:
                continue
            if st == wire.ST_RETRY:
                retry.append(a + k)
                continue
            err = status_error(st, unpack(res, k * wire.RES.size)[1])
            g.results[run.positions[a + k]] = err
            g.errors += 1
            ledger.count_error(err)
            fails.append((k0 + k, type(err).__name__))
    streams = run.streams  # frames per SSRC of the whole run: no counting again
    ledger.health.record(run.pidx, run.op, run.batch.ssrcs, run.batch.codecs, k0, k0 + count,
                         streams={next(iter(streams)): count} if len(streams) == 1 else
                         streams if count == len(run) else None,
                         fails=fails, skip=[run.lo + i for i in retry])
    lo = run.positions[a]
    if isinstance(run.positions, range):
        g.pieces.append(OutputPiece(lo, lo + count, res, buf, base, spill,
                                    None if lease is None else lease.hold()))
    else:  # a retry run's frames are scattered in the group: outputs in place
        unpack = wire.RES.unpack_from
        for k in range(count):
            st, off, n = unpack(res, k * wire.RES.size)
            if st == wire.ST_OK:
                g.results[run.positions[a + k]] = bytes(buf[off - base : off - base + n])
            elif st == wire.ST_INLINE:
                g.results[run.positions[a + k]] = bytes(spill[off : off + n])
    ledger.counters["frames_ok"] += nok
    ledger.counters["bytes_out"] += _bytes_out(res)
    done = count - len(retry)
    run.remaining -= done
    if run.remaining == 0 and run.queued:
        ledger.run_done(run)
    g.done(done)
    return retry


def ring_limit(sl: SlotBook, max_bytes: int) -> int:
    """Payload bytes one message may carry: a quarter of the request ring with shm
    (only the columns travel over ZeroMQ), ``batch.max_bytes`` without."""
    return sl.req_ring.capacity // 4 if sl.req_ring is not None else max_bytes


def encode(sl: SlotBook, sel: Selection, batch_id: int, epoch: int,
           view: memoryview | None) -> tuple[InFlight, list[bytes]] | None:
    """The PACKED message of ``sel`` and its in-flight record, with the payloads
    copied into ``view`` (the request ring) when the slot has rings; None when a ring
    has no room now (nothing is changed). Consecutive runs of one participant and op
    (with consecutive counters when sealing: e.g. many one-frame calls) travel as one
    wire segment, so a worker's per-segment work is paid once for them."""
    heads: list[list[int]] = []  # op, participant, counter0, n, nbytes (in, out later)
    wire_of: list[int] = []
    # per head: where its payloads already are in this slot's request ring (a RingBatch
    # reserved there: zero-copy ingress), or -1 (copied into this message's span)
    homes: list[int] = []
    for run, a, b in sel.segments:
        n, nbytes = b - a, run.nbytes_of(a, b)
        c0 = run.counter0 + a if run.op == ENCRYPT else 0
        home = _home(sl, run, a, view)
        h = heads[-1] if heads else None
        if h is not None and home < 0 and homes[-1] < 0 and h[0] == run.op and \
                h[1] == run.pidx and (run.op != ENCRYPT or h[2] + h[3] == c0):
            h[3] += n
            h[4] += nbytes
        else:
            heads.append([run.op, run.pidx, c0, n, nbytes])
            homes.append(home)
        wire_of.append(len(heads) - 1)
    out_total = sum(reply_size(h[0], h[3], h[4]) for h in heads)
    copied = sum(h[4] for h, home in zip(heads, homes, strict=True) if home < 0)
    req_span = rep_span = None
    roff = ooff = 0
    if sl.req_ring is not None and sl.rep_ring is not None and view is not None:
        rn, on = max(copied, 1), max(out_total, 1)
        got = sl.req_ring.alloc(rn)
        if got is None:
            return None
        got2 = sl.rep_ring.alloc(on)
        if got2 is None:
            sl.req_ring.cancel(got, rn)
            return None
        roff, ooff = got, got2
        req_span, rep_span = (roff, rn), (ooff, on)
    out_starts: list[int] = []
    pos, opos = roff, ooff
    for h, home in zip(heads, homes, strict=True):  # in_base, out_base: back to back
        out_starts.append(opos - ooff)
        nbytes = h[4]
        if home >= 0:
            h[4] = home
        else:
            h[4] = pos
            pos += nbytes
        h.append(opos)
        opos += reply_size(h[0], h[3], nbytes)
    cols: list[list[bytes | bytearray]] = [[], [], [], [], []]
    blobs: list[memoryview] = []
    pos = roff
    for (run, a, b), s in zip(sel.segments, wire_of, strict=True):
        bat = run.batch
        lo, hi = run.lo + a, run.lo + b
        d0, d1 = run.offsets[lo], run.offsets[hi]
        if homes[s] < 0:
            data = memoryview(bat.data)[d0:d1]
            if req_span is not None:
                assert view is not None
                view[pos : pos + d1 - d0] = data
            else:
                blobs.append(data)
            pos += d1 - d0
        cols[0].append(_le(bat.lengths[lo:hi]))
        cols[1].append(_le(bat.ssrcs[lo:hi]))
        cols[2].append(_le(bat.timestamps[lo:hi]))
        cols[3].append(bat.codecs[lo:hi])
        cols[4].append(bat.flags[lo:hi])
    msg = InFlight(batch_id, sel.segments, sel.count, sel.nbytes, req_span, rep_span,
                   out_starts, 0.0, wire_of)
    parts = [wire.pack(wire.PACKED, batch_id, sel.count, epoch, heads),
             b"".join([c for col in cols for c in col])]
    if req_span is None:
        parts.append(b"".join(blobs))
    return msg, parts


def _home(sl: SlotBook, run: Run, a: int, view: memoryview | None) -> int:
    """Where frames ``a…`` of ``run`` already lie in ``sl``'s request ring: a
    :class:`~framecrypt.batch.RingBatch` reserved there (its ``home`` is that ring
    allocator and the reservation's offset); -1 otherwise (moved participant,
    respawned worker, private buffer: the payloads are copied)."""
    home = getattr(run.batch, "home", None)
    if home is None or view is None or home[0] is not sl.req_ring:
        return -1
    return int(home[1] + run.offsets[run.lo + a])


def deliver(ledger: Ledger, keys: KeyDirectory, msg: InFlight, res: bytes,
            used: list[int], floors: list[list[tuple[int, int]]],
            rep: memoryview | None, spill: bytes, outputs: bytes | None, now: float,
            lease: Lease | None = None) -> None:
    """Every frame of ``msg`` gets its outcome from a worker's RESULT: ``res`` (12-byte
    records), ``used`` reply bytes per segment, SFrame ``floors`` per segment, the
    reply ring ``rep`` (or ``outputs``, the segments' outputs back to back, without
    rings) and the ``spill`` blob (outputs that did not fit their region).
    With ``lease`` (some runs belong to zero-copy groups) those runs' pieces are views
    into the reply ring, each holding the lease; the others get one copy as usual."""
    if len(res) != wire.RES.size * msg.count or len(used) != msg.nwire:
        raise ProtocolError("RESULT does not match its batch")
    view: memoryview | None = None
    copied: bytes | memoryview | None = None
    if msg.rep_span is not None and rep is not None:
        starts = msg.out_starts
        base, size = msg.rep_span
        end = min(size, starts[-1] + used[-1])
        view = rep[base : base + end]
    else:
        starts = [0, *accumulate(used[:-1])]
        copied = outputs or b""
    k = 0
    for (run, a, b), s in zip(msg.segments, msg.wire_of, strict=True):
        k1 = k + (b - a) * wire.RES.size
        held = lease if lease is not None and view is not None and run.group.zero_copy \
            else None
        if held is not None:
            buf: bytes | memoryview = view  # type: ignore[assignment]
        else:
            if copied is None:
                assert view is not None
                copied = bytes(view)  # one copy out of the ring
            buf = copied
        retry = take_piece(ledger, run, a, b, res[k:k1], buf, -starts[s], spill, held)
        k = k1
        for i in retry:  # workers answer every frame; a retry mark is a protocol error
            ledger.counters["protocol_errors"] += 1
            ledger.finish(run, i, ProtocolError("unexpected retry"), now, release=False)
    for s, pairs in enumerate(floors):
        if pairs:
            keys.raise_floors(msg.segments[msg.wire_of.index(s)][0].pidx, pairs)

