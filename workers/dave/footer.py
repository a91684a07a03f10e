"""The DAVE "secure frame" footer (the supplemental bytes after the frame body).

Layout, after the frame body (ciphertext with the unencrypted ranges interleaved)::

    tag (8 bytes, truncated AES-128-GCM) | ULEB128 truncated nonce (32-bit)
    | ULEB128 (offset, size) pairs of unencrypted ranges | supplemental size (1 byte)
    | magic 0xFA 0xFA

The supplemental size counts every footer byte, itself and the magic included.
:func:`parse` is total: anything malformed raises :class:`MalformedFrame`, never another
exception. It is stricter than libdave in two ways that no conforming sender violates: a
truncated nonce must fit in 32 bits (libdave silently truncates a longer one) and the
unencrypted ranges must lie inside the frame body (libdave checks them against the whole
frame, footer included).
"""

from __future__ import annotations

from dataclasses import dataclass

from framecrypt.errors import MalformedFrame
from framecrypt.workers import leb128

TAG_BYTES = 8
MAGIC = b"\xfa\xfa"
# tag + supplemental-size byte + magic: the smallest footer minus its nonce
MIN_SUPPLEMENTAL = TAG_BYTES + 1 + len(MAGIC)
MAX_NONCE = 0xFFFFFFFF

Ranges = tuple[tuple[int, int], ...] | list[tuple[int, int]]


@dataclass(frozen=True, slots=True)
class Footer:
    """A parsed footer: where the body ends and what the footer says about it."""

    tag: bytes
    nonce: int
    ranges: tuple[tuple[int, int], ...]
    body_len: int

    @property
    def generation(self) -> int:
        """The key generation: the truncated nonce's most significant byte."""
        return self.nonce >> 24


def check_ranges(ranges: Ranges, body_len: int) -> None:
    """Ranges must be in order, not overlap, and lie inside the body."""
    prev_end = 0
    for offset, size in ranges:
        if offset < prev_end or offset + size > body_len:
            raise MalformedFrame("DAVE unencrypted ranges out of order or out of the frame")
        prev_end = offset + size


def serialize(tag: bytes, nonce: int, ranges: Ranges) -> bytes:
    """The footer bytes for ``tag``, ``nonce`` and the unencrypted ``ranges``."""
    if len(tag) != TAG_BYTES:
        raise ValueError("the DAVE tag is 8 bytes")
    if not 0 <= nonce <= MAX_NONCE:
        raise ValueError("the DAVE truncated nonce is 32 bits")
    parts = [tag, leb128.encode(nonce)]
    for offset, size in ranges:
        parts.append(leb128.encode(offset))
        parts.append(leb128.encode(size))
    body = b"".join(parts)
    size = len(body) + 1 + len(MAGIC)
    if size > 0xFF:
        raise ValueError("too many unencrypted ranges for a DAVE footer")
    return body + bytes([size]) + MAGIC


def is_dave_frame(frame: bytes | bytearray | memoryview) -> bool:
    """Whether ``frame`` ends with the DAVE magic marker (a cheap passthrough test)."""
    return len(frame) >= MIN_SUPPLEMENTAL and bytes(frame[-2:]) == MAGIC


def parse(frame: bytes | bytearray | memoryview) -> Footer:
    """Parse the footer of ``frame``; :class:`MalformedFrame` for anything malformed."""
    n = len(frame)
    if n < MIN_SUPPLEMENTAL:
        raise MalformedFrame("DAVE frame shorter than the smallest footer")
    if bytes(frame[n - 2 :]) != MAGIC:
        raise MalformedFrame("DAVE frame lacks the 0xFAFA marker")
    supplemental = frame[n - 3]
    if supplemental < MIN_SUPPLEMENTAL or supplemental > n:
        raise MalformedFrame("DAVE supplemental size out of range")
    start = n - supplemental
    tag = bytes(frame[start : start + TAG_BYTES])
    end = n - 3
    nonce, pos = leb128.decode(frame, start + TAG_BYTES, end)
    if nonce > MAX_NONCE:
        raise MalformedFrame("DAVE truncated nonce exceeds 32 bits")
    ranges: list[tuple[int, int]] = []
    while pos < end:
        offset, pos = leb128.decode(frame, pos, end)
        size, pos = leb128.decode(frame, pos, end)
        ranges.append((offset, size))
    check_ranges(ranges, start)
    return Footer(tag=tag, nonce=nonce, ranges=tuple(ranges), body_len=start)
