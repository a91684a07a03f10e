"""Which nonces a DAVE receiver still accepts from one sender (libdave's rules).

A receiver widens each 32-bit truncated nonce to a "big nonce": the nonce's low 24 bits
under the wrapped generation (the 8-bit generation of the nonce, unwrapped relative to
the oldest generation the receiver still holds). It accepts a big nonce newer than the
newest it authenticated, or one of the up to :data:`MAX_MISSING_NONCES` newest that it
skipped; everything else is a replay. A new window starts as if big nonce -1 had been
seen (as libdave 1.1.0 decides: the first frame's predecessors, up to 1000, count as
skipped, nonce 0 included). Only authenticated frames move the window
(:meth:`NonceWindow.accept` after the frame opened). No clocks here: the 10 s expiry of
old generations belongs to the caller.
"""

from __future__ import annotations

from collections import deque

from framecrypt.errors import ReplayedFrame

GENERATION_SHIFT = 24
GENERATION_WRAP = 1 << 8
MAX_MISSING_NONCES = 1000
MAX_GENERATION_GAP = 250


def wrapped_generation(oldest: int, generation: int) -> int:
    """Unwrap an 8-bit ``generation`` relative to the ``oldest`` generation held."""
    remainder = oldest % GENERATION_WRAP
    factor = oldest // GENERATION_WRAP + (1 if generation < remainder else 0)
    return factor * GENERATION_WRAP + generation


def big_nonce(generation: int, truncated_nonce: int) -> int:
    """The 24 low bits of the truncated nonce under the (unwrapped) ``generation``."""
    return (generation << GENERATION_SHIFT) | (truncated_nonce & ((1 << GENERATION_SHIFT) - 1))


class NonceWindow:
    """The accepted-nonce state of one sender's receiver."""

    __slots__ = ("_missing", "_newest")

    def __init__(self) -> None:
        self._newest = -1
        self._missing: deque[int] = deque()

    def __repr__(self) -> str:
        return f"NonceWindow(newest={self._newest}, missing={len(self._missing)})"

    @property
    def newest(self) -> int:
        return self._newest

    def check(self, nonce: int) -> None:
        """:class:`ReplayedFrame` unless big nonce ``nonce`` may still be processed."""
        if nonce > self._newest or nonce in self._missing:
            return
        raise ReplayedFrame(nonce)

    def accept(self, nonce: int) -> None:
        """Record that the frame with big nonce ``nonce`` authenticated."""
        if nonce > self._newest:
            skipped = min(nonce - self._newest - 1, MAX_MISSING_NONCES)
            while self._missing and len(self._missing) + skipped > MAX_MISSING_NONCES:
                self._missing.popleft()
            self._missing.extend(range(nonce - skipped, nonce))
            self._newest = nonce
        else:
            try:
                self._missing.remove(nonce)
            except ValueError:
                pass

    def raise_floor(self, nonce: int) -> None:
        """Refuse every big nonce up to ``nonce`` from now on (a handed-over window)."""
        if nonce > self._newest:
            self._newest = nonce
            self._missing.clear()
