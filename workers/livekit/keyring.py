"""Key sets and the per-participant key ring (16 slots by default, as livekit-client)."""

from __future__ import annotations

from framecrypt.errors import InvalidKeyMaterial
from framecrypt.workers.native import aesgcm

from .kdf import Kdf


class KeySet:
    """One ring slot: key material, how it derives, and the ready AES-GCM object (the
    native one where the extension runs: :mod:`framecrypt.workers.native`).

    ``generation`` counts ratchet steps since the material was set. The repr shows no
    key bytes.
    """

    __slots__ = ("_key", "_material", "aead", "generation", "kdf")

    def __init__(self, material: bytes, kdf: Kdf, aes_key: bytes, generation: int = 0) -> None:
        if len(aes_key) not in (16, 24, 32):
            raise InvalidKeyMaterial("AES key must be 16, 24 or 32 bytes")
        self._material = material
        self._key = aes_key
        self.kdf = kdf
        self.aead = aesgcm(aes_key)
        self.generation = generation

    @classmethod
    def derive(cls, material: bytes, kdf: Kdf, generation: int = 0) -> KeySet:
        """Derive the AES key from ``material`` (PBKDF2: tens of milliseconds)."""
        if not material:
            raise InvalidKeyMaterial("key material must not be empty")
        return cls(material, kdf, kdf.derive_key(material), generation)

    @classmethod
    def from_aes_key(cls, key: bytes) -> KeySet:
        """A key set for a raw AES key (no material: it cannot ratchet)."""
        return cls(b"", Kdf.livekit("hkdf"), key)

    @property
    def material(self) -> bytes:
        return self._material

    @property
    def aes_key(self) -> bytes:
        return self._key

    def ratcheted(self) -> KeySet:
        """The next key set of the chain (not stored anywhere)."""
        if not self._material:
            raise InvalidKeyMaterial("a key set made from a bare AES key cannot ratchet")
        return KeySet.derive(self.kdf.ratchet(self._material), self.kdf, self.generation + 1)

    def __repr__(self) -> str:
        return f"KeySet(kdf={self.kdf.algorithm}, generation={self.generation})"


class KeyRing:
    """Fixed-size ring of :class:`KeySet` indexed by key index (the frame's KID byte),
    with the current send index and livekit-style failure counts per index.
    ``version`` changes with every change of keys or failure counts (the engine's
    cached key tables of the native loop follow it)."""

    __slots__ = ("_failures", "_slots", "current_index", "version")

    def __init__(self, size: int = 16) -> None:
        if not 1 <= size <= 256:
            raise ValueError("key ring size must be 1..256")
        self._slots: list[KeySet | None] = [None] * size
        self._failures = [0] * size
        self.current_index = 0
        self.version = 0

    @property
    def size(self) -> int:
        return len(self._slots)

    def slot(self, index: int) -> int:
        return index % len(self._slots)

    def get(self, index: int) -> KeySet | None:
        return self._slots[index % len(self._slots)]

    def set(self, index: int, keyset: KeySet, make_current: bool = True) -> None:
        i = index % len(self._slots)
        self._slots[i] = keyset
        self.version += 1
        if make_current:
            self.current_index = i

    def clear(self) -> None:
        self.version += 1
        self._slots = [None] * len(self._slots)
        self._failures = [0] * len(self._slots)

    def failures(self, index: int) -> int:
        return self._failures[index % len(self._slots)]

    def record_failure(self, index: int) -> None:
        self.version += 1
        self._failures[index % len(self._slots)] += 1

    def reset_failures(self, index: int | None = None) -> None:
        if index is None:
            self.version += 1
            self._failures = [0] * len(self._slots)
        elif self._failures[index % len(self._slots)]:
            self.version += 1
            self._failures[index % len(self._slots)] = 0

    def __repr__(self) -> str:
        filled = [i for i, s in enumerate(self._slots) if s is not None]
        return f"KeyRing(size={len(self._slots)}, current={self.current_index}, filled={filled})"
