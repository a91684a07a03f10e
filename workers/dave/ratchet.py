"""DAVE's per-sender key ratchet: from the MLS epoch to per-generation keys.

A sender's base secret is MLS-Exporter("Discord Secure Frames v0", u64le(user id), 16)
(RFC 9420 §8.5, over the epoch's exporter secret): :func:`base_secret`.
libdave keys each sender with mlspp's ``HashRatchet`` over cipher
suite 2 (SHA-256, AES-128): for generation ``g`` = 0, 1, ...::

    key(g)      = ExpandWithLabel(secret(g), "key",    u32(g), 16)
    secret(g+1) = ExpandWithLabel(secret(g), "secret", u32(g), 32)

with ``secret(0)`` the base secret and ExpandWithLabel as RFC 9420 §8 defines it (label
"MLS 1.0 " + label, MLS varint-prefixed). The generation is the truncated nonce's top byte.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from framecrypt.errors import InvalidKeyMaterial, InvalidParameter
from framecrypt.workers.native import Gcm, aesgcm

EXPORTER_LABEL = b"Discord Secure Frames v0"
BASE_SECRET_BYTES = 16
KEY_BYTES = 16
HASH_BYTES = 32
MAX_GENERATION = 0xFFFFFFFF


def _varint(n: int) -> bytes:
    if n < 1 << 6:
        return bytes([n])
    if n < 1 << 14:
        return struct.pack(">H", 0x4000 | n)
    return struct.pack(">I", 0x80000000 | n)


def expand_with_label(secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
    """RFC 9420 ExpandWithLabel over HKDF-SHA256 (length ≤ 32: one HMAC block)."""
    full = b"MLS 1.0 " + label
    info = struct.pack(">H", length) + _varint(len(full)) + full + _varint(len(context)) + context
    return hmac.digest(secret, info + b"\x01", hashlib.sha256)[:length]


def derive_secret(secret: bytes, label: bytes) -> bytes:
    """RFC 9420 DeriveSecret (SHA-256)."""
    return expand_with_label(secret, label, b"", HASH_BYTES)


def mls_exporter(exporter_secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
    """RFC 9420 §8.5 MLS-Exporter over an epoch's exporter secret (SHA-256 suites)."""
    return expand_with_label(
        derive_secret(exporter_secret, label), b"exported", hashlib.sha256(context).digest(),
        length,
    )


def base_secret(exporter_secret: bytes, user_id: int) -> bytes:
    """The base secret of sender ``user_id`` (a Discord snowflake, 64-bit) in the epoch
    whose MLS exporter secret is given."""
    if len(exporter_secret) != HASH_BYTES:
        raise InvalidKeyMaterial("an MLS exporter secret of cipher suite 2 is 32 bytes")
    if not 0 <= user_id < 1 << 64:
        raise InvalidParameter("a DAVE user id is a 64-bit number")
    return mls_exporter(
        exporter_secret, EXPORTER_LABEL, struct.pack("<Q", user_id), BASE_SECRET_BYTES
    )


class KeyRatchet:
    """The keys of one sender, by generation; the repr never shows a secret."""

    __slots__ = ("_aeads", "_keys", "_next_generation", "_next_secret")

    def __init__(self, base_secret: bytes) -> None:
        if len(base_secret) != BASE_SECRET_BYTES:
            raise InvalidKeyMaterial("a DAVE base secret is 16 bytes")
        self._next_secret = bytes(base_secret)
        self._next_generation = 0
        self._keys: dict[int, bytes] = {}
        self._aeads: dict[int, Gcm] = {}

    def __repr__(self) -> str:
        return f"KeyRatchet(next_generation={self._next_generation})"

    def key(self, generation: int) -> bytes:
        """The AES-128 key of ``generation``; earlier generations stay available until
        :meth:`erase`."""
        if not 0 <= generation <= MAX_GENERATION:
            raise InvalidParameter("a DAVE key generation is a 32-bit number")
        if generation in self._keys:
            return self._keys[generation]
        if generation < self._next_generation:
            raise InvalidParameter("that DAVE key generation was erased")
        while self._next_generation <= generation:
            g = struct.pack(">I", self._next_generation)
            self._keys[self._next_generation] = expand_with_label(
                self._next_secret, b"key", g, KEY_BYTES
            )
            self._next_secret = expand_with_label(self._next_secret, b"secret", g, HASH_BYTES)
            self._next_generation += 1
        return self._keys[generation]

    def aead(self, generation: int) -> Gcm:
        """The AES-128-GCM object of ``generation``'s key (made once, dropped with it)."""
        found = self._aeads.get(generation)
        if found is None:
            found = self._aeads[generation] = aesgcm(self.key(generation))
        return found

    def erase(self, generation: int) -> None:
        """Forget the key of ``generation``."""
        self._keys.pop(generation, None)
        self._aeads.pop(generation, None)


def key_for_generation(base_secret: bytes, generation: int) -> bytes:
    """The AES-128 key of ``generation`` for the sender whose base secret is given."""
    return KeyRatchet(base_secret).key(generation)
