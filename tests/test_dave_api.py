"""framecrypt.dave, the per-call DAVE API: round trips per codec, byte identity with the
core, nonces and generations, H.26x start-code retries, typed errors for bad arguments
and hostile frames, and no secret in any repr. (Interop with libdave and davey:
tests/test_dave_media.py and tests/test_dave_pool_interop.py.)"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framecrypt import dave
from framecrypt.errors import (
    AuthenticationFailed,
    DroppedFrame,
    FramecryptError,
    InvalidArgument,
    InvalidKeyMaterial,
    InvalidParameter,
    MalformedFrame,
    ReplayedFrame,
    UnsupportedCodec,
)
from framecrypt.workers.dave import frame, h26x, ratchet

SECRET = bytes(range(16))
FRAMES = {
    "opus": bytes(range(9, 109)),
    "vp8": bytes([0x10]) + bytes(range(200)),
    "vp9": bytes(range(3, 250)),
    "h264": b"\x00\x00\x00\x01\x67\x42\x00\x1f\x00\x00\x00\x01\x65\x88\x84" + bytes(range(1, 99)),
    "h265": b"\x00\x00\x00\x01\x40\x01\x0c\x00\x00\x00\x01\x26\x01\xaf" + bytes(range(1, 99)),
    "av1": bytes([0x32, 30]) + bytes(range(30)),
}


def _want(codec: str, data: bytes) -> bytes:
    return bytes([data[0] & ~0x02]) + data[2:] if codec == "av1" else data


@pytest.mark.parametrize("codec", sorted(FRAMES))
def test_round_trip_and_byte_identity_with_the_core(codec: str) -> None:
    data = FRAMES[codec]
    sealed = dave.seal(data, base_secret=SECRET, codec=codec, nonce=77)
    assert dave.is_dave_frame(sealed) and dave.nonce_of(sealed) == 77
    key = ratchet.key_for_generation(SECRET, 0)
    assert sealed == frame.seal_codec(key, 77, codec, data)
    assert dave.open(sealed, base_secret=SECRET) == _want(codec, data)
    r = dave.KeyRatchet(SECRET)
    assert dave.open(sealed, ratchet=r) == _want(codec, data)
    assert dave.seal(data, ratchet=r, codec=codec, nonce=77) == sealed


def test_generation_is_the_nonce_top_byte() -> None:
    nonce = (3 << 24) | 5
    sealed = dave.seal(FRAMES["opus"], base_secret=SECRET, codec="opus", nonce=nonce)
    assert dave.parse(sealed).generation == 3
    key3 = ratchet.key_for_generation(SECRET, 3)
    assert frame.open_frame(key3, sealed) == FRAMES["opus"]
    with pytest.raises(AuthenticationFailed):
        frame.open_frame(ratchet.key_for_generation(SECRET, 0), sealed)
    # a ratchet that erased generation 3 cannot open it (typed)
    r = dave.KeyRatchet(SECRET)
    r.key(4)
    r.erase(3)
    with pytest.raises(DroppedFrame):
        dave.open(sealed, ratchet=r)


def test_h26x_retry_takes_the_next_nonce(monkeypatch: pytest.MonkeyPatch) -> None:
    real = h26x.has_start_code_leak
    leaking = {10, 11}
    monkeypatch.setattr(h26x, "has_start_code_leak", lambda s, r: dave.nonce_of(s) in leaking
                        or real(s, r))
    sealed = dave.seal(FRAMES["h264"], base_secret=SECRET, codec="h264", nonce=10)
    assert dave.nonce_of(sealed) == 12  # continue after it
    assert dave.open(sealed, base_secret=SECRET) == FRAMES["h264"]
    leaking.update(range(20, 30))
    with pytest.raises(DroppedFrame):
        dave.seal(FRAMES["h264"], base_secret=SECRET, codec="h264", nonce=20)
    with pytest.raises(InvalidParameter):  # no room for the retries before the wrap
        dave.seal(FRAMES["h264"], base_secret=SECRET, codec="h264", nonce=0xFFFFFFFF)


def test_bad_arguments_are_typed() -> None:
    data = FRAMES["opus"]
    with pytest.raises(InvalidKeyMaterial):
        dave.seal(data, base_secret=b"short", codec="opus", nonce=1)
    with pytest.raises(InvalidArgument):
        dave.seal(data, codec="opus", nonce=1)  # neither secret nor ratchet
    with pytest.raises(InvalidArgument):
        dave.seal(data, base_secret=SECRET, ratchet=dave.KeyRatchet(SECRET), codec="opus",
                  nonce=1)
    with pytest.raises(InvalidArgument):
        dave.seal(data, ratchet=SECRET, codec="opus", nonce=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        dave.seal("text", base_secret=SECRET, codec="opus", nonce=1)  # type: ignore[arg-type]
    for bad in (-1, 1 << 32, True, 1.0):
        with pytest.raises(InvalidParameter):
            dave.seal(data, base_secret=SECRET, codec="opus", nonce=bad)  # type: ignore[arg-type]
    with pytest.raises(UnsupportedCodec):
        dave.seal(data, base_secret=SECRET, codec="theora", nonce=1)
    with pytest.raises(InvalidArgument):
        dave.seal(data, base_secret=SECRET, codec=None, nonce=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameter):
        dave.base_secret(bytes(32), -1)
    with pytest.raises(InvalidKeyMaterial):
        dave.base_secret(bytes(16), 1)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 300))
def test_hostile_frames_only_raise_typed_errors(junk: bytes, cut: int) -> None:
    sealed = dave.seal(FRAMES["vp8"], base_secret=SECRET, codec="vp8", nonce=5)
    for candidate in (junk, junk + b"\xfa\xfa", sealed[:cut] + junk[-20:] + sealed[-3:],
                      sealed[: max(0, len(sealed) - cut)]):
        try:
            dave.open(candidate, base_secret=SECRET)
        except (MalformedFrame, AuthenticationFailed, DroppedFrame):
            pass


def test_every_flipped_bit_is_rejected_or_harmless() -> None:
    """A flip in the body, tag or nonce fails authentication; a flip in the footer's
    framing is malformed or fails authentication; nothing else comes out. (The list of
    clear ranges is not authenticated by DAVE, TOB-DISCE2EC-7: a flip there that still
    parses re-splits the frame, and then the tag fails.)"""
    sealed = dave.seal(FRAMES["vp8"], base_secret=SECRET, codec="vp8", nonce=5)
    for i in range(len(sealed)):
        for bit in range(8):
            b = bytearray(sealed)
            b[i] ^= 1 << bit
            with pytest.raises((MalformedFrame, AuthenticationFailed, DroppedFrame)):
                dave.open(bytes(b), base_secret=SECRET)


def test_stream_classes_keep_nonces_and_windows() -> None:
    s = dave.Sender(dave.KeyRatchet(SECRET))
    r = dave.Receiver()
    r.transition_to_key_ratchet(dave.KeyRatchet(SECRET), now=0.0)
    sealed = [s.seal("opus", bytes([i]) * 20) for i in range(5)]
    assert [dave.nonce_of(x) for x in sealed] == [1, 2, 3, 4, 5]
    assert [r.open(x, now=1.0)[0] for x in sealed] == [0, 1, 2, 3, 4]
    with pytest.raises(ReplayedFrame):
        r.open(sealed[2], now=1.0)
    assert r.open(dave.OPUS_SILENCE, now=1.0) == dave.OPUS_SILENCE


def test_no_secret_in_reprs_or_errors() -> None:
    r = dave.KeyRatchet(SECRET)
    r.key(2)
    s = dave.Sender(r)
    texts = [repr(r), repr(s), repr(dave.Receiver())]
    try:
        dave.open(b"\x00" * 40 + b"\x0b\xfa\xfa", base_secret=SECRET)
    except FramecryptError as e:
        texts.append(str(e) + repr(e))
    for t in texts:
        assert SECRET.hex() not in t and repr(SECRET) not in t
        assert ratchet.key_for_generation(SECRET, 2).hex() not in t


def test_many_secrets_stay_correct_past_the_cache() -> None:
    rng = random.Random(3)
    secrets = [rng.randbytes(16) for _ in range(dave.CACHE_SIZE + 10)]
    sealed = [dave.seal(b"x" * 50, base_secret=s, codec="opus", nonce=9) for s in secrets]
    for s, x in zip(secrets, sealed, strict=True):
        assert dave.open(x, base_secret=s) == b"x" * 50
