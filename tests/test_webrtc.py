"""framecrypt.webrtc: aiortc senders/receivers with end-to-end encrypted frames.

Two real RTCPeerConnections in one process, on 127.0.0.1 (ICE, DTLS-SRTP and RTP over
real UDP sockets), a real Pool with worker processes: what one side seals the other
opens, byte-compatible with the pure LiveKit core; a wrong key decodes nothing and makes
the receiver ask for keyframes; no aiortc module is changed.
"""

from __future__ import annotations

import asyncio
import fractions
import struct
import time
from collections.abc import Callable
from typing import Any

import aiortc
import av
import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from pool_helpers import run

from framecrypt import Pool, livekit
from framecrypt.demo import media
from framecrypt.webrtc import (
    ReceiverTransform,
    SenderTransform,
    attach_receiver,
    attach_sender,
    local_configuration,
    loopback_only,
    prefer_codecs,
)
from framecrypt.webrtc import _aiortc_internals as internals
from framecrypt.workers.livekit import h26x

pytestmark = pytest.mark.timeout(60)

KEY = bytes(range(32))
WRONG = bytes(range(1, 33))


async def wait_until(cond: Callable[[], bool], timeout: float,
                     what: str | Callable[[], str]) -> None:
    """Poll a condition (media runs in real time) with a hard bound."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            detail = what if isinstance(what, str) else what()
            raise AssertionError(f"timed out waiting for {detail}")
        await asyncio.sleep(0.02)


class RecordingSender(SenderTransform):
    """Keeps (plaintext, sealed, keyframe) of every frame it sealed."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.sealed: list[tuple[bytes, bytes, bool]] = []

    def _sealed(self, data: bytes, sealed: bytes, keyframe: bool) -> None:
        super()._sealed(data, sealed, keyframe)
        self.sealed.append((data, sealed, keyframe))


class Sink:
    """Decoded frames of one remote track."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.frames: list[Any] = []
        self.task = asyncio.ensure_future(self._run(track))

    async def _run(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                self.frames.append(await track.recv())
            except MediaStreamError:
                return


class Call:
    """alice (sender) -> bob (receiver), both on loopback."""

    def __init__(self) -> None:
        self.a = RTCPeerConnection(local_configuration())
        self.b = RTCPeerConnection(local_configuration())
        self.sinks: dict[str, Sink] = {}
        self.receivers: dict[str, ReceiverTransform] = {}

    async def connect(self, pool: Pool, receiver_ctx: str = "bob<-alice",
                      attach: bool = True) -> None:
        b = self.b
        loopback_only(self.a)
        await self.a.setLocalDescription(await self.a.createOffer())
        await b.setRemoteDescription(self.a.localDescription)
        for t in b.getTransceivers():
            if attach:
                self.receivers[t.kind] = attach_receiver(t.receiver, pool, receiver_ctx)
            self.sinks[t.kind] = Sink(t.receiver.track)
        loopback_only(b)
        await b.setLocalDescription(await b.createAnswer())
        await self.a.setRemoteDescription(b.localDescription)

    async def close(self) -> None:
        for s in self.sinks.values():
            s.task.cancel()
        await self.a.close()
        await self.b.close()


async def keyed_pool(receiver_key: bytes = KEY) -> Pool:
    pool = Pool(workers=2, placement="pool")
    await pool.start()
    await pool.set_key("alice", KEY)
    await pool.set_key("bob<-alice", receiver_key)
    return pool


def psnrs(frames: list[Any]) -> list[float]:
    return [media.score(f)[1] for f in frames]


def trailer(sealed: bytes) -> tuple[int, int, int, int]:
    """(ssrc, timestamp, counter, key index) from the LiveKit trailer."""
    ssrc, ts, ctr = struct.unpack(">III", sealed[-14:-2])
    assert sealed[-2] == 12
    return ssrc, ts, ctr, sealed[-1]


async def pattern_and_tone_decode(pool: Pool, call: Call, codec: str
                                  ) -> tuple[RecordingSender, RecordingSender]:
    """alice sends the pattern (``codec``) and a 440 Hz tone sealed by ``pool``; bob's
    side decodes the picture (luma PSNR > 35 dB against the frame its barcode names)
    and hears the tone, with no frame failing to open. Returns alice's two senders."""
    tv = call.a.addTransceiver(media.PatternTrack(), "sendonly")
    prefer_codecs(tv, codec)
    ta = call.a.addTransceiver(media.ToneTrack(440.0), "sendonly")
    prefer_codecs(ta)
    sv = RecordingSender(pool, "alice").attach(tv.sender)
    sa = RecordingSender(pool, "alice").attach(ta.sender)
    await call.connect(pool)
    v, a = call.sinks["video"], call.sinks["audio"]
    await wait_until(lambda: len(v.frames) >= 45 and len(a.frames) >= 60, 30,
                     "decoded frames")
    scores = psnrs(v.frames[15:45:3])
    assert min(scores) > 35, scores
    samples = [x for f in a.frames[40:50] for x in media.audio_mono(f)]
    assert media.dominant_hz(samples, candidates=[330.0, 440.0, 550.0]) == 440.0
    assert call.receivers["video"].stats.frames_failed == 0
    return sv, sa


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_video_and_opus_round_trip_through_the_pool(codec: str) -> None:
    async def main() -> None:
        pool = await keyed_pool()
        call = Call()
        try:
            sv, sa = await pattern_and_tone_decode(pool, call, codec)
            assert sv.codec == codec and sa.codec == "opus"
            # every frame on the wire is a LiveKit frame the pure core opens; the IV is
            # ssrc | the pool's epoch | the participant's counter (one sequence for its
            # audio and video): never repeated, in order within each stream
            key = livekit.derive_key(KEY)
            both: list[int] = []
            for rec in (sv, sa):
                ivs = set()
                counters = []
                for plain, sealed, kf in rec.sealed:
                    opened = livekit.unprotect(sealed, key=key, codec=rec.codec or "",
                                               keyframe=kf)
                    assert opened == plain
                    if rec.codec == "h264":  # the trailer is RBSP-escaped with the body
                        sealed = h26x.unescape(sealed)
                    ssrc, _ts, ctr, kid = trailer(sealed)
                    assert ssrc == rec.ssrc and kid == 0
                    ivs.add(sealed[-14:-2])
                    counters.append(ctr)
                assert counters == sorted(counters)
                assert len(ivs) == len(rec.sealed)
                both += counters
            assert sorted(both) == list(range(len(both)))
            assert sv.stats.keyframes_sealed >= 1
            # ICE stayed on loopback
            for pc in (call.a, call.b):
                cands = [ln for ln in pc.localDescription.sdp.splitlines()
                         if ln.startswith("a=candidate:")]
                assert cands and all(" 127.0.0.1 " in c for c in cands)
        finally:
            await call.close()
            await pool.close()

    run(main, timeout=55)


def test_wrong_key_decodes_nothing_and_asks_for_keyframes() -> None:
    async def main() -> None:
        pool = await keyed_pool(receiver_key=WRONG)
        call = Call()
        try:
            tv = call.a.addTransceiver(media.PatternTrack(), "sendonly")
            prefer_codecs(tv, "vp8")
            ta = call.a.addTransceiver(media.ToneTrack(), "sendonly")
            sv = attach_sender(tv.sender, pool, "alice")
            attach_sender(ta.sender, pool, "alice")
            await call.connect(pool)
            rv, ra = call.receivers["video"], call.receivers["audio"]
            await wait_until(lambda: rv.stats.frames_failed >= 40 and
                             ra.stats.frames_failed >= 40 and sv.stats.keyframe_requests >= 5,
                             30, "rejected frames and PLIs")
            assert call.sinks["video"].frames == [] and call.sinks["audio"].frames == []
            assert rv.stats.frames_opened == 0 and ra.stats.frames_opened == 0
            assert set(rv.stats.errors) <= {"AuthenticationFailed", "KeyInvalidated"}
            # aiortc answered the PLIs with keyframes (sealed, so still undecodable)
            assert sv.stats.keyframes_sealed >= 3
        finally:
            await call.close()
            await pool.close()

    run(main, timeout=55)


class PacketTrack(MediaStreamTrack):
    """A pre-encoded VP8 source (``av.Packet``s, as ``MediaPlayer(decode=False)``)."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.codec: Any = av.CodecContext.create("libvpx", "w")
        self.codec.width, self.codec.height = media.WIDTH, media.HEIGHT
        self.codec.pix_fmt = "yuv420p"
        self.codec.time_base = fractions.Fraction(1, 30)
        self.codec.bit_rate = 1_000_000
        self.codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        self.t = 0
        self.start = time.monotonic()
        self.pending: list[Any] = []

    async def recv(self) -> Any:
        while not self.pending:
            wait = self.start + self.t / 30 - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            frame = media.pattern_frame(self.t)
            frame.pts = self.t
            self.t += 1
            self.pending = list(self.codec.encode(frame))
        packet = self.pending.pop(0)
        packet.time_base = fractions.Fraction(1, 30)
        return packet


def test_pre_encoded_packets_are_sealed_on_the_loop() -> None:
    async def main() -> None:
        pool = await keyed_pool()
        call = Call()
        try:
            tv = call.a.addTransceiver(PacketTrack(), "sendonly")
            prefer_codecs(tv, "vp8")
            sv = attach_sender(tv.sender, pool, "alice")
            await call.connect(pool)
            v = call.sinks["video"]
            await wait_until(lambda: len(v.frames) >= 30, 20,
                             lambda: f"decoded frames: {len(v.frames)} {sv!r} {sv.stats} "
                             f"{call.receivers['video'].stats} {pool.stats()['frames_ok']} "
                             f"{call.a.connectionState} {call.b.connectionState}")
            assert min(psnrs(v.frames[10:30:4])) > 35
            assert sv.stats.frames_sealed >= 30 and sv.stats.frames_dropped == 0
            assert call.receivers["video"].stats.frames_failed == 0
        finally:
            await call.close()
            await pool.close()

    run(main, timeout=55)


class NoSeal:
    """A sealer that refuses everything (the pool is gone, timed out, ...)."""

    def __init__(self) -> None:
        self.calls = 0
        self.keyframe_requested = False

    def seal(self, data: bytes, codec: str, keyframe: bool, timestamp: int) -> bytes | None:
        self.calls += 1
        self.keyframe_requested = True
        return None

    def take_keyframe_request(self) -> bool:
        need, self.keyframe_requested = self.keyframe_requested, False
        return need

    def take_sealed_packet(self, packet: av.Packet) -> bool:
        return False

    def negotiated(self, codec: str) -> None:
        pass


def test_a_frame_that_is_not_sealed_is_never_sent() -> None:
    sealer = NoSeal()
    enc = internals.E2EEVp8Encoder(sealer)
    first = media.pattern_frame(0)
    first.pts, first.time_base = 0, fractions.Fraction(1, 90000)
    payloads, _ = enc.encode(first)
    assert payloads == [] and sealer.calls == 1
    # the encoder is told to make the next frame a keyframe (the receiver lost a reference)
    second = media.pattern_frame(1)
    second.pts, second.time_base = 3000, fractions.Fraction(1, 90000)
    sealer.seal = lambda data, codec, kf, ts: (setattr(sealer, "kf", kf), None)[1]  # type: ignore[method-assign]
    enc.encode(second)
    assert sealer.kf is True  # type: ignore[attr-defined]
    # pre-encoded packets the sender's track did not seal are dropped
    assert enc.pack(av.Packet(b"\x00" * 50)) == ([], 0)
    opus = internals.E2EEOpusEncoder(NoSeal())
    assert opus.pack(av.Packet(b"\xf8" * 20)) == ([], 0)


def test_sealing_with_a_closed_pool_drops_the_frame() -> None:
    async def main() -> None:
        pool = await keyed_pool()
        t = SenderTransform(pool, "alice", timeout=5)
        await pool.close()
        loop = asyncio.get_running_loop()
        out = await loop.run_in_executor(None, t.seal, b"\x00" * 100, "vp8", True, 0)
        assert out is None
        assert t.stats.frames_dropped == 1 and t.stats.errors == {"PoolClosed": 1}
        assert t.take_keyframe_request() is True
        # and never on the loop thread (it would deadlock)
        assert t.seal(b"\x00" * 100, "vp8", True, 0) is None

    run(main, timeout=30)


def _aiortc_surface() -> dict[str, Any]:
    import aioice.ice
    import aiortc.codecs
    import aiortc.rtcrtpreceiver
    import aiortc.rtcrtpsender
    from aiortc.codecs.h264 import H264Encoder
    from aiortc.codecs.opus import OpusEncoder

    return {
        "get_encoder": aiortc.codecs.get_encoder,
        "get_decoder": aiortc.codecs.get_decoder,
        "sender.get_encoder": aiortc.rtcrtpsender.get_encoder,
        "receiver.get_decoder": aiortc.rtcrtpreceiver.get_decoder,
        "decoder_worker": aiortc.rtcrtpreceiver.decoder_worker,
        "depayload": aiortc.rtcrtpreceiver.depayload,
        "RTCRtpSender": dict(vars(RTCRtpSender)),
        "RTCRtpReceiver": dict(vars(RTCRtpReceiver)),
        "Vp8Encoder": dict(vars(Vp8Encoder)),
        "H264Encoder": dict(vars(H264Encoder)),
        "OpusEncoder": dict(vars(OpusEncoder)),
        "get_host_addresses": aioice.ice.get_host_addresses,
        "Connection": dict(vars(aioice.ice.Connection)),
    }


def test_hooks_are_per_instance_no_module_is_patched() -> None:
    async def main() -> None:
        before = _aiortc_surface()
        pool = await keyed_pool()
        call = Call()
        try:
            tv = call.a.addTransceiver(media.PatternTrack(), "sendonly")
            prefer_codecs(tv, "vp8")
            attach_sender(tv.sender, pool, "alice")
            await call.connect(pool)
            await wait_until(lambda: len(call.sinks["video"].frames) >= 5, 30, "frames")
            assert _aiortc_surface() == before
            # a peer connection framecrypt was not attached to is plain aiortc
            plain = RTCPeerConnection()
            t = plain.addTransceiver("video")
            assert "send" not in vars(t.sender) and "_send_keyframe" not in vars(t.sender)
            assert t.sender._RTCRtpSender__encoder is None
            assert type(t.receiver._RTCRtpReceiver__decoder_queue).__module__ \
                == "queue"
            await plain.close()
            # attaching twice, or after the connection started, is refused
            with pytest.raises(RuntimeError):
                attach_sender(tv.sender, pool, "alice")
            with pytest.raises(RuntimeError):
                attach_receiver(call.b.getTransceivers()[0].receiver, pool, "x")
        finally:
            await call.close()
            await pool.close()

    run(main, timeout=55)


def test_unsupported_aiortc_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    internals.check()  # the installed one is supported
    monkeypatch.setattr(aiortc, "__version__", "1.17.0")
    with pytest.raises(internals.UnsupportedAiortc, match=r"aiortc 1\.16\.x"):
        internals.check()
    monkeypatch.setattr(aiortc, "__version__", "1.16.2")
    monkeypatch.delattr(Vp8Encoder, "_packetize")
    with pytest.raises(internals.UnsupportedAiortc, match=r"Vp8Encoder\._packetize"):
        internals.check()


def test_prefer_codecs_refuses_what_cannot_be_encrypted() -> None:
    async def main() -> None:
        pc = RTCPeerConnection()
        t = pc.addTransceiver("audio")
        with pytest.raises(ValueError, match="PCMU"):
            prefer_codecs(t, "PCMU")
        prefer_codecs(t)
        await pc.setLocalDescription(await pc.createOffer())
        rtpmaps = [ln for ln in pc.localDescription.sdp.splitlines()
                   if ln.startswith("a=rtpmap:")]
        assert rtpmaps and all("opus/48000" in ln for ln in rtpmaps)
        await pc.close()

    run(main, timeout=30)
