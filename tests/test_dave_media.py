"""DAVE media layer (issue 17, first slice): footer, frame seal/open, key ratchet.

Outside truth: frames sealed by Discord's libdave (dave-py) and by davey (Rust/OpenMLS),
see tests/dave_helpers.py for how their keys are obtained.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framecrypt.errors import MalformedFrame
from framecrypt.workers.dave import footer


def test_leb128_known_values() -> None:
    # ULEB128 as in the DWARF spec's table
    assert footer.leb128(2) == b"\x02"
    assert footer.leb128(127) == b"\x7f"
    assert footer.leb128(128) == b"\x80\x01"
    assert footer.leb128(129) == b"\x81\x01"
    assert footer.leb128(12857) == b"\xb9\x64"


def test_footer_layout_by_hand() -> None:
    tag = bytes(range(8))
    raw = footer.serialize(tag, 0x01000080, [(0, 10), (300, 2)])
    nonce = b"\x80\x81\x80\x08"
    ranges = b"\x00\x0a" + b"\xac\x02\x02"
    size = 8 + len(nonce) + len(ranges) + 3
    assert raw == tag + nonce + ranges + bytes([size]) + b"\xfa\xfa"
    body = bytes(400)
    f = footer.parse(body + raw)
    assert f.tag == tag and f.nonce == 0x01000080 and f.generation == 1
    assert f.ranges == ((0, 10), (300, 2)) and f.body_len == 400


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\xfa\xfa",
        bytes(10) + b"\x0b\xfa\xfa",  # 13 bytes, no nonce byte in a 11-byte footer
        bytes(20) + b"\x0c\xfa\xfb",  # wrong marker
        bytes(20) + b"\x0a\xfa\xfa",  # supplemental size below the minimum
        bytes(5) + b"\xff\xfa\xfa",  # supplemental size beyond the frame
        bytes(8) + b"\x80\x80\x0d\xfa\xfa",  # nonce runs into the size byte
        bytes(8) + b"\x80\x80\x80\x80\x10" + b"\x10\xfa\xfa",  # nonce above 32 bits
        bytes(8) + b"\x01\x05" + b"\x0d\xfa\xfa",  # a range offset without a size
        bytes(4) + bytes(8) + b"\x01\x03\x02" + b"\x0e\xfa\xfa",  # range past the body
        bytes(9) + bytes(8) + b"\x01\x04\x02\x03\x02" + b"\x10\xfa\xfa",  # overlapping
    ],
)
def test_malformed_footers_are_typed(frame: bytes) -> None:
    with pytest.raises(MalformedFrame):
        footer.parse(frame)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=64), st.binary(max_size=40))
def test_parse_is_total(body: bytes, tail: bytes) -> None:
    for frame in (body + tail, body + tail + b"\xfa\xfa",
                  body + tail + bytes([len(tail) + 3]) + b"\xfa\xfa"):
        try:
            f = footer.parse(frame)
        except MalformedFrame:
            continue
        assert f.body_len + frame[-3] == len(frame)
        assert f.nonce <= 0xFFFFFFFF
        end = 0
        for off, size in f.ranges:
            assert off >= end
            end = off + size
        assert end <= f.body_len


@given(
    st.binary(min_size=8, max_size=8),
    st.integers(0, 0xFFFFFFFF),
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 200)), max_size=8),
)
def test_serialize_then_parse(tag: bytes, nonce: int, gaps: list[tuple[int, int]]) -> None:
    ranges, pos = [], 0
    for gap, size in gaps:
        ranges.append((pos + gap, size))
        pos += gap + size
    body = bytes(pos + 5)
    f = footer.parse(body + footer.serialize(tag, nonce, ranges))
    assert (f.tag, f.nonce, list(f.ranges), f.body_len) == (tag, nonce, ranges, len(body))
