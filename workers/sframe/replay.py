"""Receiver replay window. RFC 9605 leaves replay protection to the application (its
Security Considerations); this is the sliding window of RFC 3711 §3.3.2.

The window remembers the highest accepted counter and which of the ``size``
counters at or below it were seen. Use it in two steps around authentication:

1. :meth:`ReplayWindow.inspect` *before* the tag is checked: it raises
   :class:`ReplayedFrame` for a counter already accepted or below the window, and
   never changes state (an unauthenticated frame must not move the window);
2. :meth:`ReplayWindow.accept` only *after* the frame authenticated: it records
   the counter and slides the window forward.
"""

from __future__ import annotations

from framecrypt.errors import InvalidParameter, ReplayedFrame

DEFAULT_WINDOW: int = 128


class ReplayWindow:
    """Sliding replay window over 64-bit counters (RFC 3711 §3.3.2 style).

    Bit ``i`` of the bitmap stands for counter ``highest - i``.
    """

    __slots__ = ("_bitmap", "_highest", "_mask", "size")

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        if not isinstance(size, int) or size < 1:
            raise InvalidParameter("replay window size must be a positive integer")
        self.size = size
        self._mask = (1 << size) - 1
        self._highest = -1  # nothing accepted yet
        self._bitmap = 0

    @property
    def highest(self) -> int | None:
        """Highest accepted counter, or None before the first accept."""
        return None if self._highest < 0 else self._highest

    def inspect(self, ctr: int) -> None:
        """Raise :class:`ReplayedFrame` if ``ctr`` was accepted or is below the window.

        Never commits anything.
        """
        diff = self._highest - ctr
        if diff < 0:
            return
        if diff >= self.size or (self._bitmap >> diff) & 1:
            raise ReplayedFrame(ctr)

    def accept(self, ctr: int) -> None:
        """Record ``ctr`` as received. Call only after the frame authenticated and
        :meth:`inspect` passed; accepting a counter twice is harmless."""
        diff = ctr - self._highest
        if diff > 0:
            self._bitmap = 1 if diff >= self.size else ((self._bitmap << diff) | 1) & self._mask
            self._highest = ctr
        elif -diff < self.size:
            self._bitmap |= 1 << -diff

    def accept_run(self, first: int, last: int) -> None:
        """``accept(c)`` for every ``c`` from ``first`` to ``last``, in order, in one step
        (the native open loop reports the counters it opened as such runs). Same
        preconditions as :meth:`accept`; nothing if ``first > last``."""
        if first > last:
            return
        highest = self._highest
        if first <= highest:  # (not from the native loop) the part at or below highest
            for c in range(max(first, highest - self.size + 1), min(last, highest) + 1):
                self.accept(c)
            if last <= highest:
                return
            first = highest + 1
        # ctr - highest > 0 for each: accept shifts by the gap and sets bit 0; in one go
        # the bitmap shifts by last - highest and the run's bits are set (past ``size``
        # bits everything is masked off, hence the min)
        size = self.size
        ones = (1 << min(last - first + 1, size)) - 1
        self._bitmap = ((self._bitmap << min(last - highest, size)) | ones) & self._mask
        self._highest = last

    @property
    def floor(self) -> int:
        """The highest accepted counter, -1 before the first accept: every counter above it
        passes :meth:`inspect` (what the native open loop may open without asking)."""
        return self._highest

    def raise_floor(self, ctr: int) -> None:
        """Treat every counter up to ``ctr`` as already seen (a handover when the window
        itself is not available: conservative, late frames at or below ``ctr`` are
        refused). Never lowers the window."""
        if ctr > self._highest:
            self._highest = ctr
            self._bitmap = self._mask
        elif self._highest - ctr < self.size:
            # mark [highest - size + 1, ctr] as seen: bits from highest - ctr upward (a
            # ctr below the window marks nothing; and 1 << (highest - ctr) would be a
            # number of up to 2**64 bits)
            self._bitmap |= self._mask & ~((1 << (self._highest - ctr)) - 1)

    def __contains__(self, ctr: object) -> bool:
        """Whether ``ctr`` was accepted and is still inside the window."""
        if not isinstance(ctr, int):
            return False
        diff = self._highest - ctr
        return 0 <= diff < self.size and bool((self._bitmap >> diff) & 1)

    def __repr__(self) -> str:
        return f"ReplayWindow(size={self.size}, highest={self.highest})"


__all__ = ["DEFAULT_WINDOW", "ReplayWindow"]
