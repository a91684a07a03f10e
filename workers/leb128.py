"""ULEB128, the variable-length integer of the DAVE frame footer — byte for byte the
protobuf varint of LiveKit's data packets and Olm's messages. One encoder, one
decoder (total: a typed :class:`~framecrypt.errors.MalformedFrame` for anything cut,
over 10 bytes or over 64 bits)."""

from __future__ import annotations

from framecrypt.errors import MalformedFrame

MAX_BYTES = 10  # a 64-bit value


def encode(value: int) -> bytes:
    """ULEB128 of a non-negative integer."""
    if value < 0:
        raise ValueError("ULEB128 encodes non-negative integers only")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode(buf: bytes | bytearray | memoryview, pos: int, end: int) -> tuple[int, int]:
    """The value at ``buf[pos:end]`` and the position after it."""
    value = shift = 0
    for i in range(MAX_BYTES):
        if pos + i >= end:
            raise MalformedFrame("truncated ULEB128 / varint")
        byte = buf[pos + i]
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if value >= 1 << 64:
                raise MalformedFrame("ULEB128 / varint over 64 bits")
            return value, pos + i + 1
    raise MalformedFrame("ULEB128 / varint longer than 10 bytes")
