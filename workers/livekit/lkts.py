"""The LKTS frame-metadata trailer (LiveKit ``frameMetadata``), video only.

Appended *after* encryption, removed *before* decryption. Layout: TLV entries with
every byte XORed with 0xFF (tag 0x01 user timestamp µs, 8 bytes BE; 0x02 frame id,
4 bytes; 0x03 user data), then ``(trailer length ^ 0xFF)`` and ASCII ``LKTS``. The
trailer length counts the entries plus the 5-byte envelope. A sealed frame never
ends in ``LKTS`` (its last two bytes are ``0x0C, KID``), so detection is unambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

MAGIC: Final = b"LKTS"
ENVELOPE: Final = 5
TAG_TIMESTAMP: Final = 0x01
TAG_FRAME_ID: Final = 0x02
TAG_USER_DATA: Final = 0x03

_FLIP = bytes(range(255, -1, -1))  # translate table: b ^ 0xFF


@dataclass(frozen=True, slots=True)
class FrameMetadata:
    user_timestamp_us: int = 0
    frame_id: int = 0
    user_data: bytes | None = None


def append(data: bytes, meta: FrameMetadata) -> bytes:
    """Append an LKTS trailer (nothing when every field is empty, as livekit-client)."""
    body = bytearray()
    if meta.user_timestamp_us:
        body += bytes((TAG_TIMESTAMP, 8)) + meta.user_timestamp_us.to_bytes(8, "big")
    if meta.frame_id:
        body += bytes((TAG_FRAME_ID, 4)) + meta.frame_id.to_bytes(4, "big")
    if meta.user_data:
        if len(meta.user_data) > 200:
            raise ValueError("user_data too long for an LKTS trailer")
        body += bytes((TAG_USER_DATA, len(meta.user_data))) + meta.user_data
    if not body:
        return data
    total = len(body) + ENVELOPE
    return data + bytes(body).translate(_FLIP) + bytes((total ^ 0xFF,)) + MAGIC


def extract(data: bytes) -> tuple[bytes, FrameMetadata | None]:
    """``(frame without trailer, metadata)``, or ``(data, None)`` when there is none.

    Follows livekit-client: a trailer whose length is out of range, or that holds no
    known entry, is left in place.
    """
    n = len(data)
    if n < ENVELOPE or not data.endswith(MAGIC):
        return data, None
    total = data[n - ENVELOPE] ^ 0xFF
    if total < ENVELOPE or total > n:
        return data, None
    start, end = n - total, n - ENVELOPE
    raw = data[start:end].translate(_FLIP)
    ts = fid = 0
    user: bytes | None = None
    found = False
    off = 0
    while off + 2 <= len(raw):
        tag, length = raw[off], raw[off + 1]
        off += 2
        if off + length > len(raw):
            break
        if tag == TAG_TIMESTAMP and length == 8:
            ts, found = int.from_bytes(raw[off : off + 8], "big"), True
        elif tag == TAG_FRAME_ID and length == 4:
            fid, found = int.from_bytes(raw[off : off + 4], "big"), True
        elif tag == TAG_USER_DATA:
            user, found = raw[off : off + length], True
        off += length
    if not found:
        return data, None
    return data[:start], FrameMetadata(ts, fid, user)
