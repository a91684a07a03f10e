"""Property tests of the SFrame core: seal/open round trips for every suite, any
single-bit flip fails with a typed error, the header codec is a bijection, and the
parsers given arbitrary bytes return a result or a typed error — never another
exception."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from framecrypt import sframe
from framecrypt.errors import AuthenticationFailed, FramecryptError, MalformedFrame
from framecrypt.sframe import (
    SUITES,
    RatchetKeySource,
    RatchetLayout,
    ReceiverContext,
    decode_header,
    encode_header,
)

SETTINGS = settings(max_examples=150, deadline=None)
BASE = b"\x5a" * 16
suites = st.sampled_from(sorted(SUITES))
u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
# small values and values near every byte-length boundary are the interesting ones
edgy = st.one_of(
    st.integers(0, 300),
    st.integers(0, 63).map(lambda b: (1 << b) - 1),
    st.integers(0, 63).map(lambda b: 1 << b),
    u64,
)


@SETTINGS
@given(suites, edgy, edgy, st.binary(max_size=300), st.binary(max_size=40))
def test_round_trip_every_suite(suite: int, kid: int, ctr: int, pt: bytes, md: bytes) -> None:
    ct = sframe.protect(suite, BASE, kid, ctr, pt, md)
    assert len(ct) == len(encode_header(kid, ctr)) + len(pt) + SUITES[suite].nt
    assert sframe.unprotect(suite, BASE, ct, md) == (kid, ctr, pt)
    out = bytearray(len(pt))
    assert sframe.unprotect_into(suite, BASE, ct, out, md) == (kid, ctr, len(pt))
    assert bytes(out) == pt


@settings(max_examples=200, deadline=None)
@given(suites, edgy, edgy, st.binary(max_size=64), st.data())
def test_any_single_bit_flip_fails(
    suite: int, kid: int, ctr: int, pt: bytes, data: st.DataObject
) -> None:
    ct = bytearray(sframe.protect(suite, BASE, kid, ctr, pt, b"md"))
    bit = data.draw(st.integers(0, len(ct) * 8 - 1))
    ct[bit // 8] ^= 0x80 >> (bit % 8)
    try:
        sframe.unprotect(suite, BASE, bytes(ct), b"md")
    except (AuthenticationFailed, MalformedFrame):
        pass
    else:
        raise AssertionError(f"flipped bit {bit} was accepted")


@settings(max_examples=300, deadline=None)
@given(u64, u64)
def test_header_codec_round_trip(kid: int, ctr: int) -> None:
    encoded = encode_header(kid, ctr)
    assert decode_header(encoded) == (kid, ctr, len(encoded))
    assert decode_header(encoded + b"\x00\x01")[:2] == (kid, ctr)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=20))
def test_header_parser_total_and_canonical(data: bytes) -> None:
    try:
        kid, ctr, length = decode_header(data)
    except MalformedFrame:
        return
    # whatever parses is the one canonical encoding of (kid, ctr): a bijection
    assert encode_header(kid, ctr) == data[:length]


@SETTINGS
@given(suites, st.binary(max_size=120), st.binary(max_size=8))
def test_unprotect_arbitrary_bytes_is_typed(suite: int, data: bytes, md: bytes) -> None:
    try:
        sframe.unprotect(suite, BASE, data, md)
    except FramecryptError:
        pass


@SETTINGS
@given(st.binary(max_size=120))
def test_receiver_arbitrary_bytes_is_typed(data: bytes) -> None:
    layout = RatchetLayout(2)
    src = RatchetKeySource(1, layout, max_steps=2, keep_previous=1)
    src.add_generation(0, BASE)
    rx = ReceiverContext(1, sources=[src])
    for kid in range(4):
        rx.add_key(kid << 2, BASE)
    try:
        rx.unprotect(data)
    except FramecryptError:
        pass
    try:
        rx.unprotect_into(data, bytearray(len(data)))
    except FramecryptError:
        pass
    assert src.current_step(0) == 0  # nothing unauthenticated was committed
