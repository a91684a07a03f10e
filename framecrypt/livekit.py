"""The LiveKit E2EE frame format, byte-compatible with livekit-client.

Stateless functions (pinned API) plus the stateful :class:`ParticipantCryptor`
(key ring, ratchet-on-failure, SIF, LKTS). Pure: no asyncio, no zmq, no clocks.

>>> from framecrypt import livekit
>>> key = livekit.derive_key(bytes(32))            # raw key -> HKDF
>>> sealed = livekit.protect(b"\\x10" * 40, key=key, codec="vp8", keyframe=True,
...                          ssrc=1, timestamp=3000, send_count=7)
>>> livekit.unprotect(sealed, key=key, codec="vp8") == b"\\x10" * 40
True
"""

from __future__ import annotations

import struct
from collections import OrderedDict

from framecrypt.errors import DroppedFrame, InvalidKeyMaterial, UnsupportedCodec
from framecrypt.workers import native as _native
from framecrypt.workers.livekit import lkts, sif
from framecrypt.workers.livekit.codecs import CODECS, check_codec, sealed_keyframe
from framecrypt.workers.livekit.cryptor import CryptorOptions, ParticipantCryptor
from framecrypt.workers.livekit.events import (
    DecryptionFailed,
    Event,
    KeyMarkedInvalid,
    KeyMissing,
    KeyRatcheted,
    SifDropped,
)
from framecrypt.workers.livekit.frame import (
    _BIG,
    _FIXED,
    IV_LENGTH,
    OVERHEAD,
    counter_iv,
    livekit_iv,
    native_rule,
    open_frame,
    seal_trailer,
    trailer,
)
from framecrypt.workers.livekit.kdf import LIVEKIT_SALT, Kdf, resolve
from framecrypt.workers.livekit.keyring import KeyRing, KeySet
from framecrypt.workers.livekit.lkts import FrameMetadata
from framecrypt.workers.native import NATIVE, Gcm, active, aesgcm

__all__ = [
    "CODECS",
    "IV_LENGTH",
    "LIVEKIT_SALT",
    "OVERHEAD",
    "CryptorOptions",
    "DecryptionFailed",
    "Event",
    "FrameMetadata",
    "Kdf",
    "KeyMarkedInvalid",
    "KeyMissing",
    "KeyRatcheted",
    "KeyRing",
    "KeySet",
    "ParticipantCryptor",
    "SifDropped",
    "counter_iv",
    "derive_key",
    "livekit_iv",
    "protect",
    "ratchet",
    "unprotect",
]

# protect() on the extension: its default AES-GCM objects by raw key, the clear rules
# (delta, key) by codec
_lk_protect = NATIVE.lk_protect if NATIVE is not None else None
_lk_open = NATIVE.lk_open if NATIVE is not None else None
_AesGcm = NATIVE.AesGcm if NATIVE is not None else None
_RULES: dict[str, tuple[int, int]] = (
    {c: (native_rule(c, False, False), native_rule(c, True, False)) for c in CODECS}
    if NATIVE is not None else {})
_fast: OrderedDict[bytes, Gcm] = OrderedDict()


def _fast_key(key: bytes) -> Gcm:
    if len(key) not in (16, 32):
        raise InvalidKeyMaterial("AES key must be 16 or 32 bytes")
    assert _AesGcm is not None
    a: Gcm = _AesGcm(key)
    _fast[key] = a
    if len(_fast) > _AEAD_CACHE_SIZE:
        _fast.popitem(last=False)
    return a


_AEAD_CACHE_SIZE = 64
_aeads: OrderedDict[tuple[bytes, bool], Gcm] = OrderedDict()


def _aead(key: bytes) -> Gcm:
    """A cached AES-GCM object per raw key (native where the extension runs; a
    bounded LRU: building one costs ~1 µs)."""
    slot = (key, active())
    a = _aeads.get(slot)
    if a is None:
        if len(key) not in (16, 32):
            raise InvalidKeyMaterial("AES key must be 16 or 32 bytes")
        a = aesgcm(key)
        _aeads[slot] = a
        if len(_aeads) > _AEAD_CACHE_SIZE:
            _aeads.popitem(last=False)
    return a


def derive_key(
    material: bytes | str, *, kdf: str | None = None, salt: bytes = LIVEKIT_SALT
) -> bytes:
    """The 16-byte AES key for ``material`` (str → PBKDF2, bytes → HKDF by default)."""
    raw, k = resolve(material, kdf, salt)
    return k.derive_key(raw)


def ratchet(material: bytes | str, *, kdf: str | None = None, salt: bytes = LIVEKIT_SALT) -> bytes:
    """The next 32-byte material. A ratcheted chain keeps the KDF of its origin, so pass
    ``kdf`` explicitly for the second and later steps of a passphrase chain."""
    raw, k = resolve(material, kdf, salt)
    return k.ratchet(raw)


def protect(
    plaintext: bytes,
    *,
    key: bytes,
    codec: str,
    keyframe: bool,
    ssrc: int,
    timestamp: int,
    send_count: int,
    key_index: int = 0,
) -> bytes:
    """Seal one encoded frame as livekit-client does (IV from ``send_count``)."""
    if _lk_protect is not None and _native._AesGcm is _AesGcm:
        # the whole call in C (trailer, NAL scan, escaping); None: the reference's
        rules = _RULES.get(codec)
        if rules is not None:
            out: bytes | None = _lk_protect(_fast.get(key) or _fast_key(key), plaintext,
                                            rules[keyframe], 10 if keyframe else 3, 1, ssrc,
                                            timestamp, send_count, key_index)
            if out is not None:
                return out
    aead = _aeads.get((key, active())) or _aead(key)
    try:
        tail = trailer("livekit", ssrc, timestamp, send_count, key_index)
    except struct.error:
        raise ValueError("key_index must be 0..255") from None
    n = _FIXED.get((codec, keyframe))
    if n is not None and n <= len(plaintext) < _BIG and plaintext:
        # fast path (VP8, VP9, AV1, Opus below 32 KB): one encrypt, one join
        header = plaintext[:n]
        return b"".join((header, aead.encrypt(tail[:IV_LENGTH], plaintext[n:], header),
                         tail))
    if codec not in CODECS:
        raise UnsupportedCodec(codec)
    return seal_trailer(aead, plaintext, codec, keyframe, tail)


def unprotect(
    data: bytes,
    *,
    key: bytes,
    codec: str,
    keyframe: bool | None = None,
    sif_trailer: bytes | None = None,
) -> bytes:
    """Open one sealed frame. An LKTS trailer is stripped first (video), an empty frame
    returns ``b""``, a frame ending in ``sif_trailer`` returns its remainder if that is
    a known blank and raises :class:`DroppedFrame` otherwise.

    No ``keyframe`` hint is needed: the frame type is read from the frame's clear
    bytes as a browser does (VP8 P bit, H.264/H.265 NAL types, VP9/AV1 headers:
    ``framecrypt.workers.livekit.codecs.sealed_keyframe``). An explicit ``keyframe``
    that disagrees is a checked hint: its rule is tried only if the payload's fails
    (frames whose bytes do not carry their type, e.g. synthetic test frames)."""
    if _lk_open is not None and sif_trailer is None and _native._AesGcm is _AesGcm:
        # the success path in one C call; anything else (LKTS, errors): the reference
        rules = _RULES.get(codec)
        if rules is not None and (codec == "opus" or data[-4:] != lkts.MAGIC):
            kf = sealed_keyframe(codec, data)
            out: bytes | None = _lk_open(_fast.get(key) or _fast_key(key), data,
                                         rules[kf], 10 if kf else 3)
            if out is not None:
                return out
    check_codec(codec)
    if codec != "opus" and data[-4:] == lkts.MAGIC:
        data, _ = lkts.extract(data)
    if sif_trailer and data.endswith(sif_trailer):
        payload = sif.strip(data, sif_trailer)
        if sif.is_allowed_blank(payload):
            return payload
        raise DroppedFrame("server-injected frame is not a known blank")
    aead = _aeads.get((key, active())) or _aead(key)
    return open_frame(aead, data, codec=codec, keyframe=keyframe)
