"""DAVE media layer (issue 17, first slice): footer, frame seal/open, key ratchet.

Outside truth: frames sealed by Discord's libdave (dave-py) and by davey (Rust/OpenMLS),
see tests/dave_helpers.py for how their keys are obtained.
"""

from __future__ import annotations

import pytest
from dave_helpers import Group, find_base_secret, form_group
from hypothesis import given, settings
from hypothesis import strategies as st

from framecrypt.errors import AuthenticationFailed, MalformedFrame
from framecrypt.workers import leb128
from framecrypt.workers.dave import footer, frame, ratchet


def test_leb128_known_values() -> None:
    # ULEB128 as in the DWARF spec's table
    assert leb128.encode(2) == b"\x02"
    assert leb128.encode(127) == b"\x7f"
    assert leb128.encode(128) == b"\x80\x01"
    assert leb128.encode(129) == b"\x81\x01"
    assert leb128.encode(12857) == b"\xb9\x64"


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
    for data in (body + tail, body + tail + b"\xfa\xfa",
                 body + tail + bytes([len(tail) + 3]) + b"\xfa\xfa"):
        try:
            f = footer.parse(data)
        except MalformedFrame:
            continue
        assert f.body_len + data[-3] == len(data)
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


# --- frames and keys against libdave (dave-py 1.1.0) and davey 0.1.7 ----------------------

dave = pytest.importorskip("dave")
davey = pytest.importorskip("davey")


OPUS = bytes(range(7, 107))
VP8_KEY = bytes([0x10]) + bytes(range(200, 255)) + bytes(range(60))  # P bit 0: key frame
VP8_DELTA = bytes([0x31]) + bytes(range(90))  # P bit 1: delta frame


def _recover(sealed: bytes, plain: bytes) -> bytes:
    """The sender's base secret, found in memory: the window whose generation-0 key, by
    framecrypt's ratchet, opens ``sealed`` (a frame the other library sealed) to ``plain``."""
    f = footer.parse(sealed)
    assert f.generation == 0

    def opens(cand: bytes) -> bool:
        try:
            key = ratchet.key_for_generation(cand, 0)
            return frame.open_parsed(key, sealed, f) == plain
        except AuthenticationFailed:
            return False

    secret = find_base_secret(opens)
    assert secret is not None, "no base secret in memory opens the frame"
    return secret


class Call:
    def __init__(self) -> None:
        self.g: Group = form_group()
        # davey's sender key: its first Opus frame, opened with the base secret that
        # libdave (the dave-py member) holds for it
        self.davey_first = self.g.davey_member.encrypt_opus(OPUS)
        self._scan_davey = self.g.dave_member.get_key_ratchet(str(self.g.davey_id))
        self.davey_secret = _recover(self.davey_first, OPUS)
        # the dave-py member's own sender key, through libdave's Encryptor
        self._scan_dave = self.g.dave_member.get_key_ratchet(str(self.g.dave_id))
        self.enc = dave.Encryptor()
        self.enc.set_key_ratchet(self.g.dave_member.get_key_ratchet(str(self.g.dave_id)))
        self.enc.assign_ssrc_to_codec(1, dave.Codec.opus)
        self.enc.assign_ssrc_to_codec(2, dave.Codec.vp8)
        self.enc.assign_ssrc_to_codec(3, dave.Codec.vp9)
        self.enc.assign_ssrc_to_codec(4, dave.Codec.av1)
        self.enc.assign_ssrc_to_codec(5, dave.Codec.h264)
        self.enc.assign_ssrc_to_codec(6, dave.Codec.h265)
        self.dave_first = self.enc.encrypt(dave.MediaType.audio, 1, OPUS)
        self.dave_secret = _recover(self.dave_first, OPUS)
        self.nonce = 1  # the last nonce framecrypt sealed with as the dave-py member

    def libdave_decryptor(self, user_id: int) -> object:
        dec = dave.Decryptor()
        dec.transition_to_key_ratchet(self.g.dave_member.get_key_ratchet(str(user_id)))
        return dec


@pytest.fixture(scope="module")
def call() -> Call:
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("the key recovery reads /proc/self/mem")
    return Call()


def test_two_different_sender_secrets(call: Call) -> None:
    assert call.davey_secret != call.dave_secret


def test_libdave_first_opus_frame_is_byte_identical(call: Call) -> None:
    # libdave's first nonce is 1; the frame is deterministic given key and nonce
    key = ratchet.key_for_generation(call.dave_secret, 0)
    assert footer.parse(call.dave_first).nonce == 1
    assert frame.seal_codec(key, 1, "opus", OPUS) == call.dave_first


def test_davey_first_opus_frame_is_byte_identical(call: Call) -> None:
    key = ratchet.key_for_generation(call.davey_secret, 0)
    assert footer.parse(call.davey_first).nonce == 1
    assert frame.seal_codec(key, 1, "opus", OPUS) == call.davey_first


@pytest.mark.parametrize("plain", [VP8_KEY, VP8_DELTA], ids=["key", "delta"])
def test_libdave_vp8_frames_byte_identical_and_open(call: Call, plain: bytes) -> None:
    sealed = call.enc.encrypt(dave.MediaType.video, 2, plain)
    f = footer.parse(sealed)
    clear = 10 if plain is VP8_KEY else 1
    assert f.ranges == ((0, clear),)
    key = ratchet.key_for_generation(call.dave_secret, f.generation)
    assert frame.open_frame(key, sealed) == plain
    assert frame.seal_codec(key, f.nonce, "vp8", plain) == sealed
    # the clear header is authenticated: flipping a bit of it fails in framecrypt
    tampered = bytes([sealed[0] ^ 0x04]) + sealed[1:]
    with pytest.raises(AuthenticationFailed):
        frame.open_frame(key, tampered)


@pytest.mark.parametrize("plain", [VP8_KEY, VP8_DELTA], ids=["key", "delta"])
def test_davey_vp8_frames_open_in_framecrypt(call: Call, plain: bytes) -> None:
    sealed = call.g.davey_member.encrypt(davey.MediaType.video, davey.Codec.vp8, plain)
    f = footer.parse(sealed)
    key = ratchet.key_for_generation(call.davey_secret, f.generation)
    assert frame.open_frame(key, sealed) == plain
    assert frame.seal_codec(key, f.nonce, "vp8", plain) == sealed


@pytest.mark.parametrize("step", [1, 4242, 70000])
@pytest.mark.parametrize("codec,plain", [("opus", OPUS), ("vp8", VP8_KEY), ("vp8", VP8_DELTA)])
def test_framecrypt_frames_open_in_davey_and_libdave(
    call: Call, step: int, codec: str, plain: bytes
) -> None:
    # framecrypt seals as the dave-py member (generation 0: both receivers refuse a
    # later generation from a ratchet younger than 2^24 frames at their frame-rate cap,
    # so generation 1 is checked on the send side, below)
    key = ratchet.key_for_generation(call.dave_secret, 0)
    # both receivers keep one nonce window per sender: each frame gets a newer nonce
    call.nonce += step
    sealed = frame.seal_codec(key, call.nonce, codec, plain)
    media = davey.MediaType.audio if codec == "opus" else davey.MediaType.video
    assert call.g.davey_member.decrypt(call.g.dave_id, media, sealed) == plain
    dec = call.libdave_decryptor(call.g.dave_id)
    dmedia = dave.MediaType.audio if codec == "opus" else dave.MediaType.video
    assert dec.decrypt(dmedia, sealed) == plain  # type: ignore[attr-defined]


def test_libdave_generation_one_is_byte_identical(call: Call) -> None:
    # libdave's encryptor ratchets after 2^24 frames: its frame with nonce 2^24 is the
    # first of generation 1 (the ratchet's second key, generation in the top byte)
    from collections import deque
    from itertools import repeat

    enc = dave.Encryptor()
    enc.set_key_ratchet(call.g.dave_member.get_key_ratchet(str(call.g.dave_id)))
    enc.assign_ssrc_to_codec(9, dave.Codec.opus)
    n = (1 << 24) - 1
    deque(map(enc.encrypt, repeat(dave.MediaType.audio, n), repeat(9, n), repeat(b"\x01", n)),
          maxlen=0)
    sealed = enc.encrypt(dave.MediaType.audio, 9, OPUS)
    assert footer.parse(sealed).nonce == 1 << 24
    key1 = ratchet.key_for_generation(call.dave_secret, 1)
    assert key1 != ratchet.key_for_generation(call.dave_secret, 0)
    assert frame.seal_codec(key1, 1 << 24, "opus", OPUS) == sealed
    assert frame.open_frame(key1, sealed) == OPUS


EDGES = [
    ("vp9", bytes(range(50))),  # VP9: encrypted whole
    ("vp8", bytes([0x10]) + bytes(9)),  # a key frame exactly its 10-byte clear header
    ("vp8", b"\x11"),  # a delta frame that is only its clear byte
    ("opus", b""),  # an empty Opus frame
]
# not here: a VP8 key frame shorter than 10 bytes. libdave 1.1.0 raises from C++
# (vector::_M_default_append) and davey 0.1.7 panics (range end index 10 out of range);
# framecrypt encrypts such a frame whole.


@pytest.mark.parametrize("codec,plain", EDGES, ids=["vp9", "vp8-key-10", "vp8-delta-1", "opus-0"])
def test_edge_frames_byte_identical_with_both(call: Call, codec: str, plain: bytes) -> None:
    ssrc = {"opus": 1, "vp8": 2, "vp9": 3}[codec]
    media = dave.MediaType.audio if codec == "opus" else dave.MediaType.video
    sealed = call.enc.encrypt(media, ssrc, plain)
    f = footer.parse(sealed)
    key = ratchet.key_for_generation(call.dave_secret, f.generation)
    assert frame.seal_codec(key, f.nonce, codec, plain) == sealed
    assert frame.open_frame(key, sealed) == plain
    dmedia = davey.MediaType.audio if codec == "opus" else davey.MediaType.video
    sealed = call.g.davey_member.encrypt(dmedia, getattr(davey.Codec, codec), plain)
    f = footer.parse(sealed)
    key = ratchet.key_for_generation(call.davey_secret, f.generation)
    assert frame.seal_codec(key, f.nonce, codec, plain) == sealed
    assert frame.open_frame(key, sealed) == plain


def test_wrong_key_or_flipped_ciphertext_fails(call: Call) -> None:
    sealed = call.dave_first
    with pytest.raises(AuthenticationFailed):
        frame.open_frame(ratchet.key_for_generation(call.davey_secret, 0), sealed)
    key = ratchet.key_for_generation(call.dave_secret, 0)
    with pytest.raises(AuthenticationFailed):
        frame.open_frame(key, bytes([sealed[0] ^ 1]) + sealed[1:])
    with pytest.raises(AuthenticationFailed):  # the tag
        frame.open_frame(key, sealed[:100] + bytes([sealed[100] ^ 1]) + sealed[101:])


def test_base_secrets_come_from_the_mls_exporter(call: Call) -> None:
    # the epoch's exporter secret, found in memory (libdave's or OpenMLS's key schedule) as
    # the 32 bytes from which framecrypt's exporter gives the dave-py member's base secret;
    # the davey member's base secret must then follow from it too (user id as u64 LE)
    def gives_dave(cand: bytes) -> bool:
        return ratchet.base_secret(cand, call.g.dave_id) == call.dave_secret

    exporter = find_base_secret(gives_dave, size=32)
    assert exporter is not None, "no exporter secret in memory gives the base secret"
    assert ratchet.base_secret(exporter, call.g.davey_id) == call.davey_secret


def test_ratchet_repr_hides_secret(call: Call) -> None:
    r = ratchet.KeyRatchet(call.dave_secret)
    r.key(3)
    assert call.dave_secret.hex() not in repr(r) and "next_generation=4" in repr(r)


# --- the receiver's nonce window against libdave's Decryptor ----------------------------

from framecrypt.errors import ReplayedFrame  # noqa: E402
from framecrypt.workers.dave import nonces  # noqa: E402

# sequences of truncated nonces (generation 0) a sender's frames arrive with: libdave's
# accept/reject decision for each must be framecrypt's
SEQUENCES = {
    "replay": [5, 5],
    "late-then-replay": [5, 3, 3, 4, 2, 1, 6, 4],
    "missing-window": [1, 1200, 199, 200, 201, 1199, 1199, 1201],
    "jump-beyond-window": [10, 5000, 3999, 4000, 4001, 10],
    "below-the-first": [100, 1, 1, 99, 101, 50, 50],
    "below-the-first-window": [1500, 1, 499, 500, 501],
    "zero-first": [0, 1, 0],
    "zero-late": [5, 0, 0],
}


@pytest.mark.parametrize("seq", list(SEQUENCES.values()), ids=list(SEQUENCES))
def test_nonce_window_matches_libdave(call: Call, seq: list[int]) -> None:
    key = ratchet.key_for_generation(call.dave_secret, 0)
    dec = call.libdave_decryptor(call.g.dave_id)
    window = nonces.NonceWindow()
    for n in seq:
        sealed = frame.seal_codec(key, n, "opus", OPUS)
        libdave_ok = dec.decrypt(dave.MediaType.audio, sealed) == OPUS  # type: ignore[attr-defined]
        big = nonces.big_nonce(0, n)
        try:
            window.check(big)
        except ReplayedFrame:
            ours = False
        else:
            assert frame.open_frame(key, sealed) == OPUS
            window.accept(big)
            ours = True
        assert ours == libdave_ok, f"nonce {n}: libdave {libdave_ok}, framecrypt {ours}"


def test_wrapped_generation() -> None:
    assert nonces.wrapped_generation(0, 3) == 3
    assert nonces.wrapped_generation(250, 255) == 255
    assert nonces.wrapped_generation(250, 2) == 258  # past the 8-bit wrap
    assert nonces.wrapped_generation(513, 1) == 513
    assert nonces.wrapped_generation(513, 0) == 768
    assert nonces.big_nonce(258, (2 << 24) | 7) == (258 << 24) | 7


@settings(max_examples=60, deadline=None)
@given(seq=st.lists(st.integers(0, 2600), min_size=1, max_size=25))
def test_nonce_window_matches_libdave_on_any_sequence(call: Call, seq: list[int]) -> None:
    test_nonce_window_matches_libdave(call, seq)


# --- AV1: OBU-aware sealing, byte-identical with both ------------------------------------

_OBU = st.tuples(
    st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 15]),  # 2, 8, 15 are dropped by the sender
    st.booleans(),  # extension byte
    st.booleans(),  # size field
    st.binary(max_size=150),
)


def _av1(obus: list[tuple[int, bool, bool, bytes]]) -> bytes:
    out = bytearray()
    for i, (typ, ext, sized, payload) in enumerate(obus):
        sized = sized or i < len(obus) - 1  # an unsized OBU runs to the end of the frame
        out.append((typ << 3) | (0x04 if ext else 0) | (0x02 if sized else 0))
        if ext:
            out.append(0x28)
        if sized:
            out += leb128.encode(len(payload))
        out += payload
    return bytes(out)


def _same_as_both(call: Call, codec: str, plain: bytes) -> None:
    sealed = call.enc.encrypt(dave.MediaType.video, 4, plain)
    assert sealed is not None
    f = footer.parse(sealed)
    key = ratchet.key_for_generation(call.dave_secret, f.generation)
    assert frame.seal_codec(key, f.nonce, codec, plain) == sealed
    sealed = call.g.davey_member.encrypt(davey.MediaType.video, davey.Codec.av1, plain)
    f = footer.parse(sealed)
    key = ratchet.key_for_generation(call.davey_secret, f.generation)
    assert frame.seal_codec(key, f.nonce, codec, plain) == sealed


@settings(max_examples=150, deadline=None)
@given(obus=st.lists(_OBU, min_size=1, max_size=6))
def test_av1_frames_byte_identical_with_both(call: Call, obus: list[tuple[int, bool, bool, bytes]]
                                             ) -> None:
    _same_as_both(call, "av1", _av1(obus))


def test_av1_last_obu_loses_its_size_field() -> None:
    plain = _av1([(2, False, True, b""), (6, True, True, b"abc"), (6, False, True, b"xyz")])
    rewritten, ranges = frame.av1_frame(plain)
    # the temporal delimiter is gone; the last OBU's header has its size bit cleared
    assert rewritten == bytes([0x36, 0x28, 3]) + b"abc" + bytes([0x30]) + b"xyz"
    assert ranges == [(0, 3), (6, 1)]


# --- H.264 / H.265: NAL-aware sealing with start-code avoidance ---------------------------

# slice headers whose first three exp-Golomb values end within 2 bytes (a longer one could
# run past a short NAL unit, where libdave reads beyond it), then any body without 00 00
_PAYLOAD = st.tuples(
    st.sampled_from([b"\xe0", b"\xa8", b"\x9c\x80", b"\x4c\x40"]),
    st.binary(min_size=8, max_size=120).filter(lambda b: b"\x00\x00" not in b),
).map(lambda t: t[0] + t[1])
_NAL = st.tuples(st.integers(0, 63), st.booleans(), _PAYLOAD)


def _h26x(codec: str, nals: list[tuple[int, bool, bytes]]) -> bytes:
    out = bytearray()
    for typ, long_code, payload in nals:
        out += b"\x00\x00\x00\x01" if long_code else b"\x00\x00\x01"
        if codec == "h264":
            out.append(0x60 | (typ & 0x1F))
        else:
            out += bytes([(typ << 1) & 0x7E, 0x01])
        out += payload
    return bytes(out)


@settings(max_examples=120, deadline=None)
@given(codec=st.sampled_from(["h264", "h265"]), nals=st.lists(_NAL, min_size=1, max_size=5))
def test_h26x_frames_byte_identical_with_both(
    call: Call, codec: str, nals: list[tuple[int, bool, bytes]]
) -> None:
    plain = _h26x(codec, nals)
    # libdave: learn its nonce counter from an Opus frame, then the H.26x frame must be
    # framecrypt's first attempt at the next nonce (or a retry after it, the same way)
    probe = footer.parse(call.enc.encrypt(dave.MediaType.audio, 1, OPUS)).nonce
    sealed = call.enc.encrypt(dave.MediaType.video, 5 if codec == "h264" else 6, plain)
    f = footer.parse(sealed)
    key = ratchet.key_for_generation(call.dave_secret, f.generation)
    assert frame.seal_h26x(key, probe + 1, codec, plain) == (sealed, f.nonce)
    opened = frame.open_frame(key, sealed)
    assert opened == frame.h26x.h26x_frame(codec, plain)[0]
    # davey
    probe = footer.parse(call.g.davey_member.encrypt_opus(OPUS)).nonce
    dcodec = davey.Codec.h264 if codec == "h264" else davey.Codec.h265
    sealed = call.g.davey_member.encrypt(davey.MediaType.video, dcodec, plain)
    f = footer.parse(sealed)
    key = ratchet.key_for_generation(call.davey_secret, f.generation)
    assert frame.seal_h26x(key, probe + 1, codec, plain) == (sealed, f.nonce)


def test_start_code_leak_detection() -> None:
    from framecrypt.workers.dave import h26x

    # clear (0, 5); an encrypted section holding 00 00 01; then a clear range
    assert h26x.has_start_code_leak(b"\x00\x00\x00\x01\x65" + b"\x07\x00\x00\x01\x09"
                                    + b"\x41\x42", [(0, 5), (10, 2)])
    assert not h26x.has_start_code_leak(b"\x00\x00\x00\x01\x65" + b"\x07\x00\x05\x01\x09"
                                        + b"\x41\x42", [(0, 5), (10, 2)])
    # the tail after the last clear range (where the footer lives) counts too
    assert h26x.has_start_code_leak(b"\x00\x00\x00\x01\x65" + b"\x09\x00\x00\x01\x07",
                                    [(0, 5)])


# --- malformed and tampered frames: framecrypt decides as libdave does --------------------


def _framecrypt_opens(call: Call, data: bytes) -> bool:
    try:
        f = footer.parse(data)
        key = ratchet.key_for_generation(call.dave_secret, f.generation)
        frame.open_parsed(key, data, f)
    except (MalformedFrame, AuthenticationFailed):
        return False
    return True


@settings(max_examples=200, deadline=None)
@given(
    cut_head=st.integers(0, 3),
    cut_tail=st.integers(0, 3),
    flip_at=st.integers(-30, -1),
    flip=st.integers(0, 255),
    insert=st.binary(max_size=3),
)
def test_mutated_frames_rejected_as_libdave_rejects(
    call: Call, cut_head: int, cut_tail: int, flip_at: int, flip: int, insert: bytes
) -> None:
    # a libdave-sealed VP8 key frame (clear range, footer), then mutated around its footer
    sealed = call.enc.encrypt(dave.MediaType.video, 2, VP8_KEY)
    data = bytearray(sealed[cut_head : len(sealed) - cut_tail])
    if len(data) >= -flip_at:
        data[flip_at] ^= flip
    pos = len(data) + flip_at if len(data) >= -flip_at else 0
    data[pos:pos] = insert
    data = bytes(data)
    dec = call.libdave_decryptor(call.g.dave_id)
    libdave_ok = dec.decrypt(dave.MediaType.video, data) is not None  # type: ignore[attr-defined]
    assert _framecrypt_opens(call, data) == libdave_ok
    if data == sealed:
        assert libdave_ok


def test_silence_frame_is_not_a_dave_frame(call: Call) -> None:
    # libdave's receiver passes the SFU's Opus silence frame through (audio only)
    dec = call.libdave_decryptor(call.g.dave_id)
    assert dec.decrypt(dave.MediaType.audio, frame.OPUS_SILENCE) == frame.OPUS_SILENCE  # type: ignore[attr-defined]
    assert dec.decrypt(dave.MediaType.video, frame.OPUS_SILENCE) is None  # type: ignore[attr-defined]
    with pytest.raises(MalformedFrame):
        footer.parse(frame.OPUS_SILENCE)


# --- the receiver's state (generations, epochs, passthrough) against libdave --------------

from framecrypt.errors import DroppedFrame  # noqa: E402
from framecrypt.workers.dave import receiver  # noqa: E402


def test_receiver_refuses_generations_a_young_ratchet_cannot_have(call: Call) -> None:
    key1 = ratchet.key_for_generation(call.dave_secret, 1)
    sealed = frame.seal_codec(key1, (1 << 24) | 9, "opus", OPUS)
    dec = call.libdave_decryptor(call.g.dave_id)
    assert dec.decrypt(dave.MediaType.audio, sealed) is None  # type: ignore[attr-defined]
    rx = receiver.Receiver()
    rx.transition_to_key_ratchet(ratchet.KeyRatchet(call.dave_secret), now=0.0)
    with pytest.raises(DroppedFrame):
        rx.open(sealed, now=5.0)
    # 2^24 frames at libdave's cap of 170 frames/s take 98,689 s: then generation 1 opens
    assert rx.open(sealed, now=98_690.0) == OPUS


def test_receiver_passthrough_transitions_as_libdave(call: Call) -> None:
    dec = call.libdave_decryptor(call.g.dave_id)
    rx = receiver.Receiver()
    rx.transition_to_key_ratchet(ratchet.KeyRatchet(call.dave_secret), now=0.0)
    clear = b"an unencrypted frame"
    assert dec.decrypt(dave.MediaType.audio, clear) is None  # type: ignore[attr-defined]
    with pytest.raises(MalformedFrame):
        rx.open(clear, now=0.0)
    dec.transition_to_passthrough_mode(True)  # type: ignore[attr-defined]
    rx.transition_to_passthrough(True, now=0.0)
    assert dec.decrypt(dave.MediaType.audio, clear) == clear  # type: ignore[attr-defined]
    assert rx.open(clear, now=1.0) == clear
    dec.transition_to_passthrough_mode(False, 10.0)  # type: ignore[attr-defined]
    rx.transition_to_passthrough(False, now=1.0, expiry=10.0)
    assert dec.decrypt(dave.MediaType.audio, clear) == clear  # type: ignore[attr-defined]
    assert rx.open(clear, now=1.5) == clear
    dec.transition_to_passthrough_mode(False, 0.0)  # type: ignore[attr-defined]
    rx.transition_to_passthrough(False, now=2.0, expiry=0.0)
    assert dec.decrypt(dave.MediaType.audio, clear) is None  # type: ignore[attr-defined]
    with pytest.raises(MalformedFrame):
        rx.open(clear, now=2.001)
    assert rx.open(frame.OPUS_SILENCE, now=3.0) == frame.OPUS_SILENCE


@pytest.mark.parametrize("expiry", [10.0, 0.0])
def test_receiver_epoch_transition_as_libdave(call: Call, expiry: float) -> None:
    # frames under the old epoch's ratchet open until the transition expiry
    old = frame.seal_codec(ratchet.key_for_generation(call.dave_secret, 0), 77, "opus", OPUS)
    dec = call.libdave_decryptor(call.g.dave_id)
    dec.transition_to_key_ratchet(  # type: ignore[attr-defined]
        call.g.dave_member.get_key_ratchet(str(call.g.davey_id)), expiry
    )
    rx = receiver.Receiver()
    rx.transition_to_key_ratchet(ratchet.KeyRatchet(call.dave_secret), now=0.0)
    rx.transition_to_key_ratchet(ratchet.KeyRatchet(call.davey_secret), now=1.0, expiry=expiry)
    libdave_ok = dec.decrypt(dave.MediaType.audio, old) == OPUS  # type: ignore[attr-defined]
    assert libdave_ok == (expiry > 0)
    if expiry > 0:
        assert rx.open(old, now=1.001) == OPUS
    else:  # the old ratchet is gone: only the new epoch's key is tried
        with pytest.raises(AuthenticationFailed):
            rx.open(old, now=1.001)
    new = frame.seal_codec(ratchet.key_for_generation(call.davey_secret, 0), 78, "opus", OPUS)
    assert dec.decrypt(dave.MediaType.audio, new) == OPUS  # type: ignore[attr-defined]
    assert rx.open(new, now=1.002) == OPUS


def test_receiver_replay_and_repr(call: Call) -> None:
    rx = receiver.Receiver()
    rx.transition_to_key_ratchet(ratchet.KeyRatchet(call.dave_secret), now=0.0)
    sealed = frame.seal_codec(ratchet.key_for_generation(call.dave_secret, 0), 5, "opus", OPUS)
    assert rx.open(sealed, now=0.0) == OPUS
    with pytest.raises(ReplayedFrame):
        rx.open(sealed, now=0.0)
    assert call.dave_secret.hex() not in repr(rx)


# --- a sender: libdave's Encryptor frame for frame ---------------------------------------

from framecrypt.workers.dave import sender  # noqa: E402

_SSRC = {"opus": 1, "vp8": 2, "vp9": 3, "av1": 4, "h264": 5, "h265": 6}
_ANY_FRAME = st.one_of(
    st.tuples(st.just("opus"), st.binary(max_size=80)),
    st.tuples(st.just("vp9"), st.binary(max_size=80)),
    st.tuples(st.just("vp8"), st.binary(min_size=10, max_size=80)),
    st.tuples(st.just("av1"), st.lists(_OBU, min_size=1, max_size=3).map(_av1)),
    st.tuples(st.sampled_from(["h264", "h265"]), st.tuples(
        st.sampled_from(["h264", "h265"]), st.lists(_NAL, min_size=1, max_size=3))
        .map(lambda t: _h26x(*t))),
)


@settings(max_examples=40, deadline=None)
@given(frames=st.lists(_ANY_FRAME, min_size=1, max_size=12))
def test_sender_matches_libdave_encryptor(call: Call, frames: list[tuple[str, bytes]]) -> None:
    enc = dave.Encryptor()
    enc.set_key_ratchet(call.g.dave_member.get_key_ratchet(str(call.g.dave_id)))
    for codec, ssrc in _SSRC.items():
        enc.assign_ssrc_to_codec(ssrc, getattr(dave.Codec, codec))
    ours = sender.Sender(ratchet.KeyRatchet(call.dave_secret))
    for codec, plain in frames:
        media = dave.MediaType.audio if codec == "opus" else dave.MediaType.video
        assert ours.seal(codec, plain) == enc.encrypt(media, _SSRC[codec], plain)
    assert call.dave_secret.hex() not in repr(ours)
