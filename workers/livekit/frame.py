"""The LiveKit / Jitsi frame: ``H ‖ AES-GCM(body) ‖ tag(16) ‖ IV(12) ‖ 0x0C ‖ KID``.

``H`` is the clear codec header (:mod:`.codecs`) and the whole AAD. For H.264/H.265
``H`` has its 3-byte start codes rewritten to 4 bytes and everything after it
(ciphertext, tag and trailer) is RBSP-escaped.

Decryption order (as livekit-client): strip an LKTS trailer → pass empty frames →
check the SIF trailer → read the KID → (key lookup by the caller) → unescape → GCM.
The parse happens once; a caller that retries with ratcheted keys reuses the
:class:`Sealed` view, so a frame is never unescaped twice.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag

from framecrypt.errors import AuthenticationFailed, MalformedFrame

from . import h26x
from .codecs import clear_prefix, frame_type_bytes

IV_LENGTH: Final = 12
TAG_LENGTH: Final = 16
TRAILER_LENGTH: Final = IV_LENGTH + 2
OVERHEAD: Final = TAG_LENGTH + TRAILER_LENGTH  # 30 bytes (before escaping)
U32: Final = 0xFFFFFFFF

_IV = struct.Struct(">III")


class Aead(Protocol):
    """What we need of ``cryptography``'s AESGCM."""

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...
    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...


def livekit_iv(ssrc: int, timestamp: int, send_count: int) -> bytes:
    """livekit-client's IV: ``ssrc ‖ ts ‖ (ts − send_count mod 0xFFFF) mod 2³²``."""
    return _IV.pack(ssrc & U32, timestamp & U32, (timestamp - send_count % 0xFFFF) & U32)


def jitsi_iv(ssrc: int, timestamp: int, send_count: int) -> bytes:
    """lib-jitsi-meet's IV: ``ssrc ‖ ts ‖ send_count mod 0xFFFF``."""
    return _IV.pack(ssrc & U32, timestamp & U32, send_count % 0xFFFF)


def counter_iv(ssrc: int, timestamp: int, counter: int) -> bytes:
    """``ssrc ‖ ts ‖ counter mod 2³²``: unique per (key, ssrc) for 2³² frames whatever
    the timestamps do. Receivers read the IV from the trailer, so it interoperates."""
    return _IV.pack(ssrc & U32, timestamp & U32, counter & U32)


def _header_len(codec: str, keyframe: bool, data: bytes, jitsi: bool) -> tuple[int, bool]:
    if jitsi:
        return frame_type_bytes(codec, keyframe), False
    return clear_prefix(codec, keyframe, data)


def seal(
    aead: Aead,
    data: bytes,
    *,
    codec: str,
    keyframe: bool,
    iv: bytes,
    key_index: int,
    jitsi: bool = False,
) -> bytes:
    """Encrypt one frame. ``iv`` must be 12 bytes and never repeat under ``aead``'s key."""
    if not data:
        return b""  # empty (DTX) frames pass through, as livekit-client does
    n, nalu = _header_len(codec, keyframe, data, jitsi)
    if n > len(data):
        raise MalformedFrame("frame shorter than its clear header")
    if not 0 <= key_index <= 255:
        raise ValueError("key_index must be 0..255")
    header = data[:n]
    if nalu:
        header = h26x.normalize_start_codes(header)
    ct = aead.encrypt(iv, memoryview(data)[n:], header)
    tail = bytes((IV_LENGTH, key_index))
    if nalu:
        return header + h26x.escape(b"".join((ct, iv, tail)))
    return b"".join((header, ct, iv, tail))


@dataclass(frozen=True, slots=True)
class Sealed:
    """A parsed sealed frame (views into one buffer); parse once, try several keys."""

    header: bytes
    ciphertext: memoryview
    iv: bytes
    key_index: int

    def open(self, aead: Aead) -> bytes:
        try:
            pt = aead.decrypt(self.iv, self.ciphertext, self.header)
        except InvalidTag:
            raise AuthenticationFailed() from None
        return self.header + pt


def key_index_of(data: bytes) -> int:
    """The KID byte (last byte) of a sealed frame."""
    if len(data) < TRAILER_LENGTH + TAG_LENGTH:
        raise MalformedFrame("frame too short for the trailer")
    return data[-1]


def parse(data: bytes, *, codec: str, keyframe: bool, jitsi: bool = False) -> Sealed:
    """Split a sealed, non-empty frame (LKTS and SIF already handled by the caller)."""
    n, nalu = _header_len(codec, keyframe, data, jitsi)
    header = data[:n]
    if nalu:
        rest = data[n:]
        body = h26x.unescape(rest) if h26x.needs_unescape(rest) else rest
    else:
        body = data[n:]
    if len(body) < OVERHEAD or n > len(data):
        raise MalformedFrame("frame too short for tag and trailer")
    iv_len = body[-2]
    if iv_len != IV_LENGTH:
        raise MalformedFrame("IV length is not 12")
    end = len(body) - TRAILER_LENGTH
    mv = memoryview(body)
    return Sealed(header, mv[:end], bytes(mv[end : end + IV_LENGTH]), body[-1])


def open_frame(
    aead: Aead, data: bytes, *, codec: str, keyframe: bool, jitsi: bool = False
) -> bytes:
    """Decrypt one sealed frame (no SIF/LKTS handling: see :mod:`.cryptor`)."""
    if not data:
        return b""
    return parse(data, codec=codec, keyframe=keyframe, jitsi=jitsi).open(aead)
