"""Jitsi JFrame: LiveKit's framing (frame-type clear bytes, ``IV ‖ 0x0C ‖ KID``
trailer) with lib-jitsi-meet's HKDF: AES key salt ``JFrameEncryptionKey``, ratchet
salt ``JFrameRatchetKey``, empty info, raw 32-byte material."""

from __future__ import annotations

from framecrypt.workers.livekit.codecs import check_codec
from framecrypt.workers.livekit.cryptor import CryptorOptions, ParticipantCryptor
from framecrypt.workers.livekit.frame import jitsi_iv, open_frame, seal
from framecrypt.workers.livekit.kdf import JITSI_KEY_SALT, JITSI_RATCHET_SALT, Kdf

from .livekit import _aead

__all__ = [
    "JITSI_KEY_SALT",
    "JITSI_RATCHET_SALT",
    "ParticipantCryptor",
    "derive_key",
    "options",
    "protect",
    "ratchet",
    "unprotect",
]

_KDF = Kdf.jitsi()


def derive_key(material: bytes) -> bytes:
    """AES-128 key: HKDF-SHA256(material, salt "JFrameEncryptionKey", info "")."""
    return _KDF.derive_key(bytes(material))


def ratchet(material: bytes) -> bytes:
    """Next material: HKDF-SHA256(material, salt "JFrameRatchetKey", info "", 32)."""
    return _KDF.ratchet(bytes(material))


def options(*, ratchet_window: int = 8, keyring_size: int = 16) -> CryptorOptions:
    """:class:`CryptorOptions` for a Jitsi participant (ring 16, ratchet window 8, no
    failure tolerance: lib-jitsi-meet never marks a key invalid)."""
    return CryptorOptions(
        ratchet_window=ratchet_window,
        failure_tolerance=-1,
        keyring_size=keyring_size,
        jitsi=True,
    )


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
    check_codec(codec)
    return seal(
        _aead(key), plaintext, codec=codec, keyframe=keyframe,
        iv=jitsi_iv(ssrc, timestamp, send_count), key_index=key_index, jitsi=True,
    )


def unprotect(data: bytes, *, key: bytes, codec: str, keyframe: bool | None = None) -> bytes:
    """Open one frame. No ``keyframe`` hint is needed: the frame type is read from the
    frame's clear bytes (VP8 P bit, VP9/AV1 headers, H.26x NAL types; an H.26x frame
    is also tried under the other rule, since a delta frame's 3 clear bytes may not
    show its NAL type). An explicit ``keyframe`` that disagrees is a checked hint,
    tried only if the payload's rule fails."""
    check_codec(codec)
    return open_frame(_aead(key), data, codec=codec, keyframe=keyframe, jitsi=True)

