"""SFrame header codec (RFC 9605 §4.3).

The header is a config byte ``X(1) K(3) Y(1) C(3)`` followed by the KID bytes and
then the CTR bytes. A value ≤ 7 sits in its 3-bit field with the flag clear;
otherwise the flag is set and the field holds the byte length − 1 of the
minimal-length big-endian value (1–8 bytes).

The decoder is strict: it rejects truncation, leading zero bytes (non-minimal
length) and the extended form of a value ≤ 7, all with :class:`MalformedFrame`,
so every header has exactly one encoding and the codec is a bijection on
``(kid, ctr)`` in ``[0, 2**64)²``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from framecrypt.errors import InvalidParameter, MalformedFrame

MAX_HEADER_LENGTH: Final = 17
"""Config byte + 8 KID bytes + 8 CTR bytes."""

_U64: Final = 1 << 64
_X: Final = 0x80  # KID is extended
_Y: Final = 0x08  # CTR is extended

BytesLike = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class Header:
    """A decoded SFrame header (RFC 9605 §4.3): key id, counter and encoded length."""

    kid: int
    ctr: int
    length: int

    @classmethod
    def of(cls, kid: int, ctr: int) -> Header:
        """The header for ``(kid, ctr)``, with its encoded length."""
        return cls(kid, ctr, header_length(kid, ctr))

    def encode(self) -> bytes:
        """The header's wire bytes."""
        return encode_header(self.kid, self.ctr)


def _check(kid: int, ctr: int) -> None:
    if not 0 <= kid < _U64:
        raise InvalidParameter("KID must be in [0, 2**64)")
    if not 0 <= ctr < _U64:
        raise InvalidParameter("CTR must be in [0, 2**64)")


def value_length(value: int) -> int:
    """Bytes the value takes after the config byte: 0 if it is ≤ 7, else its minimal length."""
    return 0 if value < 8 else (value.bit_length() + 7) >> 3


def header_length(kid: int, ctr: int) -> int:
    """Encoded length of the header for ``(kid, ctr)`` (1–17 bytes)."""
    _check(kid, ctr)
    return 1 + value_length(kid) + value_length(ctr)


def kid_prefix(kid: int) -> tuple[int, int, int]:
    """Pre-compute the KID part of every header that names ``kid``.

    Returns ``(config_bits, kid_value_bits, kid_length)`` such that for a counter
    ``ctr`` the header, read as one big-endian integer, is built by
    :func:`encode_with_prefix`. A per-key sender uses this to avoid redoing the KID
    work on every frame.
    """
    if not 0 <= kid < _U64:
        raise InvalidParameter("KID must be in [0, 2**64)")
    if kid < 8:
        return kid << 4, 0, 0
    klen = (kid.bit_length() + 7) >> 3
    return _X | ((klen - 1) << 4), kid, klen


def encode_with_prefix(cfg: int, kid_bits: int, klen: int, ctr: int) -> bytes:
    """Header bytes for a counter, given the :func:`kid_prefix` of its KID.

    ``ctr`` must already be known to be in ``[0, 2**64)``.
    """
    if ctr < 8:
        if klen == 0:
            return _SMALL[cfg | ctr]
        return (((cfg | ctr) << (8 * klen)) | kid_bits).to_bytes(1 + klen, "big")
    clen = (ctr.bit_length() + 7) >> 3
    total = 1 + klen + clen
    cfg |= _Y | (clen - 1)
    return ((((cfg << (8 * klen)) | kid_bits) << (8 * clen)) | ctr).to_bytes(total, "big")


def encode_header(kid: int, ctr: int) -> bytes:
    """Encode ``(kid, ctr)`` as an SFrame header (RFC 9605 §4.3).

    Raises :class:`InvalidParameter` if either value is outside ``[0, 2**64)``.
    """
    _check(kid, ctr)
    cfg, kid_bits, klen = kid_prefix(kid)
    return encode_with_prefix(cfg, kid_bits, klen, ctr)


def encode_header_into(buf: bytearray | memoryview, offset: int, kid: int, ctr: int) -> int:
    """Write the header for ``(kid, ctr)`` into ``buf`` at ``offset``; return its length."""
    data = encode_header(kid, ctr)
    end = offset + len(data)
    if offset < 0 or end > len(buf):
        raise InvalidParameter("output buffer too small for the SFrame header")
    buf[offset:end] = data
    return len(data)


def decode_header(data: BytesLike) -> tuple[int, int, int]:
    """Decode the header at the start of ``data``: return ``(kid, ctr, header_length)``.

    Raises :class:`MalformedFrame` on an empty or truncated header, a value with a
    leading zero byte, or an extended encoding of a value ≤ 7. Anything after the
    header is ignored.
    """
    if not data:
        raise MalformedFrame("empty frame")
    klen, kid, kmin, clen, ctr, cmin = _LAYOUT[data[0]]
    end = 1 + klen + clen
    if end > len(data):
        raise MalformedFrame("truncated header")
    if klen:
        kid = int.from_bytes(data[1 : 1 + klen], "big")
        if kid < kmin:  # leading zero byte, or a value <= 7 in extended form
            raise MalformedFrame("non-minimal KID encoding")
    if clen:
        ctr = int.from_bytes(data[1 + klen : end], "big")
        if ctr < cmin:
            raise MalformedFrame("non-minimal CTR encoding")
    return kid, ctr, end


def parse_header(data: BytesLike) -> Header:
    """Decode the header at the start of ``data`` into a :class:`Header`."""
    kid, ctr, length = decode_header(data)
    return Header(kid, ctr, length)


def _layout(cfg: int) -> tuple[int, int, int, int, int, int]:
    """For a config byte: (KID length, inline KID, smallest canonical extended KID,
    CTR length, inline CTR, smallest canonical extended CTR)."""

    def field(flag: int, bits: int) -> tuple[int, int, int]:
        if not flag:
            return 0, bits, 0
        n = bits + 1
        return n, 0, 8 if n == 1 else 1 << (8 * (n - 1))

    return (*field(cfg & _X, (cfg >> 4) & 7), *field(cfg & _Y, cfg & 7))


_LAYOUT: Final[tuple[tuple[int, int, int, int, int, int], ...]] = tuple(
    _layout(b) for b in range(256)
)

# Headers of one byte: KID ≤ 7 and CTR ≤ 7, indexed by the config byte.
_SMALL: Final[tuple[bytes, ...]] = tuple(bytes((b,)) for b in range(256))


__all__ = [
    "MAX_HEADER_LENGTH",
    "BytesLike",
    "Header",
    "decode_header",
    "encode_header",
    "encode_header_into",
    "encode_with_prefix",
    "header_length",
    "kid_prefix",
    "parse_header",
    "value_length",
]
