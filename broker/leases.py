"""Ring space held past a message's round trip (sans-I/O): the zero-copy paths.

- *Egress*: a reply region whose outputs zero-copy results keep as views is freed
  by a :class:`~framecrypt.broker.runs.Lease` when the last of them lets go, not by
  the ledger when the RESULT is in.
- *Ingress*: :func:`reserve` takes room in a worker's request ring for a
  :class:`~framecrypt.batch.RingBatch` that frames are written into in place; the
  batcher sends those frames where they lie (``batcher._home``).

Both release out of order (:meth:`RingAllocator.release_any`): a region freed early
is popped in its FIFO turn. A region in a ring that was replaced meanwhile (the
worker was respawned) is nobody's to free: ``leases_stale`` counts such releases.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from framecrypt.broker.ledger import READY, SlotBook
from framecrypt.broker.runs import InFlight, Lease
from framecrypt.transports.errors import ReleaseOrderError
from framecrypt.transports.ring import RingAllocator

__all__ = ["lease_for", "reserve"]


def _freer(sl: SlotBook, ring: RingAllocator, off: int, n: int, counters: dict[str, int],
           wake: Callable[[], None]) -> Callable[[], None]:
    def free() -> None:
        if sl.req_ring is not ring and sl.rep_ring is not ring:
            return  # the ring was replaced (a respawn): its memory goes with its views
        try:
            ring.release_any(off, n)
        except ReleaseOrderError:  # the ring was reset meanwhile
            counters["leases_stale"] += 1
        wake()  # queued runs may have waited for ring room

    return free


def lease_for(sl: SlotBook, msg: InFlight, counters: dict[str, int],
              wake: Callable[[], None]) -> Lease | None:
    """A lease on ``msg``'s reply region when zero-copy groups will hold views into
    it (None otherwise: the ledger frees the region with the message)."""
    span, ring = msg.rep_span, sl.rep_ring
    if span is None or ring is None or not any(
            run.group.zero_copy for run, _, _ in msg.segments):
        return None
    return Lease(_freer(sl, ring, span[0], span[1], counters, wake))


def reserve(sl: SlotBook, view: memoryview | None, nbytes: int, counters: dict[str, int],
            wake: Callable[[], None]
            ) -> tuple[memoryview, Callable[[], None], tuple[Any, int]] | None:
    """``nbytes`` of ``sl``'s request ring (``view`` maps it): the buffer, its release
    and its home for the batcher; None when the slot has no ring, is not ready, has
    no room now, or ``nbytes`` is over a quarter of the ring (one message's share)."""
    ring = sl.req_ring
    if ring is None or view is None or sl.state != READY or nbytes > ring.capacity // 4:
        return None
    off = ring.alloc(nbytes)
    if off is None:
        return None
    return (view[off : off + nbytes], _freer(sl, ring, off, nbytes, counters, wake),
            (ring, off))
