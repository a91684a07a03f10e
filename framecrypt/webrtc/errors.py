"""Typed errors of :mod:`framecrypt.webrtc`'s Janus client and server helper.

All are :class:`framecrypt.errors.FramecryptError`. Messages carry Janus's error code
and reason, a request name or a transaction: never SDP bodies or key material.
"""

from __future__ import annotations

from framecrypt.errors import FramecryptError


class JanusError(FramecryptError):
    """Janus refused a request: ``code`` is the core's or the plugin's error code
    (e.g. 426 no such room, 427 room exists, 428 no such feed), ``reason`` its text."""

    def __init__(self, code: int | None, reason: str, request: str = "") -> None:
        where = f" ({request})" if request else ""
        super().__init__(f"Janus error {code}{where}: {reason}")
        self.code = code
        self.reason = reason
        self.request = request


class JanusProtocolError(JanusError):
    """A reply or event that is not what the Janus API defines (not JSON, not an object,
    a missing or mistyped field, an unexpected kind of message): a hostile or broken
    server. ``code`` is None."""

    def __init__(self, reason: str, request: str = "") -> None:
        super().__init__(None, f"malformed: {reason}", request)


class JanusTimeout(JanusError, TimeoutError):
    """A request got no (final) answer in time."""

    def __init__(self, request: str, seconds: float) -> None:
        super().__init__(None, f"no answer in {seconds:g} s", request)


class JanusClosed(JanusError, ConnectionError):
    """The connection to Janus is closed, or the session is gone (timed out, destroyed)."""

    def __init__(self, reason: str) -> None:
        super().__init__(None, reason)


class JanusUnavailable(JanusError):
    """Janus is not installed or did not start (the server helper)."""

    def __init__(self, reason: str) -> None:
        super().__init__(None, reason)
