"""Events a participant cryptor reports (like livekit's EncryptionState). No key bytes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KeyRatcheted:
    """A ratcheted key was committed at ``key_index`` (after a frame authenticated under
    it, or on request); ``generation`` counts steps since the key was set."""

    key_index: int
    generation: int
    on_decrypt: bool


@dataclass(frozen=True, slots=True)
class DecryptionFailed:
    key_index: int
    failures: int


@dataclass(frozen=True, slots=True)
class KeyMissing:
    key_index: int


@dataclass(frozen=True, slots=True)
class KeyMarkedInvalid:
    """Failures at ``key_index`` passed the tolerance: its frames get no ratchet attempts
    (one try under the held key) until one opens or a key is set there."""

    key_index: int


@dataclass(frozen=True, slots=True)
class SifDropped:
    """A frame carried the SIF trailer but was not a known blank."""


Event = KeyRatcheted | DecryptionFailed | KeyMissing | KeyMarkedInvalid | SifDropped
