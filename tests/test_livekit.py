"""LiveKit / Jitsi frame format: livekit-client's own unit-test vectors, the codec
rules, H.26x escaping, ratchet-on-failure, SIF/LKTS. Interop with the running
livekit-client worker is in test_interop_livekit.py."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from framecrypt import jitsi, livekit
from framecrypt.errors import (
    AuthenticationFailed,
    DroppedFrame,
    KeyInvalidated,
    MalformedFrame,
    UnknownKey,
    UnsupportedCodec,
)
from framecrypt.workers.livekit import h26x, lkts
from framecrypt.workers.livekit.codecs import clear_prefix
from framecrypt.workers.livekit.frame import livekit_iv

VECTORS = json.loads(
    (Path(__file__).parent / "vectors/livekit/livekit-client-2.23.0-unit-vectors.json").read_text()
)

SPS = bytes.fromhex("6742c01f0fd91f8888840000030004000003 00c83c60c920".replace(" ", ""))
PPS = bytes.fromhex("6887cb83cb20")
IDR = bytes.fromhex("6588840af26280 00a7be".replace(" ", "")) + bytes(range(1, 200))
SC4 = b"\x00\x00\x00\x01"


# --- livekit-client's own vectors (from its published test suite) -----------------------


def test_ratchet_snapshot_of_livekit_client() -> None:
    v = VECTORS["ratchet_snapshot"]
    material: bytes | str = v["passphrase"]
    pt, iv = bytes.fromhex(v["plaintext"]), bytes.fromhex(v["iv"])
    got = []
    for _ in range(10):
        key = livekit.derive_key(material, kdf="pbkdf2")
        got.append(AESGCM(key).encrypt(iv, pt, b"").hex())
        material = livekit.ratchet(material, kdf="pbkdf2")
    assert got == v["ciphertexts"]


def test_decrypt_vector_of_livekit_client() -> None:
    v = VECTORS["decrypt_vector"]
    sealed = bytes.fromhex(v["sealed"])
    key = livekit.derive_key(v["passphrase"])
    assert livekit.unprotect(sealed, key=key, codec="vp8", keyframe=True).hex() == v["plaintext"]
    bad = livekit.derive_key(v["wrong_passphrase"])
    with pytest.raises(AuthenticationFailed):
        livekit.unprotect(sealed, key=bad, codec="vp8", keyframe=True)
    c = livekit.ParticipantCryptor(livekit.CryptorOptions(ratchet_window=0))
    c.set_key(v["passphrase"], index=v["key_index"])
    assert c.decrypt(sealed, codec="vp8", keyframe=True).hex() == v["plaintext"]


def test_key_derivations_follow_the_documented_kdfs() -> None:
    # raw bytes: HKDF-SHA256, salt LKFrameEncryptionKey, info = 128 zero bytes
    raw = bytes(range(32))
    want = HKDF(SHA256(), 16, b"LKFrameEncryptionKey", bytes(128)).derive(raw)
    assert livekit.derive_key(raw) == want
    # the AES key is the first half of the next chain material (same KDF inputs)
    assert livekit.ratchet(raw)[:16] == want
    assert livekit.derive_key("pw") == livekit.ratchet("pw")[:16]
    assert livekit.derive_key(raw, salt=b"other") != want
    assert jitsi.derive_key(raw) == HKDF(SHA256(), 16, b"JFrameEncryptionKey", b"").derive(raw)
    assert jitsi.ratchet(raw) == HKDF(SHA256(), 32, b"JFrameRatchetKey", b"").derive(raw)


# --- framing ---------------------------------------------------------------------------


KEY = livekit.derive_key(bytes(32))


def _protect(data: bytes, codec: str, keyframe: bool = False, **kw: int) -> bytes:
    return livekit.protect(
        data, key=KEY, codec=codec, keyframe=keyframe, ssrc=kw.get("ssrc", 0x11223344),
        timestamp=kw.get("timestamp", 90000), send_count=kw.get("send_count", 5),
        key_index=kw.get("key_index", 0),
    )


@pytest.mark.parametrize(
    ("codec", "keyframe", "clear"),
    [("vp8", True, 10), ("vp8", False, 3), ("opus", False, 1), ("opus", True, 1),
     ("vp9", True, 0), ("av1", True, 0)],
)
def test_clear_bytes_and_layout(codec: str, keyframe: bool, clear: int) -> None:
    data = bytes((i * 7 + 3) & 0xFF for i in range(300))
    sealed = _protect(data, codec, keyframe, key_index=3)
    assert len(sealed) == len(data) + 30
    assert sealed[:clear] == data[:clear]
    assert sealed[clear : clear + 8] != data[clear : clear + 8]
    iv = sealed[-14:-2]
    assert sealed[-2:] == bytes((12, 3))
    assert iv == struct.pack(">III", 0x11223344, 90000, 90000 - 5)
    # header is the whole AAD: decrypt by hand with cryptography
    body = sealed[clear:-14]
    assert AESGCM(KEY).decrypt(iv, body, data[:clear]) == data[clear:]
    assert livekit.unprotect(sealed, key=KEY, codec=codec, keyframe=keyframe) == data


def test_iv_wraps_like_livekit_client() -> None:
    # (ts - sendCount % 0xFFFF) mod 2^32, as recorded from the real worker (ts=3)
    assert livekit_iv(1, 3, 0xF9D7)[8:].hex() == "ffff062c"
    assert livekit_iv(1, 3, 0xFFFF)[8:] == struct.pack(">I", 3)  # % 0xFFFF, not 2^16


def test_empty_frame_passes_through() -> None:
    assert _protect(b"", "vp8") == b""
    assert livekit.unprotect(b"", key=KEY, codec="opus", keyframe=False) == b""


def test_frame_shorter_than_clear_header_is_refused() -> None:
    with pytest.raises(MalformedFrame):
        _protect(b"\x01\x02", "vp8", keyframe=False)


def test_unknown_codec() -> None:
    with pytest.raises(UnsupportedCodec):
        _protect(b"x" * 20, "theora")


def test_h264_idr_with_sps_pps_keeps_parameter_sets_clear() -> None:
    frame = SC4 + SPS + SC4 + PPS + SC4 + IDR
    n, nalu = clear_prefix("h264", True, frame)
    idr_at = frame.index(SC4 + IDR) + 4
    assert (n, nalu) == (idr_at + 2, True)
    sealed = _protect(frame, "h264", True)
    assert sealed[:n] == frame[:n]
    assert livekit.unprotect(sealed, key=KEY, codec="h264", keyframe=True) == frame


def test_h264_three_byte_start_codes_are_rewritten_in_the_header() -> None:
    frame = b"\x00\x00\x01" + SPS + b"\x00\x00\x01" + PPS + b"\x00\x00\x01" + IDR
    sealed = _protect(frame, "h264", True)
    want = SC4 + SPS + SC4 + PPS + SC4 + IDR
    assert sealed.startswith(want[: want.index(SC4 + IDR) + 6])
    assert livekit.unprotect(sealed, key=KEY, codec="h264", keyframe=True) == want


def test_h264_body_is_escaped_and_unescaped() -> None:
    # force ciphertext/IV bytes that need escaping: an IV with zero runs
    frame = SC4 + b"\x41" + bytes(64)
    for count in range(200):
        sealed = _protect(frame, "h264", False, ssrc=0, timestamp=0x10000 * 0, send_count=count)
        body = sealed[6:]
        # escaped: no 00 00 0x with x <= 2 anywhere after the header
        for x in (0, 1, 2):
            assert b"\x00\x00" + bytes((x,)) not in body
        assert livekit.unprotect(sealed, key=KEY, codec="h264", keyframe=False) == frame


def test_h265_slices() -> None:
    vps, sps, pps = b"\x40\x01\x0c\x01", b"\x42\x01\x01\x01", b"\x44\x01\xc1\x72"
    idr = b"\x26\x01" + bytes(range(3, 120))  # type 19 IDR_W_RADL
    frame = SC4 + vps + SC4 + sps + SC4 + pps + SC4 + idr
    n, nalu = clear_prefix("h265", True, frame)
    assert nalu and n == frame.index(SC4 + idr) + 4 + 2
    sealed = _protect(frame, "h265", True)
    assert livekit.unprotect(sealed, key=KEY, codec="h265", keyframe=True) == frame


def test_h264_without_slice_falls_back_to_vp8_rule() -> None:
    assert clear_prefix("h264", True, SC4 + SPS + SC4 + PPS) == (10, False)
    assert clear_prefix("h264", False, b"\x99" * 40) == (3, False)  # leading data


def test_rbsp_escape_matches_livekit_semantics() -> None:
    assert h26x.escape(bytes(5)) == bytes.fromhex("00000300000300")
    assert h26x.escape(b"\x05\x00\x00\x00\x00\x05") == bytes.fromhex("05000003000005")
    assert h26x.escape(b"\x00\x00") == b"\x00\x00"
    assert h26x.escape(b"\x00\x00\x04") == b"\x00\x00\x04"
    assert h26x.unescape(bytes.fromhex("00000300000300")) == bytes(5)
    assert not h26x.needs_unescape(b"\x01\x00\x00\x03")  # only at the very end: not counted
    assert h26x.needs_unescape(b"\x00\x00\x03\x01")


def test_normalize_start_codes() -> None:
    assert h26x.normalize_start_codes(b"\x00\x00\x01\x67") == SC4 + b"\x67"
    assert h26x.normalize_start_codes(SC4 + b"\x67") == SC4 + b"\x67"
    two = b"\x00\x00\x01\x67\xaa\x00\x00\x01\x68"
    assert h26x.normalize_start_codes(two) == SC4 + b"\x67\xaa" + SC4 + b"\x68"


def test_tamper_and_wrong_key_fail_without_detail() -> None:
    data = bytes(range(100))
    sealed = bytearray(_protect(data, "vp8", True))
    sealed[20] ^= 1
    with pytest.raises(AuthenticationFailed) as e:
        livekit.unprotect(bytes(sealed), key=KEY, codec="vp8", keyframe=True)
    assert str(e.value) == "authentication failed"
    # tampering with the clear header (the AAD) fails too
    sealed = bytearray(_protect(data, "vp8", True))
    sealed[0] ^= 0x80
    with pytest.raises(AuthenticationFailed):
        livekit.unprotect(bytes(sealed), key=KEY, codec="vp8", keyframe=True)


def test_truncated_and_bad_iv_length_are_malformed() -> None:
    sealed = _protect(bytes(100), "vp8", True)
    with pytest.raises(MalformedFrame):
        livekit.unprotect(sealed[:20], key=KEY, codec="vp8", keyframe=True)
    bad = sealed[:-2] + b"\x10" + sealed[-1:]
    with pytest.raises(MalformedFrame):
        livekit.unprotect(bad, key=KEY, codec="vp8", keyframe=True)


# --- SIF and LKTS ------------------------------------------------------------------------

OPUS_SILENCE = bytes.fromhex("f8fffe") + bytes(77)
VP8_8X8 = bytes.fromhex(
    "1002009d012a0800080000470885858885848802020" "00c0d6000feffab5080"
)


def test_sif_known_blank_passes_and_other_is_dropped() -> None:
    trailer = b"LK-ROCKS"
    assert livekit.unprotect(OPUS_SILENCE + trailer, key=KEY, codec="opus", keyframe=False,
                             sif_trailer=trailer) == OPUS_SILENCE
    assert livekit.unprotect(VP8_8X8 + trailer, key=KEY, codec="vp8", keyframe=True,
                             sif_trailer=trailer) == VP8_8X8
    with pytest.raises(DroppedFrame):
        livekit.unprotect(b"\x01" * 40 + trailer, key=KEY, codec="vp8", keyframe=True,
                          sif_trailer=trailer)
    # without a configured trailer the same bytes are just a bad frame
    with pytest.raises((AuthenticationFailed, MalformedFrame)):
        livekit.unprotect(b"\x01" * 40 + trailer, key=KEY, codec="vp8", keyframe=True)


def test_lkts_trailer_is_stripped_before_decrypt() -> None:
    data = bytes(range(50))
    sealed = _protect(data, "vp8", True)
    meta = lkts.FrameMetadata(user_timestamp_us=1_700_000_000_000_000, frame_id=42)
    tagged = lkts.append(sealed, meta)
    assert tagged.endswith(b"LKTS") and len(tagged) == len(sealed) + 21
    assert lkts.extract(tagged) == (sealed, meta)
    assert livekit.unprotect(tagged, key=KEY, codec="vp8", keyframe=True) == data
    assert lkts.append(sealed, lkts.FrameMetadata()) == sealed
    # a trailer with an impossible length stays in place (livekit-client does the same)
    assert lkts.extract(b"\x00" * 10 + bytes((0xFF ^ 200,)) + b"LKTS")[1] is None


# --- participant cryptor: key ring, ratchet-on-failure, tolerance ------------------------


def _cryptor(**kw: object) -> livekit.ParticipantCryptor:
    return livekit.ParticipantCryptor(livekit.CryptorOptions(**kw))  # type: ignore[arg-type]


def _seal_with(material: bytes, data: bytes, codec: str = "vp8", kf: bool = True,
               index: int = 0, steps: int = 0) -> bytes:
    for _ in range(steps):
        material = livekit.ratchet(material, kdf="hkdf")
    return livekit.protect(data, key=livekit.derive_key(material, kdf="hkdf"), codec=codec,
                           keyframe=kf, ssrc=9, timestamp=1000, send_count=steps,
                           key_index=index)


def test_receiver_walks_forward_one_step_per_attempt() -> None:
    base = b"\x42" * 32
    rx = _cryptor()
    rx.set_key(base, 0)
    data = bytes(range(80))
    # a frame two ratchet steps ahead: livekit-client's receiver (r1 on every attempt) fails
    assert rx.decrypt(_seal_with(base, data, steps=2), codec="vp8", keyframe=True) == data
    ev = rx.events()
    assert ev == [livekit.KeyRatcheted(0, 2, on_decrypt=True)]
    assert rx.ring.get(0).generation == 2  # type: ignore[union-attr]
    # the committed key opens r2 frames directly now, and r3 by one step
    assert rx.decrypt(_seal_with(base, data, steps=2), codec="vp8", keyframe=True) == data
    assert rx.decrypt(_seal_with(base, data, steps=3), codec="vp8", keyframe=True) == data
    assert rx.ring.get(0).generation == 3  # type: ignore[union-attr]


def test_forged_frame_never_moves_the_key() -> None:
    base = b"\x07" * 32
    rx = _cryptor()
    rx.set_key(base, 0)
    forged = _seal_with(b"\x08" * 32, bytes(60))
    with pytest.raises(AuthenticationFailed):
        rx.decrypt(forged, codec="vp8", keyframe=True)
    assert rx.ring.get(0).generation == 0  # type: ignore[union-attr]
    assert rx.decrypt(_seal_with(base, bytes(60)), codec="vp8", keyframe=True) == bytes(60)


def test_ratchet_retry_never_unescapes_twice() -> None:
    # an H.264 body whose *unescaped* form contains 00 00 03: livekit-client's retry
    # path unescapes again and corrupts it; we parse once.
    base = b"\x33" * 32
    frame = SC4 + b"\x65\x88" + b"\x00\x00\x03\x01" * 20
    sealed = _seal_with(base, frame, codec="h264", steps=1)
    rx = _cryptor()
    rx.set_key(base, 0)
    assert rx.decrypt(sealed, codec="h264", keyframe=True) == frame


def test_failure_tolerance_marks_key_invalid_until_new_key() -> None:
    rx = _cryptor(ratchet_window=0, failure_tolerance=2)
    rx.set_key(b"\x01" * 32, 0)
    forged = _seal_with(b"\x02" * 32, bytes(40))
    for _ in range(3):
        with pytest.raises(AuthenticationFailed):
            rx.decrypt(forged, codec="vp8", keyframe=True)
    with pytest.raises(KeyInvalidated):
        rx.decrypt(forged, codec="vp8", keyframe=True)
    kinds = [type(e).__name__ for e in rx.events()]
    assert kinds == ["DecryptionFailed"] * 3 + ["KeyMarkedInvalid"]
    rx.set_key(b"\x02" * 32, 0)
    assert rx.decrypt(forged, codec="vp8", keyframe=True) == bytes(40)


def test_missing_key_index() -> None:
    rx = _cryptor()
    rx.set_key(b"\x01" * 32, 0)
    with pytest.raises(UnknownKey) as e:
        rx.decrypt(_seal_with(b"\x01" * 32, bytes(40), index=5), codec="vp8", keyframe=True)
    assert e.value.kid == 5


def test_sender_uses_current_index_and_explicit_ratchet() -> None:
    tx, rx = _cryptor(ratchet_window=0), _cryptor(ratchet_window=0)
    for c in (tx, rx):
        c.set_key("shared secret", 5)
    data = bytes(range(60))
    sealed = tx.encrypt(data, codec="vp8", keyframe=False, ssrc=1, timestamp=2, send_count=3)
    assert sealed[-1] == 5
    assert rx.decrypt(sealed, codec="vp8", keyframe=False) == data
    chain = tx.ratchet()
    assert chain == livekit.ratchet("shared secret")
    sealed = tx.encrypt(data, codec="vp8", keyframe=False, ssrc=1, timestamp=2, send_count=4)
    with pytest.raises(AuthenticationFailed):
        rx.decrypt(sealed, codec="vp8", keyframe=False)
    rx.ratchet(5)
    assert rx.decrypt(sealed, codec="vp8", keyframe=False) == data


def test_jitsi_framing_uses_frame_type_rule_and_own_iv() -> None:
    key = jitsi.derive_key(b"\x05" * 32)
    frame = SC4 + SPS + SC4 + IDR
    sealed = jitsi.protect(frame, key=key, codec="h264", keyframe=True, ssrc=1, timestamp=7,
                           send_count=0x10001)
    assert sealed[:10] == frame[:10] and sealed[-2:] == b"\x0c\x00"
    assert sealed[-6:-2] == struct.pack(">I", 0x10001 % 0xFFFF)
    assert jitsi.unprotect(sealed, key=key, codec="h264", keyframe=True) == frame
    rx = jitsi.ParticipantCryptor(jitsi.options())
    rx.set_key(b"\x05" * 32)
    nxt = jitsi.ratchet(b"\x05" * 32)
    s2 = jitsi.protect(frame, key=jitsi.derive_key(nxt), codec="vp8", keyframe=True, ssrc=1,
                       timestamp=7, send_count=1)
    assert rx.decrypt(s2, codec="vp8", keyframe=True) == frame


# --- no key bytes anywhere visible -------------------------------------------------------


def test_no_key_bytes_in_reprs_or_errors() -> None:
    secret = bytes(range(100, 132))
    c = _cryptor()
    c.set_key(secret, 3)
    ks = c.ring.get(3)
    assert ks is not None
    aes = ks.kdf.derive_key(secret)
    texts = [repr(c), repr(ks), repr(c.ring), repr(ks.kdf), str(c.options)]
    forged = _seal_with(b"\x00" * 32, bytes(40), index=3)
    for exc_data in (forged, forged[:10]):
        try:
            c.decrypt(exc_data, codec="vp8", keyframe=True)
        except Exception as e:
            texts += [str(e), repr(e)]
    for t in texts:
        for needle in (secret, aes):
            assert needle.hex() not in t and repr(needle) not in t
