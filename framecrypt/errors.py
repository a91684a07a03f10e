"""Typed errors of framecrypt.

Every error a caller can see is a subclass of :class:`FramecryptError`. None of
them carries key bytes: messages name the *kind* of failure, a key id or index at
most. :class:`AuthenticationFailed` carries no detail at all (like
``cryptography.exceptions.InvalidTag``) so it cannot serve as an oracle.
"""

from __future__ import annotations


class FramecryptError(Exception):
    """Base of every framecrypt error."""


# --- frame input ---------------------------------------------------------------------


class MalformedFrame(FramecryptError, ValueError):
    """The bytes are not a well-formed frame of the expected format.

    ``reason`` is a short fixed string (e.g. ``"truncated header"``); it never
    contains frame or key bytes.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AuthenticationFailed(FramecryptError):
    """The frame did not authenticate under the key it names. No detail, by design."""

    def __init__(self) -> None:
        super().__init__("authentication failed")


class UnknownKey(FramecryptError, LookupError):
    """No key is known for the key id (SFrame KID / LiveKit key index) the frame names."""

    def __init__(self, kid: int) -> None:
        super().__init__(f"no key for key id {kid}")
        self.kid = kid


class KeyInvalidated(FramecryptError):
    """Frames for this key index are dropped untried: too many failures (LiveKit
    ``failureTolerance``) until a new key is set."""

    def __init__(self, kid: int) -> None:
        super().__init__(f"key index {kid} is marked invalid after repeated failures")
        self.kid = kid


class ReplayedFrame(FramecryptError):
    """The counter was already accepted, or lies below the replay window."""

    def __init__(self, ctr: int) -> None:
        super().__init__(f"counter {ctr} replayed or too old")
        self.ctr = ctr


class DroppedFrame(FramecryptError):
    """A frame that must not be delivered (e.g. a SIF frame that is not a known blank)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- sender side ---------------------------------------------------------------------


class CounterExhausted(FramecryptError):
    """The send counter for this key reached its limit: set a new key."""

    def __init__(self, kid: int) -> None:
        super().__init__(f"counter exhausted for key id {kid}")
        self.kid = kid


# --- configuration -------------------------------------------------------------------


class UnsupportedSuite(FramecryptError, ValueError):
    """Unknown or unsupported SFrame cipher suite."""

    def __init__(self, suite: int) -> None:
        super().__init__(f"unsupported cipher suite 0x{suite:04x}")
        self.suite = suite


class UnsupportedCodec(FramecryptError, ValueError):
    """Codec name not one of the supported ones."""

    def __init__(self, codec: str) -> None:
        super().__init__(f"unsupported codec {codec!r}")
        self.codec = codec


class InvalidKeyMaterial(FramecryptError, ValueError):
    """Key material of the wrong type or length (the message never shows the bytes)."""


class InvalidParameter(FramecryptError, ValueError):
    """A non-secret parameter outside its allowed range: a key id or counter that does
    not fit 64 bits, a replay-window size, ratchet or MLS layout bits, a group size.

    The message names the parameter and the allowed range, never key bytes.
    """


class InvalidArgument(InvalidParameter, TypeError):
    """An argument of the wrong type: a participant that is not a ``str``, a frame
    whose data is not bytes-like or whose ssrc/timestamp is not an int, a key index
    that is not an int. Raised at the API boundary, before anything is admitted."""


class ResultReleased(FramecryptError, ValueError):
    """A zero-copy :class:`~framecrypt.batch.BatchResult` was read after
    :meth:`~framecrypt.batch.BatchResult.release`: its outputs were views into the
    pool's reply ring, which is reused once released."""


# --- the worker pool -----------------------------------------------------------------


class PoolError(FramecryptError):
    """Base of the errors only the worker pool raises."""


class Overloaded(PoolError):
    """No capacity for the frame now (``try_*`` calls, or ``on_overload = "reject"``)."""

    def __init__(self, what: str = "frames in flight") -> None:
        super().__init__(f"overloaded: {what} at the limit")
        self.what = what


class WorkerLost(PoolError):
    """The frame's worker died on every dispatch attempt."""

    def __init__(self, attempts: int) -> None:
        super().__init__(f"worker lost after {attempts} dispatch attempts")
        self.attempts = attempts


class PoolClosed(PoolError):
    """The pool was closed before the frame got a result."""

    def __init__(self) -> None:
        super().__init__("pool closed")


class FrameExpired(PoolError):
    """Dropped by the real-time policy: a queued delta frame older than the latency
    budget (key frames are never dropped)."""

    def __init__(self, waited_ms: float) -> None:
        super().__init__(f"delta frame dropped after {waited_ms:.1f} ms in the queue")
        self.waited_ms = waited_ms


class ProtocolError(PoolError):
    """A message on a pool socket that is not a valid framecrypt wire message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


__all__ = [
    "AuthenticationFailed",
    "CounterExhausted",
    "DroppedFrame",
    "FrameExpired",
    "FramecryptError",
    "InvalidArgument",
    "InvalidKeyMaterial",
    "InvalidParameter",
    "KeyInvalidated",
    "MalformedFrame",
    "Overloaded",
    "PoolClosed",
    "PoolError",
    "ProtocolError",
    "ReplayedFrame",
    "ResultReleased",
    "UnknownKey",
    "UnsupportedCodec",
    "UnsupportedSuite",
    "WorkerLost",
]
