"""The broker's bookkeeping of a shared-memory ring: :class:`RingAllocator`, a FIFO
allocator of byte ranges (which bytes of a :class:`~framecrypt.transports.shm.Segment`
are in use). Pure bookkeeping: it never touches the memory itself.

How the pool uses it (alloc per batch, FIFO release, backpressure with ``None``) is
described in :mod:`framecrypt.transports.shm`, which re-exports it.
"""

from __future__ import annotations

from collections import deque

from framecrypt.errors import InvalidParameter
from framecrypt.transports.errors import FrameTooLarge, ReleaseOrderError


class _Span:
    """One allocation of a :class:`RingAllocator`."""

    __slots__ = ("cost", "freed", "n", "offset", "prev_head", "prev_last", "skipped")

    def __init__(
        self, offset: int, n: int, cost: int, skipped: int, prev_head: int, prev_last: _Span | None
    ) -> None:
        self.offset = offset
        self.n = n
        # bytes freed when released: n rounded up to align, plus a skipped tail that
        # follows it (added when a later allocation wraps); -1 once released
        self.cost = cost
        self.skipped = skipped  # the tail this allocation skipped (charged to prev_last)
        self.prev_head = prev_head  # for cancel()
        self.prev_last = prev_last
        self.freed = False  # released out of order (release_any): popped in its turn


class RingAllocator:
    """FIFO allocator of byte ranges in a ring of ``capacity`` bytes (broker side).

    ``alloc(n)`` returns the offset of ``n`` contiguous bytes, starting on a multiple
    of ``align``: right after the newest allocation if it fits before the end,
    else at 0 if it fits before the oldest live allocation (the skipped tail
    counts as used until the allocations before the wrap are released), else
    ``None`` (full: backpressure). A request larger than the ring raises
    :class:`FrameTooLarge`. Allocations are released oldest first, with
    ``release(offset, n)`` (checked) or ``release_oldest()``; ``cancel(offset, n)``
    undoes the newest one. When nothing is in use the next allocation starts at 0
    again, so an empty ring always has its whole capacity in one piece.

    ``used`` counts alignment padding and skipped tails, so ``used + free ==
    capacity`` and ``used`` returns to 0 when everything is released. ``alloc(0)``
    is allowed (a batch with no payload bytes): it takes no space, always succeeds
    and must be released in its turn like any other allocation.

    Every call is O(1) and does no per-byte work.
    """

    __slots__ = ("_align", "_capacity", "_head", "_last", "_mask", "_spans", "_used")

    def __init__(self, capacity: int, *, align: int = 64) -> None:
        if not isinstance(align, int) or isinstance(align, bool) or align < 1 or align & align - 1:
            raise InvalidParameter(f"align must be a power of two >= 1, got {align!r}")
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0:
            raise InvalidParameter(f"ring capacity must be a positive int, got {capacity!r}")
        if capacity % align:
            raise InvalidParameter(f"ring capacity {capacity} is not a multiple of align {align}")
        self._capacity = capacity
        self._align = align
        self._mask = align - 1
        self._head = 0  # where the next allocation would start
        self._used = 0  # bytes from the oldest live allocation to head, gaps included
        # live allocations, oldest first
        self._spans: deque[_Span] = deque()
        self._last: _Span | None = None  # the newest live span with bytes

    def alloc(self, n: int) -> int | None:
        """Offset of ``n`` contiguous bytes, or ``None`` if they do not fit now.

        Raises :class:`FrameTooLarge` if ``n > capacity`` (it never could fit) and
        :class:`~framecrypt.errors.InvalidParameter` if ``n < 0``.
        """
        cap = self._capacity
        if n > cap:
            raise FrameTooLarge(n, cap)
        if n < 0:
            raise InvalidParameter(f"cannot allocate {n} bytes")
        need = (n + self._mask) & ~self._mask
        used = self._used
        head = self._head
        skipped = 0
        if used == 0:  # empty: start over at 0, the whole ring is free in one piece
            off = 0
        else:
            tail = (head - used) % cap
            if head > tail:  # live is [tail, head); free is [head, cap) and [0, tail)
                if cap - head >= need:
                    off = head
                elif tail >= need:
                    # wrap: the skipped [head, cap) is freed with the newest allocation
                    # that has bytes (it lies right after it), so it is free again as
                    # soon as everything before this allocation is released
                    last = self._last
                    assert last is not None  # used > 0
                    skipped = cap - head
                    last.cost += skipped
                    used += skipped
                    off = 0
                else:
                    return None
            elif tail - head >= need:  # live wraps (or fills the ring); free is [head, tail)
                off = head
            else:
                return None
        span = _Span(off, n, need, skipped, head, self._last)
        self._spans.append(span)
        if need:
            self._last = span
            self._head = (off + need) % cap
        self._used = used + need
        return off

    def release(self, offset: int, n: int) -> None:
        """Release the oldest allocation, which must be ``(offset, n)`` as allocated.
        Anything else raises :class:`ReleaseOrderError` and changes nothing."""
        spans = self._spans
        if not spans:
            raise ReleaseOrderError(f"release({offset}, {n}) with nothing allocated")
        span = spans[0]
        if span.offset != offset or span.n != n or span.freed:
            raise ReleaseOrderError(
                f"release({offset}, {n}) is not the oldest allocation ({span.offset}, {span.n})"
            )
        self._pop()
        while spans and spans[0].freed:
            self._pop()

    def release_any(self, offset: int, n: int) -> None:
        """Release the live allocation ``(offset, n)`` whichever its age: the oldest is
        freed at once (with every younger one already released after it), a younger
        one is marked and freed in its turn. Its bytes stay unavailable until then
        (the ring stays FIFO). For regions whose owners finish out of order: a reply
        region kept for a zero-copy result. Unknown ``(offset, n)``: ReleaseOrderError,
        nothing changes. O(allocations outstanding)."""
        spans = self._spans
        for span in spans:
            if span.offset == offset and span.n == n and not span.freed:
                break
        else:
            raise ReleaseOrderError(f"release_any({offset}, {n}): no such live allocation")
        span.freed = True
        while spans and spans[0].freed:
            self._pop()

    def release_oldest(self) -> tuple[int, int]:
        """Release the oldest allocation and return its ``(offset, n)``.
        Raises :class:`ReleaseOrderError` if nothing is allocated."""
        if not self._spans:
            raise ReleaseOrderError("release_oldest() with nothing allocated")
        span = self._pop()
        while self._spans and self._spans[0].freed:
            self._pop()
        return span.offset, span.n

    def _pop(self) -> _Span:
        span = self._spans.popleft()
        self._used -= span.cost
        span.cost = -1  # released (see cancel)
        span.prev_last = None  # no chain of released spans
        if span is self._last:  # it was the newest with bytes: nothing with bytes is left
            self._last = None
        return span

    def cancel(self, offset: int, n: int) -> None:
        """Undo the *newest* allocation, which must be ``(offset, n)``: the ring is as
        if it had never been made (e.g. the reply ring had no room for the batch whose
        request span was just taken, or the batch could not be sent). Anything else
        raises :class:`ReleaseOrderError` and changes nothing."""
        spans = self._spans
        if not spans:
            raise ReleaseOrderError(f"cancel({offset}, {n}) with nothing allocated")
        span = spans[-1]
        if span.offset != offset or span.n != n:
            raise ReleaseOrderError(
                f"cancel({offset}, {n}) is not the newest allocation ({span.offset}, {span.n})"
            )
        spans.pop()
        self._used -= span.cost
        prev = span.prev_last
        if prev is not None and prev.cost < 0:
            prev = None  # released since: it took the skipped tail with it
        if span.skipped and prev is not None:
            prev.cost -= span.skipped
            self._used -= span.skipped
        if span is self._last:
            self._last = prev
        self._head = span.prev_head
        span.cost = -1
        span.prev_last = None

    def oldest(self) -> tuple[int, int] | None:
        """``(offset, n)`` of the allocation the next release must name, or ``None``."""
        if not self._spans:
            return None
        span = self._spans[0]
        return span.offset, span.n

    def reset(self) -> None:
        """Forget every allocation (e.g. after the worker reading this ring was lost
        and nothing in the ring is needed any more)."""
        self._spans.clear()
        self._last = None
        self._head = 0
        self._used = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def align(self) -> int:
        return self._align

    @property
    def used(self) -> int:
        """Bytes not available: live allocations plus their padding and skipped tails."""
        return self._used

    @property
    def free(self) -> int:
        """``capacity - used``: free bytes in total, not necessarily contiguous."""
        return self._capacity - self._used

    @property
    def max_alloc(self) -> int:
        """The largest ``n`` that ``alloc(n)`` would satisfy now (a multiple of align)."""
        cap, used = self._capacity, self._used
        if used == 0:
            return cap
        head = self._head
        tail = (head - used) % cap
        if head > tail:
            return max(cap - head, tail)
        return tail - head

    @property
    def outstanding(self) -> int:
        """Number of allocations not yet released."""
        return len(self._spans)

    def __repr__(self) -> str:
        return (
            f"RingAllocator(capacity={self._capacity}, align={self._align}, "
            f"used={self._used}, outstanding={len(self._spans)})"
        )


__all__ = ["RingAllocator"]
