"""The DAVE sender's H.264/H.265 framing in C (workers/csrc/fc_dave_h26x.c) against the
pure reference (workers/dave/h26x.py, frame.py): the same rewritten frames and clear
ranges, MalformedFrame where the reference raises it (-2), the same start-code leak
verdicts, the same bytes sealed under any valid clear ranges, and the same sealed frame
and nonce from the retrying H.26x seal. Where the C path stops (-1: more ranges than
fc_dave_ranges holds, nonces that would leave the generation) the reference takes the
frame."""

from __future__ import annotations

import os
import random
from functools import lru_cache
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st
from native_helpers import CI, require_native

from framecrypt import samples
from framecrypt.errors import DroppedFrame, MalformedFrame
from framecrypt.workers import native
from framecrypt.workers.dave import frame, h26x, ratchet

N: Any = native.NATIVE
KEY = ratchet.key_for_generation(bytes(range(16)), 0)
STOP, MALFORMED, DROPPED = -1, -2, -3
Ranges = list[tuple[int, int]]


@pytest.fixture(autouse=True)
def _native_path() -> None:
    require_native("dave_seal_h26x", "DAVE H.26x slice")


@lru_cache(maxsize=4)
def _keys(backend: int = 0) -> tuple[Any, AESGCM]:
    """(the extension's key, on ``backend`` (0 best, 1 EVP, 2 ipsec-mb), cryptography's
    key): the reference seals with the latter."""
    return N.AesGcm(KEY, backend), AESGCM(KEY)


def _backend(backend: int) -> int:
    if backend == 2 and not N.info()["ipsec_mb_available"]:
        if CI and os.uname().machine == "x86_64":  # (test_native.py asserts it there too)
            pytest.fail("CI on x86-64: the multi-buffer backend must be built in")
        pytest.skip("the multi-buffer backend is not available on this machine")
    return backend


_BACKENDS = pytest.mark.parametrize("backend", [1, 2], ids=["evp", "ipsec-mb"])


def _ref_frame(codec: str, data: bytes) -> tuple[bytes, Ranges] | int:
    try:
        return h26x.h26x_frame(codec, data)
    except MalformedFrame:
        return MALFORMED


def _check_frame(codec: str, data: bytes) -> tuple[bytes, Ranges] | int:
    """The C rewrite equals the reference's (or stops where it needs more ranges than
    fc_dave_ranges holds, FC_DAVE_MAX_RANGES >= 64)."""
    want = _ref_frame(codec, data)
    got = N.dave_h26x_frame(codec == "h265", data)
    if got == STOP:
        # the stop comes at the 65th range; the reference may raise after it
        assert isinstance(want, int) or len(want[1]) > 64, (codec, data.hex())
        return want
    assert got == want, (codec, data.hex())
    return want


def _ref_seal_h26x(first: int, codec: str, data: bytes) -> tuple[bytes, int] | int:
    try:
        sealed, nonce = frame.seal_h26x(_keys()[1], first, codec, data)
    except MalformedFrame:
        return MALFORMED
    except DroppedFrame:
        return DROPPED
    return sealed, nonce - first + 1


def _check_seal_h26x(first: int, codec: str, data: bytes) -> None:
    got = N.dave_seal_h26x(_keys()[0], first, codec == "h265", data)
    if (first & 0xFFFFFF) + h26x.MAX_ATTEMPTS - 1 > 0xFFFFFF:
        assert got == STOP  # the last nonce would be another generation's
        return
    want = _ref_seal_h26x(first, codec, data)
    if got == STOP:
        rewritten = _ref_frame(codec, data)
        assert isinstance(rewritten, int) or len(rewritten[1]) > 64
        return
    assert got == want, (codec, first, data.hex())
    if isinstance(got, tuple):  # it opens to the rewritten frame, on both paths
        plain = h26x.h26x_frame(codec, data)[0]
        assert frame.open_frame(_keys()[1], got[0]) == plain
        assert N.dave_open(_keys()[0], got[0]) == plain


# --- real encoded frames ----------------------------------------------------------------


@lru_cache(maxsize=1)
def _real_frames() -> tuple[tuple[str, bytes], ...]:
    out = [("h264", f.data) for f in samples.video("h264", 60)]
    out += [("h264", f.data) for f in samples.video("h264", 20, width=640, height=480,
                                                    bitrate=3_000_000, gop=10)]
    out += [("h265", f.data) for f in samples.video("h265", 20)]
    return tuple(out)


def test_real_frames_rewritten_and_sealed_identically() -> None:
    nk, pk = _keys()
    frames = _real_frames()
    assert sum(codec == "h264" for codec, _ in frames) == 80
    for k, (codec, data) in enumerate(frames):
        rewritten, ranges = h26x.h26x_frame(codec, data)
        assert ranges and N.dave_h26x_frame(codec == "h265", data) == (rewritten, ranges)
        for first in (1, 0x1234567 + k, 0xFFFFF6, 0xFF000000):
            sealed, nonce = frame.seal_h26x(pk, first, codec, data)
            got = N.dave_seal_h26x(nk, first, codec == "h265", data)
            assert got == (sealed, nonce - first + 1), (k, first)
            # and the reference's own seal under the extension's key agrees
            assert frame.seal_h26x(nk, first, codec, data) == (sealed, nonce)
            assert frame.open_frame(pk, got[0]) == rewritten
            assert N.dave_open(nk, got[0]) == rewritten
            assert N.dave_seal_ranges(nk, nonce, rewritten, ranges) == sealed
            assert not N.dave_leak(sealed, ranges)


@_BACKENDS
def test_retries_take_the_next_nonce_like_the_reference(backend: int) -> None:
    """H.265 VCL units whose 2-byte header is 00 00, each with one encrypted byte: a
    ciphertext 01 after the clear 00 00 is a start code (~22 % of nonces leak)."""
    data = b"".join(b"\x00\x00\x01\x00\x00" + bytes([5 + k]) for k in range(63))
    retried = 0
    for first in range(1, 400):
        got = N.dave_seal_h26x(_keys(_backend(backend))[0], first, True, data)
        assert got == _ref_seal_h26x(first, "h265", data)
        retried += got[1] > 1
    assert retried > 40


def test_generation_boundary_stops_before_sealing() -> None:
    data = _real_frames()[0][1]
    nk = _keys()[0]
    for first in (0xFFFFF7, 0xFFFFFF, 0x01FFFFFA, 0xFFFFFFFF, 0xFFFFFFF7):
        assert N.dave_seal_h26x(nk, first, False, data) == STOP
    for first in (0xFFFFF6, 0x01FFFFF6, 0xFF000000, 0xFFFFFFF6):
        assert N.dave_seal_h26x(nk, first, False, data)[1] >= 1
    with pytest.raises(ValueError):
        N.dave_seal_h26x(nk, 1 << 32, False, data)
    with pytest.raises(TypeError):
        N.dave_seal_h26x(b"not a key", 1, False, data)


def test_more_ranges_than_the_c_path_holds_stop() -> None:
    """fc_dave_ranges holds FC_DAVE_MAX_RANGES (64 or more; a footer holds at most 121
    pairs): 200 slices stop, 64 do not."""
    data = b"".join(b"\x00\x00\x01\x65\x88\x84" + bytes([k % 250 + 1]) * 3
                    for k in range(200))
    rewritten, ranges = h26x.h26x_frame("h264", data)
    assert len(ranges) == 200
    assert N.dave_h26x_frame(False, data) == STOP
    assert N.dave_seal_h26x(_keys()[0], 1, False, data) == STOP
    assert _check_frame("h264", data[: 9 * 64]) != MALFORMED  # 64 ranges: the C path
    with pytest.raises(ValueError):
        N.dave_leak(rewritten, ranges)


def test_short_and_malformed_frames() -> None:
    for codec in ("h264", "h265"):
        for data in (b"", b"\x00", b"\x00\x00\x01", b"\x00\x00\x01\x65", b"\x00\x00\x01\x26\x01",
                     b"\x00\x00\x01\x65\x00\x00\x00\x00\x00",  # 32 zero bits
                     b"\x00\x00\x01\x41\x00\x00\x03\x00\x00\x03\x00\x00\x00\x80",
                     b"\x00\x00\x01\x65\x88\x00\x00\x01\x65\x88\x80",  # header past the unit
                     b"\x00\x00\x00\x01\x26\x00\x00\x01\x26\x01\xaa",
                     b"\x00\x00\x01" * 50,  # empty units: 4 bytes out for 3 in
                     b"\x00\x00\x00\x01" * 50, b"\x00\x00\x01\x09" * 50):
            _check_frame(codec, data)
            _check_seal_h26x(7, codec, data)
    assert N.dave_h26x_frame(False, b"\x00\x00\x01\x65\x00\x00\x00\x00\x00") == MALFORMED
    # 150 bytes in, 49 empty units (4 bytes) and a last 3-byte one out: fc_dave_h26x_max
    assert len(N.dave_h26x_frame(False, b"\x00\x00\x01" * 50)[0]) == 49 * 4 + 3


def test_footer_over_255_bytes_and_bad_ranges_stop() -> None:
    nk, pk = _keys()
    data = bytes(130_000)
    ranges = [(2000 * k, 200) for k in range(64)]  # a 322-byte footer
    with pytest.raises(ValueError):
        frame.seal(pk, 1, data, ranges)
    assert N.dave_seal_ranges(nk, 1, data, ranges) is None
    for bad in ([(5, 1), (4, 1)], [(0, 11)], [(11, 0)]):
        with pytest.raises(MalformedFrame):
            frame.seal(pk, 1, data[:10], bad)
        assert N.dave_seal_ranges(nk, 1, data[:10], bad) is None
    for bad_arg in ([(-1, 2)], [(1,)], [[1, 2]], None, [(0, 1)] * 200, [(1 << 60, 1)]):
        with pytest.raises((TypeError, ValueError)):
            N.dave_seal_ranges(nk, 1, data, bad_arg)


# --- properties -------------------------------------------------------------------------

_BIASED = st.lists(st.sampled_from([0, 0, 0, 0, 1, 1, 3, 0x65, 0x41, 0x26, 0x80, 0xff])
                   | st.integers(0, 255), max_size=160).map(bytes)
_START = st.sampled_from([b"\x00\x00\x01", b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x01"])
_PIECE = st.sampled_from([b"\x00\x00\x03", b"\x00\x00\x03\x01", b"\x00", b"\x00\x00",
                          b"\x80", b"\x88\x84", b"\xe0", b"\x9c\x80", b"\x00\x00\x00\x80"])
_BODY = st.lists(_PIECE | st.binary(max_size=6), max_size=6).map(b"".join)
_H264_TYPE = st.sampled_from([1, 5, 1, 5, 6, 7, 8, 9, 0, 12]) | st.integers(0, 31)
_H265_TYPE = st.sampled_from([1, 19, 20, 0, 32, 33, 34, 35, 39]) | st.integers(0, 63)


@st.composite
def _annexb(draw: st.DrawFn, codec: str) -> bytes:
    out = [draw(st.binary(max_size=3))] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(0, 8))):
        out.append(draw(_START))
        if codec == "h264":
            out.append(bytes([draw(st.integers(0, 3)) << 5 | draw(_H264_TYPE)]))
        else:
            out.append(bytes([draw(_H265_TYPE) << 1 | draw(st.integers(0, 1)),
                              draw(st.sampled_from([1, 1, 0, 2]))]))
        out.append(draw(_BODY))
    if draw(st.integers(0, 5)) == 0:
        out.append(bytes(draw(st.integers(1, 4))))
    return b"".join(out)


_CODEC = st.sampled_from(["h264", "h265"])


@settings(max_examples=300, deadline=None)
@given(codec=_CODEC, data=_BIASED | st.binary(max_size=200))
def test_random_bytes_rewrite_like_the_reference(codec: str, data: bytes) -> None:
    _check_frame(codec, data)


@settings(max_examples=300, deadline=None)
@given(st.data(), _CODEC)
def test_nal_sequences_rewrite_like_the_reference(data: st.DataObject, codec: str) -> None:
    _check_frame(codec, data.draw(_annexb(codec)))


@settings(max_examples=300, deadline=None)
@given(st.data(), _CODEC, st.integers(0, 0xFFFFFFFF))
def test_nal_sequences_seal_like_the_reference(data: st.DataObject, codec: str,
                                               first: int) -> None:
    _check_seal_h26x(first, codec, data.draw(_annexb(codec)))


_SMALL = st.integers(0, 70)


@settings(max_examples=300, deadline=None)
@given(sealed=_BIASED, ranges=st.lists(st.tuples(_SMALL, _SMALL), max_size=8))
def test_leak_check_like_the_reference(sealed: bytes, ranges: Ranges) -> None:
    assert N.dave_leak(sealed, ranges) == h26x.has_start_code_leak(sealed, ranges)
    ordered: Ranges = []
    pos = 0
    for off, size in ranges:  # the same sizes as ordered, disjoint ranges
        ordered.append((pos + off % 5, size))
        pos += off % 5 + size
    assert N.dave_leak(sealed, ordered) == h26x.has_start_code_leak(sealed, ordered)


@st.composite
def _valid_ranges(draw: st.DrawFn, n: int) -> Ranges:
    out: Ranges = []
    pos = 0
    for _ in range(draw(st.integers(0, 12))):
        off = draw(st.integers(pos, min(n, pos + 40)))
        size = draw(st.integers(0, min(n - off, 40)))
        out.append((off, size))
        pos = off + size
    return out


@settings(max_examples=300, deadline=None)
@given(st.data(), st.binary(max_size=300), st.integers(0, 0xFFFFFFFF))
def test_seal_ranges_like_the_reference(data: st.DataObject, plain: bytes, nonce: int) -> None:
    ranges = data.draw(_valid_ranges(len(plain)))
    nk, pk = _keys()
    want = frame.seal(pk, nonce, plain, ranges)
    assert N.dave_seal_ranges(nk, nonce, plain, ranges) == want
    assert frame.open_frame(pk, want) == plain


@_BACKENDS
def test_seal_ranges_many_sizes(backend: int) -> None:
    """Frames around the stack buffers' sizes, many ranges, the footer's size limit."""
    nk, pk = _keys(_backend(backend))
    rng = random.Random(5)
    for i in range(3000):
        n = rng.choice([0, 1, 5, 1023, 1024, 1025, 4096, rng.randint(0, 9000)])
        plain = rng.randbytes(n)
        ranges: Ranges = []
        pos = 0
        while pos < n and len(ranges) < rng.choice([1, 2, 8, 64]):
            off = rng.randint(pos, min(n, pos + rng.choice([3, 300, 3000])))
            size = rng.randint(0, min(n - off, rng.choice([4, 600, 2000])))
            ranges.append((off, size))
            pos = off + size
        nonce = rng.getrandbits(32)
        try:
            want: bytes | None = frame.seal(pk, nonce, plain, ranges)
        except ValueError:
            want = None  # a footer over 255 bytes
        assert N.dave_seal_ranges(nk, nonce, plain, ranges) == want, (i, n, ranges)
