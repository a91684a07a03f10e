"""The LiveKit / Jitsi frame: ``H ‖ AES-GCM(body) ‖ tag(16) ‖ IV(12) ‖ 0x0C ‖ KID``.

``H`` is the clear codec header (:mod:`.codecs`) and the whole AAD. For H.264/H.265
``H`` has its 3-byte start codes rewritten to 4 bytes and everything after it
(ciphertext, tag and trailer) is RBSP-escaped.

Decryption order (as livekit-client): strip an LKTS trailer → pass empty frames →
check the SIF trailer → read the KID → (key lookup by the caller) → unescape → GCM.
The parse happens once; a caller that retries with ratcheted keys reuses the
:class:`Sealed` view, so a frame is never unescaped twice.

Opening takes no keyframe hint: the clear rule is read from the sealed frame
(:func:`.codecs.sealed_keyframe`), as a browser's depacketizer does. An explicit
``keyframe=`` on open is a checked hint: when it names the other rule and the frame
does not authenticate under the payload's, the hint's rule is tried too (one more
AES-GCM attempt; for frames whose bytes do not carry their type, such as
livekit-client's own synthetic unit-test vector). It never makes a frame fail.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag

from framecrypt.errors import AuthenticationFailed, MalformedFrame
from framecrypt.workers.native import NATIVE, is_native_key

from . import h26x
from .codecs import CODECS as _CODEC_SET
from .codecs import (
    DELTA_BYTES,
    KEY_BYTES,
    NALU_CODECS,
    ambiguous,
    clear_prefix,
    frame_type_bytes,
    sealed_keyframe,
)

IV_LENGTH: Final = 12
TAG_LENGTH: Final = 16
TRAILER_LENGTH: Final = IV_LENGTH + 2
OVERHEAD: Final = TAG_LENGTH + TRAILER_LENGTH  # 30 bytes (before escaping)
U32: Final = 0xFFFFFFFF

Buffer = bytes | bytearray | memoryview


class Aead(Protocol):
    """What we need of ``cryptography``'s AESGCM."""

    def encrypt(self, nonce: Buffer, data: Buffer, associated_data: Buffer | None) -> bytes: ...
    def encrypt_into(
        self, nonce: Buffer, data: Buffer, associated_data: Buffer | None, buf: Buffer
    ) -> int: ...
    def decrypt(self, nonce: Buffer, data: Buffer, associated_data: Buffer | None) -> bytes: ...
    def decrypt_into(
        self, nonce: Buffer, data: Buffer, associated_data: Buffer | None, buf: Buffer
    ) -> int: ...


TRAILER = struct.Struct(">IIIBB")
"""The trailer ``IV ‖ 0x0C ‖ KID``, the IV being ``ssrc ‖ ts ‖ word``: the one packer of
every LiveKit/Jitsi IV (the pure core, the engine's batch loop and the public API)."""
_TAILS = tuple(bytes((IV_LENGTH, k)) for k in range(256))
IV_SCHEMES: Final = ("livekit", "jitsi", "counter")


def iv_word(scheme: str, timestamp: int, count: int) -> int:
    """The IV's last word: livekit-client's ``(ts − count mod 0xFFFF) mod 2³²``,
    lib-jitsi-meet's ``count mod 0xFFFF``, or ``counter`` (``count`` itself, unique per
    key for 2³² frames whatever the timestamps do; receivers read the IV from the
    trailer, so it interoperates)."""
    if scheme == "counter":
        return count & U32
    if scheme == "jitsi":
        return count % 0xFFFF
    return (timestamp - count % 0xFFFF) & U32


def trailer(scheme: str, ssrc: int, timestamp: int, count: int, key_index: int) -> bytes:
    """``IV ‖ 0x0C ‖ KID`` (``struct.error`` if ``key_index`` is not 0..255)."""
    return TRAILER.pack(ssrc & U32, timestamp & U32, iv_word(scheme, timestamp, count),
                        IV_LENGTH, key_index)


def livekit_iv(ssrc: int, timestamp: int, send_count: int) -> bytes:
    """livekit-client's IV: ``ssrc ‖ ts ‖ (ts − send_count mod 0xFFFF) mod 2³²``."""
    return trailer("livekit", ssrc, timestamp, send_count, 0)[:IV_LENGTH]


def jitsi_iv(ssrc: int, timestamp: int, send_count: int) -> bytes:
    """lib-jitsi-meet's IV: ``ssrc ‖ ts ‖ send_count mod 0xFFFF``."""
    return trailer("jitsi", ssrc, timestamp, send_count, 0)[:IV_LENGTH]


def counter_iv(ssrc: int, timestamp: int, counter: int) -> bytes:
    """``ssrc ‖ ts ‖ counter mod 2³²`` (see :func:`iv_word`)."""
    return trailer("counter", ssrc, timestamp, counter, 0)[:IV_LENGTH]


# codec/frame-type rules that need no look at the bytes (fast path)
_FIXED: dict[tuple[str, bool], int] = {
    ("vp8", True): 10, ("vp8", False): 3, ("opus", True): 1, ("opus", False): 1,
    ("vp9", True): 0, ("vp9", False): 0, ("av1", True): 0, ("av1", False): 0,
}
_BIG = 32768  # from here on, write into one preallocated output (see _encrypt_join)


def _header_len(codec: str, keyframe: bool, data: bytes, jitsi: bool) -> tuple[int, bool]:
    if jitsi:
        return frame_type_bytes(codec, keyframe), False
    return clear_prefix(codec, keyframe, data)


def _fixed_clear(codec: str, keyframe: bool, jitsi: bool) -> int | None:
    if jitsi:
        return frame_type_bytes(codec, keyframe)
    return _FIXED.get((codec, keyframe))


def native_rule(codec: str, keyframe: bool, jitsi: bool) -> int:
    """The extension's clear rule for a (codec, keyframe): the fixed clear byte count,
    or its H.264/H.265 NAL scan (LiveKit; the scan falls back to the VP8 rule)."""
    n = _fixed_clear(codec, keyframe, jitsi)
    if n is not None:
        return n
    assert NATIVE is not None
    return int(NATIVE.CLEAR_NAL264 if codec == "h264" else NATIVE.CLEAR_NAL265)


def _encrypt_join(aead: Aead, data: bytes, n: int, header: bytes, trailer: bytes) -> bytes:
    """``header ‖ GCM(data[n:], aad=header) ‖ trailer`` in one output buffer.

    Small frames: ``encrypt`` + ``join`` is cheapest. From 32 KB on, two large
    allocations per frame make glibc trim and re-fault heap pages, so the ciphertext
    is written straight into the output with ``encrypt_into``.
    """
    size = len(data)
    if size < _BIG:
        return b"".join((header, aead.encrypt(trailer[:IV_LENGTH], data[n:], header), trailer))
    h = len(header)
    end = h + size - n + TAG_LENGTH
    out = bytearray(end + TRAILER_LENGTH)
    out[:h] = header
    aead.encrypt_into(trailer[:IV_LENGTH], memoryview(data)[n:], header, memoryview(out)[h:end])
    out[end:] = trailer
    return bytes(out)


def seal_trailer(
    aead: Aead, data: bytes, codec: str, keyframe: bool, trailer: bytes, jitsi: bool = False
) -> bytes:
    """Encrypt one frame given its packed 14-byte trailer (``IV ‖ 0x0C ‖ KID``)."""
    if not data:
        return b""  # empty (DTX) frames pass through, as livekit-client does
    if NATIVE is not None and is_native_key(aead) and codec in _CODEC_SET:
        out: bytes | None = NATIVE.lk_seal(aead, data, native_rule(codec, keyframe, jitsi),
                                           KEY_BYTES if keyframe else DELTA_BYTES, trailer)
        if out is not None:
            return out  # (None: the frame is the reference's, which raises)
    n = _fixed_clear(codec, keyframe, jitsi)
    nalu = False
    if n is None:
        n, nalu = _header_len(codec, keyframe, data, jitsi)
    if n > len(data):
        raise MalformedFrame("frame shorter than its clear header")
    if not nalu:
        return _encrypt_join(aead, data, n, data[:n], trailer)
    # H.26x: the AAD and the wire carry the header with 4-byte start codes; everything
    # after it is RBSP-escaped
    header = h26x.normalize_start_codes(data[:n])
    ct = aead.encrypt(trailer[:IV_LENGTH], memoryview(data)[n:], header)
    return header + h26x.escape(b"".join((ct, trailer)))


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
    if len(iv) != IV_LENGTH:
        raise ValueError("iv must be 12 bytes")
    if not 0 <= key_index <= 255:
        raise ValueError("key_index must be 0..255")
    return seal_trailer(aead, data, codec, keyframe, iv + _TAILS[key_index], jitsi)



@dataclass(frozen=True, slots=True)
class Sealed:
    """A parsed sealed frame (views into one buffer); parse once, try several keys.
    ``alt``: the frame read under the other frame-type rule, tried when this reading
    does not authenticate (H.26x frames whose rule the clear bytes cannot always
    tell: :func:`.codecs.ambiguous`)."""

    header: bytes
    ciphertext: memoryview
    iv: bytes
    key_index: int
    alt: Sealed | None = None

    def open(self, aead: Aead) -> bytes:
        try:
            pt = aead.decrypt(self.iv, self.ciphertext, self.header)
        except InvalidTag:
            if self.alt is not None:
                return self.alt.open(aead)
            raise AuthenticationFailed() from None
        return self.header + pt


def key_index_of(data: bytes) -> int:
    """The KID byte (last byte) of a sealed frame."""
    if len(data) < TRAILER_LENGTH + TAG_LENGTH:
        raise MalformedFrame("frame too short for the trailer")
    return data[-1]


def open_rules(codec: str, data: Buffer, jitsi: bool) -> tuple[int, int]:
    """The extension's ``(rule, vp8rule)`` a receiver opens ``data`` with: those of the
    frame type read from the payload (:func:`.codecs.sealed_keyframe`)."""
    kf = sealed_keyframe(codec, data)
    return native_rule(codec, kf, jitsi), KEY_BYTES if kf else DELTA_BYTES


def parse(
    data: bytes, *, codec: str, keyframe: bool | None = None, jitsi: bool = False
) -> Sealed:
    """Split a sealed, non-empty frame (LKTS and SIF already handled by the caller).
    The frame type is read from ``data``; ``keyframe``, when given and different, is
    the rule of :attr:`Sealed.alt` (a checked hint, see the module docstring)."""
    kf = sealed_keyframe(codec, data)
    n, nalu = _rule(codec, kf, data, jitsi)
    if not ambiguous(codec, n, nalu) and (keyframe is None or bool(keyframe) == kf):
        return _split(data, n, nalu)
    m, mnalu = _rule(codec, not kf, data, jitsi)
    if (m, mnalu) == (n, nalu):
        return _split(data, n, nalu)
    try:
        first = _split(data, n, nalu)
    except MalformedFrame:
        return _split(data, m, mnalu)
    try:
        alt = _split(data, m, mnalu)
    except MalformedFrame:
        return first
    return Sealed(first.header, first.ciphertext, first.iv, first.key_index, alt)


def _rule(codec: str, keyframe: bool, data: bytes, jitsi: bool) -> tuple[int, bool]:
    n = _fixed_clear(codec, keyframe, jitsi)
    return _header_len(codec, keyframe, data, jitsi) if n is None else (n, False)


def _split(data: bytes, n: int, nalu: bool) -> Sealed:
    if n + OVERHEAD > len(data):
        raise MalformedFrame("frame too short for tag and trailer")
    header = data[:n]
    if nalu:
        rest = data[n:]
        body = h26x.unescape(rest) if h26x.needs_unescape(rest) else rest
        if len(body) < OVERHEAD:
            raise MalformedFrame("frame too short for tag and trailer")
    else:
        body = data[n:]
    if body[-2] != IV_LENGTH:
        raise MalformedFrame("IV length is not 12")
    end = len(body) - TRAILER_LENGTH
    mv = memoryview(body)
    return Sealed(header, mv[:end], body[end : end + IV_LENGTH], body[-1])


def open_frame(
    aead: Aead, data: bytes, *, codec: str, keyframe: bool | None = None, jitsi: bool = False
) -> bytes:
    """Decrypt one sealed frame (no SIF/LKTS handling: see :mod:`.cryptor`). The frame
    type is read from ``data``; ``keyframe`` is a checked hint (module docstring)."""
    if not data:
        return b""
    if NATIVE is not None and is_native_key(aead) and codec in _CODEC_SET:
        pt: bytes | None = NATIVE.lk_open(aead, data, *open_rules(codec, data, jitsi))
        if pt is not None:
            return pt  # (None: the reference raises the typed error)
    kf = sealed_keyframe(codec, data)
    n = _fixed_clear(codec, kf, jitsi)
    if n is None or codec in NALU_CODECS or (keyframe is not None and bool(keyframe) != kf):
        return parse(data, codec=codec, keyframe=keyframe, jitsi=jitsi).open(aead)
    size = len(data)
    if n + OVERHEAD > size:
        raise MalformedFrame("frame too short for tag and trailer")
    if data[-2] != IV_LENGTH:
        raise MalformedFrame("IV length is not 12")
    header = data[:n]
    ct = data[n:-TRAILER_LENGTH] if size < _BIG else memoryview(data)[n:-TRAILER_LENGTH]
    try:
        pt = aead.decrypt(data[-TRAILER_LENGTH:-2], ct, header)
    except InvalidTag:
        raise AuthenticationFailed() from None
    return header + pt if n else pt


def seal_into(
    aead: Aead,
    data: Buffer,
    codec: str,
    keyframe: bool,
    trailer: bytes,
    out: memoryview,
    jitsi: bool = False,
) -> int:
    """Seal straight into ``out`` (e.g. a shared-memory reply ring); returns the length.

    For codecs whose clear header is fixed the ciphertext is written in place with
    ``encrypt_into``; H.26x frames (escaping changes the length) are sealed to bytes
    and copied. Raises ``ValueError`` if ``out`` is too small.
    """
    size = len(data)
    if size == 0:
        return 0
    n = _fixed_clear(codec, keyframe, jitsi)
    if n is None:
        sealed = seal_trailer(aead, bytes(data), codec, keyframe, trailer, jitsi)
        if len(sealed) > len(out):
            raise ValueError("output buffer too small")
        out[: len(sealed)] = sealed
        return len(sealed)
    if n > size:
        raise MalformedFrame("frame shorter than its clear header")
    end = size + TAG_LENGTH
    total = end + TRAILER_LENGTH
    if total > len(out):
        raise ValueError("output buffer too small")
    mv = data if isinstance(data, memoryview) else memoryview(data)
    header = bytes(mv[:n])
    out[:n] = header
    aead.encrypt_into(trailer[:IV_LENGTH], mv[n:], header, out[n:end])
    out[end:total] = trailer
    return total


def open_into(
    aead: Aead, data: Buffer, codec: str, keyframe: bool | None, out: memoryview,
    jitsi: bool = False
) -> int:
    """Open straight into ``out``; returns the plaintext length. Same errors as
    :func:`open_frame`; ``ValueError`` if ``out`` is too small. The frame type is read
    from ``data``; ``keyframe`` is a checked hint (module docstring)."""
    size = len(data)
    if size == 0:
        return 0
    kf = sealed_keyframe(codec, data)
    n = _fixed_clear(codec, kf, jitsi)
    if n is None or codec in NALU_CODECS or (keyframe is not None and bool(keyframe) != kf):
        pt = open_frame(aead, bytes(data), codec=codec, keyframe=keyframe, jitsi=jitsi)
        if len(pt) > len(out):
            raise ValueError("output buffer too small")
        out[: len(pt)] = pt
        return len(pt)
    if n + OVERHEAD > size:
        raise MalformedFrame("frame too short for tag and trailer")
    mv = data if isinstance(data, memoryview) else memoryview(data)
    if mv[size - 2] != IV_LENGTH:
        raise MalformedFrame("IV length is not 12")
    plen = size - OVERHEAD
    if plen + n > len(out):
        raise ValueError("output buffer too small")
    header = bytes(mv[:n])
    iv = bytes(mv[size - TRAILER_LENGTH : size - 2])
    try:
        aead.decrypt_into(iv, mv[n : size - TRAILER_LENGTH], header, out[n : n + plen])
    except InvalidTag:
        raise AuthenticationFailed() from None
    out[:n] = header
    return n + plen
