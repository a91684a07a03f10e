"""SFrame key schedule (RFC 9605 §4.4.2) and the HKDF it is built on (RFC 5869).

For a base key, a KID and a suite::

    secret = HKDF-Extract("", base_key)
    key    = HKDF-Expand(secret, "SFrame 1.0 Secret key "  || u64(KID) || u16(suite), Nk)
    salt   = HKDF-Expand(secret, "SFrame 1.0 Secret salt " || u64(KID) || u16(suite), Nn)

The hash is the suite's. HKDF is done here with the standard library's one-shot
``hmac.digest`` (OpenSSL underneath); it is checked against the Wycheproof HKDF
vectors. Derivation costs a few HMACs, so callers cache the result per
(base key, KID, suite): see :class:`LruCache`.
"""

from __future__ import annotations

import hmac
import struct
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from framecrypt.errors import InvalidKeyMaterial, InvalidParameter

from .suites import CipherSuite

_HASH_LEN: Final = {"sha256": 32, "sha512": 64}

KEY_LABEL: Final = b"SFrame 1.0 Secret key "
SALT_LABEL: Final = b"SFrame 1.0 Secret salt "
_LABEL_SUFFIX: Final = struct.Struct(">QH")

BytesLike = bytes | bytearray | memoryview


def _hash_len(hash_name: str) -> int:
    try:
        return _HASH_LEN[hash_name]
    except KeyError:
        raise InvalidParameter("hash must be 'sha256' or 'sha512'") from None


def hkdf_extract(hash_name: str, salt: BytesLike, ikm: BytesLike) -> bytes:
    """HKDF-Extract (RFC 5869 §2.2). An empty ``salt`` means HashLen zero bytes."""
    hlen = _hash_len(hash_name)
    return hmac.digest(bytes(salt) if salt else bytes(hlen), ikm, hash_name)


def hkdf_expand(hash_name: str, prk: BytesLike, info: BytesLike, length: int) -> bytes:
    """HKDF-Expand (RFC 5869 §2.3).

    Raises :class:`InvalidKeyMaterial` if ``length`` exceeds 255·HashLen.
    """
    hlen = _hash_len(hash_name)
    if length < 0 or length > 255 * hlen:
        raise InvalidKeyMaterial("HKDF output length out of range (at most 255 * HashLen)")
    prk = bytes(prk)
    info = bytes(info)
    out = bytearray()
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes((counter,)), hash_name)
        out += block
        counter += 1
    return bytes(out[:length])


def hkdf(hash_name: str, salt: BytesLike, ikm: BytesLike, info: BytesLike, length: int) -> bytes:
    """HKDF (RFC 5869 §2): Extract then Expand."""
    return hkdf_expand(hash_name, hkdf_extract(hash_name, salt, ikm), info, length)


def check_base_key(base_key: object) -> bytes:
    """Return ``base_key`` as bytes; raise :class:`InvalidKeyMaterial` if it is not
    non-empty bytes-like (the message never shows the bytes)."""
    if not isinstance(base_key, bytes | bytearray | memoryview):
        raise InvalidKeyMaterial("base key must be bytes")
    key = bytes(base_key)
    if not key:
        raise InvalidKeyMaterial("base key must not be empty")
    return key


def _check_kid(kid: int) -> None:
    if not 0 <= kid < 1 << 64:
        raise InvalidParameter("KID must be in [0, 2**64)")


def key_label(kid: int, suite: CipherSuite) -> bytes:
    """``"SFrame 1.0 Secret key " || uint64(KID) || uint16(suite)`` (RFC 9605 §4.4.2)."""
    _check_kid(kid)
    return KEY_LABEL + _LABEL_SUFFIX.pack(kid, suite.id)


def salt_label(kid: int, suite: CipherSuite) -> bytes:
    """``"SFrame 1.0 Secret salt " || uint64(KID) || uint16(suite)`` (RFC 9605 §4.4.2)."""
    _check_kid(kid)
    return SALT_LABEL + _LABEL_SUFFIX.pack(kid, suite.id)


def sframe_secret(suite: CipherSuite, base_key: BytesLike) -> bytes:
    """``HKDF-Extract("", base_key)`` with the suite's hash (RFC 9605 §4.4.2)."""
    return hkdf_extract(suite.hash_name, b"", check_base_key(base_key))


@dataclass(frozen=True, slots=True)
class KeyAndSalt:
    """The per-KID outputs of the key schedule (RFC 9605 §4.4.2). Bytes never in repr."""

    kid: int
    suite: int
    key: bytes = field(repr=False)
    salt: bytes = field(repr=False)


def derive_key_salt(suite: CipherSuite, base_key: BytesLike, kid: int) -> KeyAndSalt:
    """``derive_key_salt(KID, base_key)`` of RFC 9605 §4.4.2."""
    secret = sframe_secret(suite, base_key)
    key = hkdf_expand(suite.hash_name, secret, key_label(kid, suite), suite.nk)
    salt = hkdf_expand(suite.hash_name, secret, salt_label(kid, suite), suite.nn)
    return KeyAndSalt(kid, suite.id, key, salt)


K = TypeVar("K")
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """A small bounded least-recently-used map, used to cache derived keys per
    (suite, base key, KID). Its repr shows sizes only, never keys or values."""

    __slots__ = ("_data", "_maxsize")

    def __init__(self, maxsize: int = 256) -> None:
        if maxsize < 1:
            raise InvalidParameter("cache size must be at least 1")
        self._maxsize = maxsize
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The cached value (marking it recently used), or None."""
        data = self._data
        value = data.get(key)
        if value is not None:
            data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Insert or refresh ``key``; evict the least recently used entry past the bound."""
        data = self._data
        data[key] = value
        data.move_to_end(key)
        if len(data) > self._maxsize:
            data.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry."""
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"LruCache(size={len(self._data)}, maxsize={self._maxsize})"


__all__ = [
    "KEY_LABEL",
    "SALT_LABEL",
    "KeyAndSalt",
    "LruCache",
    "check_base_key",
    "derive_key_salt",
    "hkdf",
    "hkdf_expand",
    "hkdf_extract",
    "key_label",
    "salt_label",
    "sframe_secret",
]
