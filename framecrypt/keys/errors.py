"""Typed errors of :mod:`framecrypt.keys` (key exchange, verification, data messages).

All of them are :class:`framecrypt.errors.FramecryptError`. Messages name the kind of
failure and at most a participant id, a message type or a counter: never key bytes,
ciphertext bodies or plaintexts.
"""

from __future__ import annotations

from framecrypt.errors import FramecryptError


class KeyExchangeError(FramecryptError):
    """Base of the errors raised by the key-exchange layer."""


class MalformedMessage(KeyExchangeError, ValueError):
    """Not a well-formed envelope or payload (bad JSON, missing field, wrong type)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"malformed message: {reason}")
        self.reason = reason


class OlmError(KeyExchangeError):
    """An Olm operation failed: the message does not decrypt (forged, corrupted, wrong
    session) or a session could not be created. No detail from the library is kept."""

    def __init__(self, reason: str, peer: str | None = None) -> None:
        where = f" (peer {peer!r})" if peer is not None else ""
        super().__init__(f"olm: {reason}{where}")
        self.reason = reason
        self.peer = peer


class ReplayedMessage(OlmError):
    """An Olm message seen before (``reason="duplicate"``) or older than one already
    accepted on the channel (``reason="out of order"``)."""

    def __init__(self, reason: str, peer: str | None = None) -> None:
        super().__init__(reason, peer)


class UnknownSession(KeyExchangeError, LookupError):
    """A message that needs an Olm session (or a known participant) arrived from a peer
    with none."""

    def __init__(self, peer: str, reason: str = "no session") -> None:
        super().__init__(f"{reason} with peer {peer!r}")
        self.peer = peer
        self.reason = reason


class UnexpectedMessage(KeyExchangeError):
    """A well-formed message that the protocol state does not allow (a second
    session-init, an ack with an unknown uuid, a key from a visitor …)."""

    def __init__(self, reason: str, peer: str | None = None) -> None:
        where = f" (peer {peer!r})" if peer is not None else ""
        super().__init__(f"unexpected message: {reason}{where}")
        self.reason = reason
        self.peer = peer


class VerificationFailed(KeyExchangeError):
    """SAS verification failed (commitment or MAC mismatch, cancelled, wrong state)."""

    def __init__(self, reason: str, peer: str | None = None) -> None:
        where = f" (peer {peer!r})" if peer is not None else ""
        super().__init__(f"verification failed: {reason}{where}")
        self.reason = reason
        self.peer = peer


class MlsError(KeyExchangeError, ValueError):
    """A DAVE/MLS handshake message was refused (malformed, wrong epoch or sender, an
    unrecognized user, rejected by the MLS group) or an operation needs a group the
    member is not in. The member's state is unchanged. No key bytes in the message."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"mls: {reason}")
        self.reason = reason


__all__ = [
    "KeyExchangeError",
    "MalformedMessage",
    "MlsError",
    "OlmError",
    "ReplayedMessage",
    "UnexpectedMessage",
    "UnknownSession",
    "VerificationFailed",
]
