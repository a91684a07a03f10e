"""A worker's two rings as anonymous shared memory (memfds): :class:`RingPair`.

The broker creates the pair (:meth:`RingPair.create`), passes its descriptors to the
worker it spawns (``subprocess.Popen(..., close_fds=True, pass_fds=pair.fds())``)
and their numbers and the size in the worker's CONFIG message; the worker maps
them with :meth:`RingPair.attach`. Why inheritance and not ``SCM_RIGHTS``, and how
the rings are used: :mod:`framecrypt.transports.shm`.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Self

from framecrypt.errors import InvalidParameter
from framecrypt.transports.errors import SegmentError
from framecrypt.transports.shm import Segment, validate_name


class RingPair:
    """A worker's request and reply rings: two anonymous segments of one size.

    The broker makes them with :meth:`create`, hands :meth:`fds` to the worker it
    spawns (``Popen(..., pass_fds=pair.fds())``, and the numbers and :attr:`size` in
    CONFIG), and closes them with :meth:`close` when the worker is gone (no unlink:
    there is no name). The worker maps them with :meth:`attach`. As a context
    manager it closes on exit.
    """

    __slots__ = ("reply", "request")

    def __init__(self, request: Segment, reply: Segment) -> None:
        self.request = request
        self.reply = reply

    @classmethod
    def create(cls, size: int, *, label: str, reserve: bool = True) -> RingPair:
        """Two new anonymous segments of ``size`` bytes, labelled ``<label>-req`` and
        ``<label>-rep`` (e.g. ``label`` = ``<pool tag>-w<slot>``). :class:`SegmentError`
        if memfds are unavailable or the memory cannot be reserved (then nothing is
        left open)."""
        request = Segment.anonymous(size, label=validate_name(f"{label}-req"), reserve=reserve)
        try:
            reply = Segment.anonymous(size, label=validate_name(f"{label}-rep"), reserve=reserve)
        except BaseException:
            request.close()
            raise
        return cls(request, reply)

    @classmethod
    def attach(cls, fds: Sequence[int], size: int) -> RingPair:
        """Map the rings open as ``fds`` = ``(request_fd, reply_fd)``, ``size`` bytes
        each (:meth:`Segment.from_fd` checks each: sealed memfds of ``size``
        bytes). Two descriptors of one memfd are refused (the rings would overlap).
        On any error nothing is left mapped and ``fds`` are untouched; they stay
        the caller's (an inherited pair can stay open for the process's life)."""
        if isinstance(fds, (str, bytes)) or len(fds) != 2:
            raise InvalidParameter(f"need (request_fd, reply_fd), got {fds!r}")
        request = Segment.from_fd(fds[0], size)
        try:
            reply = Segment.from_fd(fds[1], size)
        except BaseException:
            request.close()
            raise
        if request.same_memory(reply):
            request.close()
            reply.close()
            raise SegmentError(f"fds {fds[0]} and {fds[1]} are one memfd: the rings would overlap")
        return cls(request, reply)

    def fds(self) -> tuple[int, int]:
        """``(request_fd, reply_fd)``, for ``pass_fds`` and the CONFIG message."""
        return self.request.fd, self.reply.fd

    @property
    def size(self) -> int:
        return self.request.size

    @property
    def closed(self) -> bool:
        return self.request.closed and self.reply.closed

    def close(self) -> None:
        """Close both segments (idempotent). The memory is freed once no process
        holds it any more: here, and in a worker once it has exited or closed."""
        try:
            self.request.close()
        finally:
            self.reply.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RingPair({self.request!r}, {self.reply!r})"


__all__ = ["RingPair"]
