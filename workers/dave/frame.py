"""A DAVE frame sealed and opened with one AES-128 key (the key of one generation).

Sealing (libdave's encryptor): the codec decides the unencrypted ranges; their bytes,
concatenated, are the AAD; the other bytes, concatenated, are encrypted with AES-128-GCM
under the 96-bit nonce ``0x00 * 8 || u32le(truncated nonce)``; the ciphertext is written
back in place of the plaintext bytes (the clear ranges stay where they were), then the
footer (:mod:`.footer`) with the GCM tag truncated to its first 8 bytes.

Opening is codec-agnostic: the ranges come from the footer. The 8-byte tag is checked
with a whole-tag AES-GCM object (KeyRatchet.aead: one per generation, the extension's
when it runs):
the ciphertext is decrypted by GCM-encrypting it (GCM's encryption is the CTR keystream
from the same counter block), the plaintext sealed again, and the first 8 bytes of that
tag compared in constant time with the footer's; only then is the plaintext returned.
"""

from __future__ import annotations

import hmac
import struct
from typing import Final

from framecrypt.errors import (
    AuthenticationFailed,
    DroppedFrame,
    InvalidKeyMaterial,
    MalformedFrame,
    UnsupportedCodec,
)
from framecrypt.workers import leb128, native
from framecrypt.workers.native import Gcm, aesgcm

from . import footer, h26x

BytesLike = bytes | bytearray | memoryview
_NONCE_PREFIX: Final = bytes(8)
_C: Final = native.NATIVE  # the extension (None when not built)
_C_GCM: Final[type | None] = _C.AesGcm if _C is not None else None
OPUS_SILENCE: Final = b"\xf8\xff\xfe"
VP8_KEYFRAME_CLEAR = 10
VP8_DELTA_CLEAR = 1
H26X_DROPPED = -3  # dave_seal_h26x: every attempt held a start code (fc_dave_h26x.h)


def gcm_nonce(truncated_nonce: int) -> bytes:
    """The 96-bit AES-GCM nonce for a 32-bit truncated nonce."""
    return _NONCE_PREFIX + struct.pack("<I", truncated_nonce)


def unencrypted_ranges(codec: str, frame: BytesLike) -> list[tuple[int, int]]:
    """The ranges a sender leaves clear: none for Opus and VP9, the VP8 payload header
    (10 bytes on a key frame, 1 otherwise) for VP8; a VP8 frame shorter than its header
    is encrypted whole."""
    if codec in ("opus", "vp9"):
        return []
    if codec == "vp8":
        if not frame:
            return []
        clear = VP8_DELTA_CLEAR if frame[0] & 0x01 else VP8_KEYFRAME_CLEAR
        return [(0, clear)] if len(frame) >= clear else []
    raise UnsupportedCodec(codec)


_AV1_DROPPED = (2, 8, 15)  # temporal delimiter, tile list, padding: the packetizer drops them


def av1_frame(frame: BytesLike) -> tuple[bytes, list[tuple[int, int]]]:
    """What an AV1 sender seals: the frame without the OBUs the packetizer drops, each OBU
    header (and extension byte and LEB128 size, rewritten minimally) clear, the payloads
    encrypted; the last OBU loses its size field (its has-size bit cleared). A malformed
    frame is sealed as it is, encrypted whole (as libdave does)."""
    data = bytes(frame)
    n = len(data)
    out = bytearray()
    ranges: list[tuple[int, int]] = []

    def clear(chunk: bytes) -> None:
        if ranges and ranges[-1][0] + ranges[-1][1] == len(out):
            ranges[-1] = (ranges[-1][0], ranges[-1][1] + len(chunk))
        else:
            ranges.append((len(out), len(chunk)))
        out.extend(chunk)

    i = 0
    while i < n:
        header_at, header = i, data[i]
        i += 1
        has_ext, has_size, obu_type = header & 0x04, header & 0x02, (header & 0x78) >> 3
        if has_ext:
            i += 1
        if i >= n:
            return data, []
        if has_size:
            try:
                size, i = leb128.decode(data, i, n)
            except MalformedFrame:
                return data, []
        else:
            size = n - i
        payload_at = i
        if i + size > n:
            return data, []
        i += size
        if obu_type in _AV1_DROPPED:
            continue
        keep_size = bool(has_size) and i != n
        clear(bytes([header if keep_size or not has_size else header & ~0x02]))
        if has_ext:
            clear(data[header_at + 1 : header_at + 2])
        if keep_size:
            clear(leb128.encode(size))
        out.extend(data[payload_at:i])
    return bytes(out), ranges


def _split(frame: BytesLike, ranges: footer.Ranges, end: int) -> tuple[bytes, bytes]:
    mv = memoryview(frame)
    clear, other, pos = [], [], 0
    for offset, size in ranges:
        other.append(mv[pos:offset])
        clear.append(mv[offset : offset + size])
        pos = offset + size
    other.append(mv[pos:end])
    return b"".join(clear), b"".join(other)


def _interleave(ranges: footer.Ranges, clear: bytes, other: bytes) -> bytearray:
    out = bytearray()
    ci = oi = pos = 0
    for offset, size in ranges:
        n = offset - pos
        out += other[oi : oi + n]
        oi += n
        out += clear[ci : ci + size]
        ci += size
        pos = offset + size
    out += other[oi:]
    return out


Key = bytes | Gcm  # a generation's key, or its AES-GCM object (KeyRatchet.aead)


def _aead(key: Key) -> Gcm:
    if isinstance(key, bytes | bytearray):
        _check_key(key)
        return aesgcm(bytes(key))
    return key


def _check_key(key: bytes) -> None:
    if len(key) != 16:
        raise InvalidKeyMaterial("a DAVE frame key is 16 bytes (AES-128)")


def seal(key: Key, truncated_nonce: int, frame: BytesLike,
         ranges: footer.Ranges = ()) -> bytes:
    """Seal ``frame`` leaving ``ranges`` clear (and authenticated)."""
    aead = _aead(key)
    if type(aead) is _C_GCM:
        # the C path: no clear range or one clear prefix (fc_dave.c), any ranges
        # (fc_dave_h26x.c); None where it stops (the checks below raise)
        if not ranges or (len(ranges) == 1 and ranges[0][0] == 0 and ranges[0][1] > 0):
            sealed: bytes | None = _C.dave_seal(aead, truncated_nonce, frame,
                                                ranges[0][1] if ranges else 0)
        else:
            sealed = _C.dave_seal_ranges(aead, truncated_nonce, frame, ranges)
        if sealed is not None:
            return sealed
    if not ranges:
        whole = aead.encrypt(gcm_nonce(truncated_nonce), frame, None)
        return whole[:-16] + footer.serialize(whole[-16:-8], truncated_nonce, ranges)
    footer.check_ranges(ranges, len(frame))
    clear, plain = _split(frame, ranges, len(frame))
    whole = aead.encrypt(gcm_nonce(truncated_nonce), plain, clear)
    body = _interleave(ranges, clear, whole[:-16])
    return bytes(body) + footer.serialize(whole[-16:-8], truncated_nonce, ranges)


def seal_codec(key: Key, truncated_nonce: int, codec: str, frame: BytesLike) -> bytes:
    """Seal ``frame`` with the unencrypted ranges ``codec`` calls for (for AV1, the frame
    as :func:`av1_frame` rewrites it: what the receiver opens)."""
    if codec == "av1":
        rewritten, ranges = av1_frame(frame)
        return seal(key, truncated_nonce, rewritten, ranges)
    if codec in ("h264", "h265"):
        return seal_h26x(key, truncated_nonce, codec, frame)[0]
    return seal(key, truncated_nonce, frame, unencrypted_ranges(codec, frame))


def seal_h26x(key: Key, first_nonce: int, codec: str, frame: BytesLike) -> tuple[bytes, int]:
    """Seal an H.264/H.265 frame, retrying with the next nonce while the result would hold
    a start code; returns the sealed frame and the nonce it used. ``DroppedFrame`` if
    all :data:`h26x.MAX_ATTEMPTS` attempts leak one."""
    aead = _aead(key)
    if type(aead) is _C_GCM:  # fc_dave_h26x.c; it stops where a generation would end
        got = _C.dave_seal_h26x(aead, first_nonce, codec == "h265", frame)
        if type(got) is tuple:
            return got[0], first_nonce + got[1] - 1
        if got == H26X_DROPPED:
            raise DroppedFrame("every H.26x sealing attempt held a start code")
    rewritten, ranges = h26x.h26x_frame(codec, frame)
    for attempt in range(h26x.MAX_ATTEMPTS):
        nonce = first_nonce + attempt
        sealed = seal(aead, nonce, rewritten, ranges)
        if not h26x.has_start_code_leak(sealed, ranges):
            return sealed, nonce
    raise DroppedFrame("every H.26x sealing attempt held a start code")


def quick_footer(data: BytesLike) -> footer.Footer:
    """The footer of ``data`` with its nonce only, read by the C path where it runs (the
    rest is read if the C path cannot open the frame); :func:`footer.parse` else."""
    if native.active():
        nonce = _C.dave_nonce(data)
        if nonce >= 0:
            return footer.Footer(b"", nonce, (), -1)
    return footer.parse(data)


def open_frame(key: Key, frame: BytesLike) -> bytes:
    """Open a sealed frame; :class:`MalformedFrame` for a bad footer,
    :class:`AuthenticationFailed` when it does not authenticate under ``key``."""
    key = _aead(key)
    f = footer.parse(frame)
    return open_parsed(key, frame, f)


def open_parsed(key: Key, frame: BytesLike, f: footer.Footer) -> bytes:
    """Open ``frame`` whose footer is already parsed as ``f`` (or, with the C path,
    only its nonce read: ``f.body_len`` -1, see :func:`quick_footer`)."""
    aead = _aead(key)  # (once per frame for raw keys: pass KeyRatchet.aead objects)
    if type(aead) is _C_GCM:
        opened: bytes | None = _C.dave_open(aead, frame)
        if opened is not None:
            return opened
    if f.body_len < 0:  # the reference takes it from here: the whole footer
        f = footer.parse(frame)
    nonce = gcm_nonce(f.nonce)
    if not f.ranges:
        cipher: BytesLike = memoryview(frame)[: f.body_len]
        clear = b""
    else:
        clear, cipher = _split(frame, f.ranges, f.body_len)
    plain = aead.encrypt(nonce, cipher, None)[:-16]  # the CTR keystream, applied
    tag = aead.encrypt(nonce, plain, clear or None)[-16:-8]
    if not hmac.compare_digest(tag, f.tag):
        raise AuthenticationFailed()
    if not f.ranges:
        return plain
    return bytes(_interleave(f.ranges, clear, plain))
