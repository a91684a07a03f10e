"""Receivers need no keyframe hint (issue 15, item 5).

The LiveKit/Jitsi clear header depends on the frame type (VP8: 10 bytes on key frames,
3 on delta frames). A browser receiver reads the type from the payload (the VP8 P bit
stays clear); framecrypt does the same on every open path: the per-call API, the
participant cryptor, the engine's batch loop, pure and native alike. An explicit
``keyframe=`` on open is a checked hint: tried second, never a reason to fail.
"""

from __future__ import annotations

import asyncio
import os
import random
from array import array
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from native_helpers import Pair, Reply

from framecrypt import jitsi, livekit, samples
from framecrypt.errors import AuthenticationFailed, FramecryptError
from framecrypt.transports import wire
from framecrypt.workers import native
from framecrypt.workers.engine import Engine, EngineConfig, reply_size
from framecrypt.workers.livekit import frame as lkframe
from framecrypt.workers.livekit.codecs import KF_KIND, sealed_keyframe
from framecrypt.workers.livekit.events import KeyMarkedInvalid

MATERIAL = bytes(range(32))
# the pure pass of make test (FRAMECRYPT_NATIVE=0) has no extension on purpose;
# anywhere else a missing extension fails the native half
PURE_PASS = os.environ.get("FRAMECRYPT_NATIVE", "").strip() == "0"
PATHS = ("pure",) if PURE_PASS else ("native", "pure")


def _path(kind: str) -> Any:
    return native.using("auto") if kind == "native" else native.pure()


@pytest.fixture(scope="module")
def vp8() -> tuple[samples.EncodedFrame, ...]:
    # 40 frames, a key frame every 4th: ten key frames, more than the default tolerance
    return samples.video("vp8", count=40, gop=4, width=96, height=64)


# ---- the inference itself -----------------------------------------------------------


@pytest.mark.parametrize("codec", ["vp8", "vp9", "h264", "h265"])
def test_inference_matches_the_encoder_flag(codec: str) -> None:
    frames = samples.video(codec, count=24, gop=6, width=96, height=64)
    assert sum(f.keyframe for f in frames) >= 3
    for f in frames:
        assert sealed_keyframe(codec, f.data) == f.keyframe, (codec, f.data[:12].hex())


def test_inference_of_hand_made_headers() -> None:
    # AV1: temporal delimiter then a sequence header (key) or a frame OBU (delta)
    assert sealed_keyframe("av1", bytes.fromhex("12000a0b"))
    assert sealed_keyframe("av1", bytes.fromhex("0a0b"))
    assert not sealed_keyframe("av1", bytes.fromhex("120032"))
    assert not sealed_keyframe("av1", bytes.fromhex("1005"))  # TD that is not empty
    # VP9 profile 3 (reserved bit, then show_existing_frame, frame_type)
    assert sealed_keyframe("vp9", bytes([0b10110000]))
    assert not sealed_keyframe("vp9", bytes([0b10110010]))
    assert not sealed_keyframe("vp9", bytes([0b10001000]))  # show_existing_frame
    assert not sealed_keyframe("vp9", bytes([0b00000000]))  # no frame marker
    # H.264: SPS after a 3-byte start code, IDR, AUD-first (SPS past the 10 clear bytes)
    assert sealed_keyframe("h264", bytes.fromhex("00000167"))
    assert sealed_keyframe("h264", bytes.fromhex("0000000165"))
    assert not sealed_keyframe("h264", bytes.fromhex("0000000109f0000000016742"))
    assert not sealed_keyframe("h264", bytes.fromhex("0000000141"))
    assert sealed_keyframe("h265", bytes.fromhex("000000014001"))
    assert sealed_keyframe("h265", bytes.fromhex("000000012601"))  # IDR_W_RADL (19)
    assert not sealed_keyframe("h265", bytes.fromhex("000000010201"))
    for codec in ("vp8", "vp9", "av1", "h264", "h265", "opus", "nonsense"):
        assert sealed_keyframe(codec, b"") is False
    assert not sealed_keyframe("opus", b"\x00" * 20)


@pytest.mark.skipif(PURE_PASS, reason="FRAMECRYPT_NATIVE=0: the pure pass")
@settings(max_examples=600, deadline=None)
@given(data=st.binary(max_size=40), codec=st.sampled_from([*sorted(KF_KIND), "opus"]),
       prefix=st.sampled_from([b"", b"\x00\x00\x01", b"\x00\x00\x00\x01", b"\x12\x00",
                               b"\x16\x00\x00", b"\x82", b"\xb0"]))
def test_hostile_payloads_c_and_python_agree(data: bytes, codec: str, prefix: bytes) -> None:
    """Any bytes: the reference never raises, the extension reads no more than it is
    given (the sanitizer build checks that) and both say the same."""
    frame = prefix + data
    want = sealed_keyframe(codec, frame)
    assert isinstance(want, bool)
    assert native.NATIVE.lk_keyframe(KF_KIND.get(codec, 0), frame) is want
    for cut in range(min(len(frame), 12)):
        assert native.NATIVE.lk_keyframe(KF_KIND.get(codec, 0), frame[:cut]) is \
            sealed_keyframe(codec, frame[:cut])
    assert native.NATIVE.lk_keyframe(99, frame) is False


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=80), codec=st.sampled_from(["vp8", "vp9", "h264", "h265",
                                                            "av1", "opus"]),
       hint=st.sampled_from([None, False, True]), jitsi_format=st.booleans())
def test_hostile_frames_open_to_typed_errors_only(data: bytes, codec: str, hint: bool | None,
                                                  jitsi_format: bool) -> None:
    key = livekit.derive_key(MATERIAL)
    frame = data + b"\x0c\x00" if len(data) % 2 else data
    for kind in PATHS:
        with _path(kind):
            try:
                if jitsi_format:
                    jitsi.unprotect(frame, key=key, codec=codec, keyframe=hint)
                else:
                    livekit.unprotect(frame, key=key, codec=codec, keyframe=hint)
            except FramecryptError:
                pass


# ---- frames sealed by livekit-client open with no hint ---------------------------------


def test_livekit_client_sealed_keyframes_open_without_hint(lk: Any, vp8: Any) -> None:
    frames = [{"data": f.data, "codec": "vp8", "keyframe": f.keyframe, "ssrc": 0x5EED,
               "timestamp": 3000 * i} for i, f in enumerate(vp8)]
    sealed_results = lk.lk_encrypt(MATERIAL, frames, key_index=2)
    sealed = [bytes.fromhex(r["data_hex"]) for r in sealed_results]
    key = livekit.derive_key(MATERIAL)
    keyframes = 0
    for f, s in zip(vp8, sealed, strict=True):
        assert s[:10 if f.keyframe else 3] == f.data[:10 if f.keyframe else 3]
        keyframes += f.keyframe
        for kind in PATHS:
            with _path(kind):
                assert livekit.unprotect(s, key=key, codec="vp8") == f.data
                # an explicit hint that is wrong does not make a frame fail
                assert livekit.unprotect(s, key=key, codec="vp8",
                                         keyframe=not f.keyframe) == f.data
    assert keyframes == 10
    # a participant cryptor with livekit-client's defaults (tolerance 10): every frame
    # opens with the default call, no failure is counted, the key is never marked
    for kind in PATHS:
        with _path(kind):
            c = livekit.ParticipantCryptor()
            c.set_key(MATERIAL, 2)
            for _ in range(2):  # 20 key frames, past the tolerance
                for f, s in zip(vp8, sealed, strict=True):
                    assert c.decrypt(s, codec="vp8") == f.data
            assert c.ring.failures(2) == 0
            assert not [e for e in c.events() if isinstance(e, KeyMarkedInvalid)]
            assert c.attempts == 2 * len(vp8)  # one AES-GCM attempt a frame, no ratchet


def test_batches_open_keyframes_with_default_flags(vp8: Any) -> None:
    """The engine (what a worker runs) with every flag 0, as a pool caller that never
    says ``keyframe=``: all frames open natively and in the pure loop, the same."""
    cfg = EngineConfig(failure_tolerance=3, ratchet_window=2)
    sender = Engine(cfg)
    rx = _pure_rx(cfg) if PURE_PASS else Pair(cfg)
    for e in (sender, rx):
        e.control("keyset", [0, "a", 0, MATERIAL, None, 0, True])
    data = [f.data for f in vp8] * 3
    n = len(data)
    enc_flags = bytes(f.keyframe for f in vp8) * 3
    out = bytearray(sum(map(len, data)) + 30 * n)
    res, spill, _ = sender.run_packed(wire.OP_ENCRYPT, 0, 0, -1, array("I", map(len, data)),
                                         bytes(n), enc_flags, array("I", [7] * n),
                                         array("I", range(n)), memoryview(b"".join(data)),
                                         memoryview(out))
    assert not spill
    sealed = [bytes(out[o : o + ln]) for _, o, ln in wire.RES.iter_unpack(res)]
    for stateless in (True, False):
        reply = rx.run(wire.OP_DECRYPT, 0, 0, -1, [len(s) for s in sealed], bytes(n), bytes(n),
                       [7] * n, list(range(n)), b"".join(sealed), stateless=stateless)
        assert reply.statuses() == [wire.ST_OK] * n
        assert [reply.outcome(k) for k in range(n)] == data
        rx.check_same_state(0)
    assert rx.native_full == 0  # the C loop opened every frame itself
    assert not rx.ref.events and rx.ref.counts["errors"] == 0


def _pure_rx(cfg: EngineConfig) -> Any:
    """The pure engine alone (the pure pass), with :class:`Pair`'s ``run``/``ref``."""

    class Solo:
        def __init__(self) -> None:
            with native.pure():
                self.ref = Engine(cfg)
            self.native_full = 0

        def control(self, op: str, args: list[Any]) -> Any:
            return self.ref.control(op, list(args))

        def run(self, op: int, pidx: int, counter0: int, epoch: int, lengths: list[int],
                codecs: bytes, flags: bytes, ssrcs: list[int], timestamps: list[int],
                inp: bytes, stateless: bool = False) -> Reply:
            out = bytearray(reply_size(op, len(lengths), len(inp)))
            res, spill, used = self.ref.run_packed(
                op, pidx, counter0, epoch, array("I", lengths), codecs, flags,
                array("I", ssrcs), array("I", timestamps), memoryview(inp),
                memoryview(out), stateless=stateless)
            return Reply(bytes(res), bytes(out[:used]), list(spill), used)

        def check_same_state(self, pidx: int) -> None:
            pass

    return Solo()


def test_checked_hint_opens_frames_whose_bytes_do_not_carry_their_type() -> None:
    """livekit-client's own unit-test frame: bytes 1..16 sealed as a key frame although
    the P bit says delta. The payload's rule fails, the caller's hint opens it; the
    cryptor counts no failure for it; with no hint it is not authentic."""
    key = livekit.derive_key(MATERIAL)
    data = bytes(range(1, 41))
    sealed = livekit.protect(data, key=key, codec="vp8", keyframe=True, ssrc=1, timestamp=2,
                             send_count=3)
    for kind in PATHS:
        with _path(kind):
            assert livekit.unprotect(sealed, key=key, codec="vp8", keyframe=True) == data
            with pytest.raises(AuthenticationFailed):
                livekit.unprotect(sealed, key=key, codec="vp8")
            c = livekit.ParticipantCryptor()
            c.set_key(MATERIAL)
            assert c.decrypt(sealed, codec="vp8", keyframe=True) == data
            assert c.ring.failures(0) == 0


# ---- Jitsi: every video codec under the frame-type rule ------------------------------


@pytest.mark.parametrize("codec", ["vp8", "vp9", "h264", "h265"])
def test_jitsi_real_frames_open_without_hint(codec: str) -> None:
    key = jitsi.derive_key(MATERIAL)
    frames = samples.video(codec, count=12, gop=4, width=96, height=64)
    for i, f in enumerate(frames):
        sealed = jitsi.protect(f.data, key=key, codec=codec, keyframe=f.keyframe, ssrc=9,
                               timestamp=i, send_count=i)
        for kind in PATHS:
            with _path(kind):
                assert jitsi.unprotect(sealed, key=key, codec=codec) == f.data


def test_jitsi_h264_whose_clear_bytes_cannot_tell() -> None:
    """An access unit delimiter first puts the SPS past a key frame's 10 clear bytes;
    a delta frame's 3 clear bytes never show its NAL type. Both open (the other rule
    is tried), and the cryptor counts nothing."""
    key = jitsi.derive_key(MATERIAL)
    rng = random.Random(5)
    aud_key = bytes.fromhex("0000000109f0000000016742c01f") + rng.randbytes(300)
    delta = bytes.fromhex("00000001419a") + rng.randbytes(300)
    assert not sealed_keyframe("h264", aud_key)
    for data, kf in ((aud_key, True), (delta, False)):
        sealed = jitsi.protect(data, key=key, codec="h264", keyframe=kf, ssrc=1, timestamp=2,
                               send_count=3)
        for kind in PATHS:
            with _path(kind):
                assert jitsi.unprotect(sealed, key=key, codec="h264") == data
                c = jitsi.ParticipantCryptor(jitsi.options())
                c.set_key(MATERIAL)
                assert c.decrypt(sealed, codec="h264") == data
                assert c.ring.failures(0) == 0
    # a parse under both rules, the payload's first
    sealed = jitsi.protect(aud_key, key=key, codec="h264", keyframe=True, ssrc=1, timestamp=2,
                           send_count=4)
    parsed = lkframe.parse(sealed, codec="h264", jitsi=True)
    assert len(parsed.header) == 3 and parsed.alt is not None and len(parsed.alt.header) == 10


def test_livekit_h264_without_a_slice_falls_back_both_ways() -> None:
    """LiveKit H.26x with no slice NAL unit: the VP8 rule by frame type; an SPS-only key
    frame reads as key, a frame of other NAL units as delta; either opens."""
    key = livekit.derive_key(MATERIAL)
    sps_only = bytes.fromhex("000000016742c01f0fd91f888884")
    sei_only = bytes.fromhex("0000000106050102030405060708090a0b")
    for data in (sps_only, sei_only):
        for kf in (True, False):
            # (an IV without 00 00 0x: the receiver's NAL scan of the sealed bytes must
            # not find a start code in it, the known H.26x ambiguity of the format)
            sealed = livekit.protect(data, key=key, codec="h264", keyframe=kf,
                                     ssrc=0x11223344, timestamp=0x55667788, send_count=3)
            for kind in PATHS:
                with _path(kind):
                    assert livekit.unprotect(sealed, key=key, codec="h264") == data


# ---- the aiortc adapter ------------------------------------------------------------


def test_aiortc_receiver_transform_opens_without_hints(vp8: Any) -> None:
    """ReceiverTransform.open (what aiortc's decoder queue calls) through a real pool of
    worker processes: it submits no keyframe flag, every VP8 key and delta frame and
    every H.264 access unit opens, nothing fails."""
    from pool_helpers import run

    from framecrypt import Pool
    from framecrypt.webrtc import ReceiverTransform

    key = livekit.derive_key(MATERIAL)
    h264 = samples.video("h264", count=12, gop=4, width=96, height=64)
    stream = [("vp8", f) for f in vp8[:16]] + [("h264", f) for f in h264]
    sealed = [livekit.protect(f.data, key=key, codec=c, keyframe=f.keyframe, ssrc=0x11223344,
                              timestamp=0x10000 + i, send_count=i)
              for i, (c, f) in enumerate(stream)]

    async def main() -> tuple[list[bytes], int, list[bool]]:
        pool = Pool(workers=1, placement="pool")
        await pool.start()
        try:
            await pool.set_key("alice", MATERIAL)
            rx = ReceiverTransform(pool, "alice")
            submitted: list[bool] = []
            real_submit = pool.submit

            def spy(participant: str, frame: Any, *args: Any, **kw: Any) -> Any:
                submitted.append(frame.keyframe)
                return real_submit(participant, frame, *args, **kw)

            pool.submit = spy  # type: ignore[method-assign]
            loop = asyncio.get_running_loop()
            opened: list[bytes] = []
            for (codec, _), s in zip(stream, sealed, strict=True):
                fut: asyncio.Future[bytes] = loop.create_future()
                rx.open(codec, s, fut.set_result,
                        lambda fut=fut: fut.set_exception(AssertionError("failed")))
                opened.append(await fut)
            return opened, rx.stats.frames_failed, submitted
        finally:
            await pool.close()

    opened, failed, submitted = run(main, timeout=60)
    # (the H.264 header comes back with 4-byte start codes, as from livekit-client)
    assert opened == [livekit.unprotect(s, key=key, codec=c) for (c, _), s in
                      zip(stream, sealed, strict=True)]
    assert opened[:16] == [f.data for f in vp8[:16]]
    assert failed == 0 and submitted == [False] * len(stream)
