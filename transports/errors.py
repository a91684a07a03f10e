"""Typed errors of the transports (shared-memory rings, OS resource hygiene).

A full ring is *not* an error: :meth:`RingAllocator.alloc
<framecrypt.transports.shm.RingAllocator.alloc>` returns ``None`` and the broker
applies backpressure. The errors here are for things that cannot succeed by
waiting: a request larger than the whole ring, an unsafe path, a segment that
cannot be created or mapped, or a caller that breaks the FIFO release order.

Messages name paths, sizes and offsets only; never payload or key bytes.
"""

from __future__ import annotations

from framecrypt.errors import FramecryptError


class TransportError(FramecryptError):
    """Base of every error of :mod:`framecrypt.transports`."""


class InvalidName(TransportError, ValueError):
    """A segment name, pool tag or nonce outside the allowed alphabet or length."""


class UnsafePath(TransportError):
    """A path exists but is not safe to use: a symlink, the wrong file type, owned by
    another user, or with a mode other than the private one we require."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"unsafe path {path!r}: {reason}")
        self.path = path
        self.reason = reason


class SegmentError(TransportError):
    """A shared-memory segment could not be created, attached or used (it exists
    already, is missing, has the wrong size, the directory is full, or it is closed).

    The underlying :class:`OSError`, if any, is chained as ``__cause__``.
    """


class RingError(TransportError):
    """Base of the errors of :class:`~framecrypt.transports.shm.RingAllocator`."""


class FrameTooLarge(RingError, ValueError):
    """A request for more bytes than the ring holds in total: it can never fit, so it
    is not backpressure. (A request that merely does not fit *now* gets ``None``.)"""

    def __init__(self, size: int, capacity: int) -> None:
        super().__init__(f"{size} bytes requested from a ring of {capacity} bytes")
        self.size = size
        self.capacity = capacity


class ReleaseOrderError(RingError):
    """A release that is not the oldest outstanding allocation (rings release in
    FIFO order), or a release with nothing outstanding. The ring is left unchanged."""


__all__ = [
    "FrameTooLarge",
    "InvalidName",
    "ReleaseOrderError",
    "RingError",
    "SegmentError",
    "TransportError",
    "UnsafePath",
]
