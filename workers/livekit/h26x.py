"""H.264 / H.265 Annex B helpers for the LiveKit frame format.

Behaviour matches livekit-client's ``naluUtils.ts`` and ``utils.ts`` byte for byte
(start-code scan, slice detection, the 3→4-byte start-code rewrite, RBSP
emulation-prevention escaping) so that the clear header, the AAD and the escaped
body agree with what browsers send. Implemented with ``bytes.find`` so the cost is
linear and mostly in C.
"""

from __future__ import annotations

from typing import Literal

from framecrypt.errors import MalformedFrame

Buffer = bytes | bytearray | memoryview
NaluCodec = Literal["h264", "h265"]

_SC3 = b"\x00\x00\x01"
_SC4 = b"\x00\x00\x00\x01"
_ZZ = b"\x00\x00"
_ZZ3 = b"\x00\x00\x03"

# H.264 slice NAL unit types: 1 (non-IDR), 5 (IDR).
_H264_SLICES = frozenset((1, 5))
# H.265 VCL NAL unit types: 0–9 and 16–21.
_H265_SLICES = frozenset((*range(10), *range(16, 22)))


def nalu_indices(stream: bytes) -> list[int]:
    """Offsets where NAL units start (just after each start code).

    Raises :class:`MalformedFrame` when the stream does not begin with a start code
    (livekit-client: "byte stream contains leading data").
    """
    n = len(stream)
    search_length = n - 3
    result: list[int] = []
    start = pos = 0
    while pos < search_length:
        q = stream.find(_SC3, pos, search_length + 2)
        if q < 0:
            pos = n
        elif q - 1 >= pos and stream[q - 1] == 0:
            pos = q - 1
        else:
            pos = q
        end = pos
        while end > start and stream[end - 1] == 0:
            end -= 1
        if start == 0:
            if end != start:
                raise MalformedFrame("byte stream contains leading data")
        else:
            result.append(start)
        sc_len = 4 if pos < n - 3 and stream[pos : pos + 4] == _SC4 else 3
        start = pos = pos + sc_len
    return result


def _is_slice(codec: NaluCodec, first_byte: int) -> bool:
    if codec == "h264":
        return (first_byte & 0x1F) in _H264_SLICES
    return ((first_byte >> 1) & 0x3F) in _H265_SLICES


def clear_bytes(data: bytes, known: NaluCodec | None) -> int | None:
    """Clear-header length of an Annex B frame: first slice NAL offset + 2.

    The bytes outrank ``known`` (H.264 is tried first, as livekit-client does).
    Returns None when no NAL processing applies (no start codes, leading data, or no
    slice found); the caller then uses the VP8 frame-type rule.
    """
    try:
        indices = nalu_indices(data)
    except MalformedFrame:
        return None
    codec: NaluCodec | None = None
    for i in indices:
        if _is_slice("h264", data[i]):
            codec = "h264"
            break
    if codec is None:
        for i in indices:
            if _is_slice("h265", data[i]):
                codec = "h265"
                break
    if codec is None:
        codec = known
    if codec is None:
        return None
    for i in indices:
        if _is_slice(codec, data[i]):
            return i + 2
    return None


def normalize_start_codes(header: bytes) -> bytes:
    """Rewrite every 3-byte start code (``00 00 01`` not preceded by ``00``) to 4 bytes."""
    positions: list[int] = []
    pos = 0
    while True:
        q = header.find(_SC3, pos)
        if q < 0:
            break
        if q == 0 or header[q - 1] != 0:
            positions.append(q)
        pos = q + 3
    return _splice(header, positions, b"\x00")


def _splice(data: bytes, cuts: list[int], insert: bytes) -> bytes:
    """``data`` with ``insert`` placed before each offset in ``cuts`` (ascending)."""
    if not cuts:
        return data
    parts: list[bytes] = []
    last = 0
    for c in cuts:
        parts.append(data[last:c])
        last = c
    parts.append(data[last:])
    return insert.join(parts)


def escape(data: Buffer) -> bytes:
    """RBSP emulation prevention: insert ``03`` after ``00 00`` when the next byte ≤ 3."""
    b = bytes(data)
    n = len(b)
    cuts: list[int] = []
    pos = 0
    while True:
        p = b.find(_ZZ, pos)
        if p < 0 or p + 2 >= n:
            break
        if b[p + 2] <= 3:
            cuts.append(p + 2)
            pos = p + 2
        else:
            pos = p + 3
    return _splice(b, cuts, b"\x03")


def needs_unescape(data: Buffer) -> bool:
    """livekit-client's test: a ``00 00 03`` that ends before the last byte."""
    b = data if isinstance(data, bytes) else bytes(data)
    return b.find(_ZZ3, 0, len(b) - 1) >= 0


def unescape(data: Buffer) -> bytes:
    """Remove emulation-prevention bytes: every ``00 00 03`` becomes ``00 00``."""
    b = data if isinstance(data, bytes) else bytes(data)
    parts: list[bytes] = []
    last = pos = 0
    while True:
        p = b.find(_ZZ3, pos)
        if p < 0:
            break
        parts.append(b[last : p + 2])
        last = pos = p + 3
    if not parts:
        return b
    parts.append(b[last:])
    return b"".join(parts)
