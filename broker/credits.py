"""Global credit: how many frames and bytes may be in flight (sans-I/O).

A call takes credit for its frames before they are admitted and each frame returns
it with its outcome. Waiters are served in FIFO order, so a large call cannot be
overtaken forever by small ones; a frame larger than the byte limit still goes when
nothing else is in flight.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

__all__ = ["Credits"]


class _Waiter:
    __slots__ = ("frames", "grant", "nbytes")

    def __init__(self, frames: int, nbytes: int, grant: Callable[[], bool]) -> None:
        self.frames = frames
        self.nbytes = nbytes
        self.grant = grant  # returns False when nobody waits any more (cancelled)


class Credits:
    def __init__(self, max_frames: int, max_bytes: int) -> None:
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.frames_out = 0
        self.bytes_out = 0
        self._waiters: deque[_Waiter] = deque()
        self.on_drained: Callable[[], None] | None = None  # frames_out reached 0

    def __repr__(self) -> str:
        return (f"Credits({self.frames_out}/{self.max_frames} frames, "
                f"{self.bytes_out}/{self.max_bytes} B, {len(self._waiters)} waiting)")

    def _fits(self, frames: int, nbytes: int) -> bool:
        return self.frames_out + frames <= self.max_frames and (
            self.bytes_out + nbytes <= self.max_bytes or self.frames_out == 0)

    def try_take(self, frames: int, nbytes: int) -> bool:
        """Take credit for ``frames`` now (nobody waits before them), or False."""
        if not self._waiters and self._fits(frames, nbytes):
            self.frames_out += frames
            self.bytes_out += nbytes
            return True
        return False

    def wait(self, frames: int, nbytes: int, grant: Callable[[], bool]) -> None:
        """Queue for credit; ``grant()`` runs once it is reserved (FIFO)."""
        self._waiters.append(_Waiter(frames, nbytes, grant))

    def release(self, frames: int, nbytes: int) -> None:
        self.frames_out -= frames
        self.bytes_out -= nbytes
        while self._waiters:
            w = self._waiters[0]
            if not self._fits(w.frames, w.nbytes):
                break
            self._waiters.popleft()
            self.frames_out += w.frames
            self.bytes_out += w.nbytes
            if not w.grant():  # nobody waits any more: give it back
                self.frames_out -= w.frames
                self.bytes_out -= w.nbytes
        if self.frames_out == 0 and self.on_drained is not None:
            self.on_drained()

    def grant_all(self) -> None:
        """Grant every waiter now, limits or not (the pool is closing: each sees that
        and gives its credit back, so the books balance)."""
        while self._waiters:
            w = self._waiters.popleft()
            self.frames_out += w.frames
            self.bytes_out += w.nbytes
            if not w.grant():
                self.frames_out -= w.frames
                self.bytes_out -= w.nbytes

    @property
    def waiting(self) -> int:
        return len(self._waiters)
