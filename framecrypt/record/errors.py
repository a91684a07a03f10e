"""Typed errors of :mod:`framecrypt.record`.

All of them are :class:`framecrypt.errors.FramecryptError`. Messages name a participant,
a path or a setting at most: never key material or frame bytes.
"""

from __future__ import annotations

from framecrypt.errors import FramecryptError


class RecordError(FramecryptError):
    """Base of the recorder's errors."""


class RoomUnreachable(RecordError, ConnectionError):
    """The room (relay or SFU) could not be joined."""


class KeyFileError(RecordError, ValueError):
    """The key file is not valid JSON of the documented shape (the message names the
    field, never a key)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"key file: {reason}")
        self.reason = reason


class RecordingFailed(RecordError):
    """A participant's file could not be written (disk, container)."""
