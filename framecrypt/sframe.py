"""SFrame (RFC 9605) public API: stateless :func:`protect`/:func:`unprotect`, and the
whole pure core of :mod:`framecrypt.workers.sframe` re-exported (contexts, codec, HKDF).

The stateless functions derive ``(sframe_key, sframe_salt)`` and the AEAD object
for a ``(suite, base_key, kid)`` once and keep them in a small module-level LRU
(:data:`CACHE_SIZE` entries), so repeated calls cost one AEAD operation. A key
that :func:`unprotect` derives from a frame's (unauthenticated) KID is cached only
after the frame authenticated. These functions keep no counters and no replay
state: the caller must never seal two different plaintexts under one
``(base_key, kid, ctr)``. For that bookkeeping use :class:`SenderContext` and
:class:`ReceiverContext`.
"""

from __future__ import annotations

from framecrypt.workers import sframe as _core
from framecrypt.workers.sframe import *  # noqa: F403 - the facade re-exports the whole core
from framecrypt.workers.sframe import LruCache, SFrameKey, decode_header
from framecrypt.workers.sframe.header import BytesLike
from framecrypt.workers.sframe.keyschedule import check_base_key

CACHE_SIZE = 256

_cache: LruCache[tuple[int, bytes, int], SFrameKey] = LruCache(CACHE_SIZE)


def _cached(suite: int, base_key: BytesLike, kid: int) -> tuple[SFrameKey, bool]:
    key_bytes = base_key if type(base_key) is bytes else check_base_key(base_key)
    found = _cache.get((suite, key_bytes, kid))
    if found is not None:
        return found, True
    return SFrameKey.derive(suite, key_bytes, kid), False


def _remember(suite: int, base_key: BytesLike, key: SFrameKey) -> None:
    key_bytes = base_key if type(base_key) is bytes else bytes(base_key)
    _cache.put((suite, key_bytes, key.kid), key)


def protect(
    suite: int, base_key: bytes, kid: int, ctr: int, plaintext: bytes, metadata: bytes = b""
) -> bytes:
    """Encrypt one frame (RFC 9605 §4.4.3): ``header || AEAD(plaintext)``.

    Raises :class:`~framecrypt.errors.UnsupportedSuite`,
    :class:`~framecrypt.errors.InvalidKeyMaterial`,
    :class:`~framecrypt.errors.InvalidParameter` (KID or CTR out of range) or
    :class:`~framecrypt.errors.CounterExhausted` (CTR past what header and nonce allow).
    """
    key, hit = _cached(suite, base_key, kid)
    if not hit:
        _remember(suite, base_key, key)
    frame: bytes = key.protect(ctr, plaintext, metadata)
    return frame


def protect_into(
    suite: int,
    base_key: bytes,
    kid: int,
    ctr: int,
    plaintext: bytes,
    out: bytearray | memoryview,
    metadata: bytes = b"",
) -> int:
    """Like :func:`protect`, writing the frame at the start of ``out``; return its length."""
    key, hit = _cached(suite, base_key, kid)
    if not hit:
        _remember(suite, base_key, key)
    length: int = key.protect_into(ctr, plaintext, out, metadata)
    return length


def unprotect(
    suite: int, base_key: bytes, ciphertext: bytes, metadata: bytes = b""
) -> tuple[int, int, bytes]:
    """Decrypt one frame (RFC 9605 §4.4.4); return ``(kid, ctr, plaintext)``.

    Raises :class:`~framecrypt.errors.MalformedFrame` (bad header, too short) or
    :class:`~framecrypt.errors.AuthenticationFailed`; no replay check is done.
    """
    kid, ctr, hlen = decode_header(ciphertext)
    key, hit = _cached(suite, base_key, kid)
    plaintext = key.open_parsed(ciphertext, hlen, ctr, metadata)
    if not hit:
        _remember(suite, base_key, key)
    return kid, ctr, plaintext


def unprotect_into(
    suite: int,
    base_key: bytes,
    ciphertext: bytes,
    out: bytearray | memoryview,
    metadata: bytes = b"",
) -> tuple[int, int, int]:
    """Like :func:`unprotect`, writing the plaintext at the start of ``out``; return
    ``(kid, ctr, plaintext_length)``."""
    kid, ctr, hlen = decode_header(ciphertext)
    key, hit = _cached(suite, base_key, kid)
    n = key.open_parsed_into(ciphertext, hlen, ctr, out, metadata)
    if not hit:
        _remember(suite, base_key, key)
    return kid, ctr, n


def clear_cache() -> None:
    """Forget every key the stateless functions cached."""
    _cache.clear()


__all__ = [
    *_core.__all__,
    "CACHE_SIZE",
    "clear_cache",
    "protect",
    "protect_into",
    "unprotect",
    "unprotect_into",
]
