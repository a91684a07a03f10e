"""The recorder's session logic with a scripted room source (no network; frames sealed
in a real pool): a track that starts after the header (a new part), a tampered frame
(rejected by reason, a gap, a PLI, delta frames skipped until the next keyframe), a
wrong key (nothing written), a participant that goes silent (its file finished) and
comes back (a new part), a timestamp jump (a gap); every file decodes to its counts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from record_helpers import decode_file
from test_record_units import _encode_opus

from framecrypt import Pool
from framecrypt.frame import Frame
from framecrypt.record import Recorder
from framecrypt.record import muxer as muxer_mod
from framecrypt.record.manifest import validate
from framecrypt.record.source import EncodedFrame, FrameSink

pytestmark = pytest.mark.timeout(90)

KEY = b"\x07" * 32


def _vp8_with_keyframes(n: int, keyframes: set[int]) -> list[tuple[bytes, bool]]:
    """The pattern in VP8, a keyframe at each index of ``keyframes`` (as a PLI gets)."""
    from fractions import Fraction

    import av

    from framecrypt.demo import media

    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = media.WIDTH, media.HEIGHT, "yuv420p"
    enc.time_base = Fraction(1, 30)
    out = []
    for t in range(n):
        f = media.pattern_frame(t)
        f.pts = t
        if t in keyframes:
            f.pict_type = av.video.frame.PictureType.I
        out += [(bytes(p), bool(p.is_keyframe)) for p in enc.encode(f)]
    return out


class ScriptedSource:
    kind = "scripted"
    address = "in-process"

    def __init__(self) -> None:
        self.sink: FrameSink | None = None
        self.plis: list[tuple[str, str]] = []
        self.started = asyncio.Event()
        self.ended = asyncio.Event()

    async def start(self, sink: FrameSink) -> None:
        self.sink = sink
        self.started.set()

    def request_keyframe(self, participant: str, kind: str) -> None:
        self.plis.append((participant, kind))

    async def wait_closed(self) -> str:
        await self.ended.wait()
        return "scripted end"

    async def close(self) -> None:
        self.ended.set()


async def _until(cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_session_parts_rejections_gaps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(muxer_mod, "OPEN_GRACE_S", 0.05)
    video = _vp8_with_keyframes(40, {0, 20, 35})
    opus = _encode_opus(120, 440.0)
    assert [i for i, (_d, k) in enumerate(video) if k] == [0, 20, 35]

    async def main() -> tuple[dict[str, Any], ScriptedSource]:
        async with Pool(workers=1, placement="inline",
                        livekit__failure_tolerance=-1) as pool:
            for ctx in ("alice>", "alice", "bob>"):
                await pool.set_key(ctx, KEY)
            await pool.set_key("bob", b"\x08" * 32)  # not bob's key
            src = ScriptedSource()
            rec = Recorder(pool, src, tmp_path, idle_timeout_s=0.6)
            stop = asyncio.Event()
            task = asyncio.create_task(rec.run(stop=stop))
            await src.started.wait()
            assert src.sink is not None
            sink = src.sink

            async def feed(who: str, kind: str, codec: str, data: bytes, ts: int,
                           tamper: bool = False) -> None:
                sealed = await pool.encrypt(f"{who}>", Frame(
                    data, codec, keyframe=codec == "vp8" and not data[0] & 1,
                    ssrc=1 if kind == "video" else 2, timestamp=ts))
                if tamper:
                    sealed = sealed[:12] + bytes([sealed[12] ^ 1]) + sealed[13:]
                sink.on_frame(EncodedFrame(who, kind, codec, sealed, ts, time.monotonic()))

            a = 0  # audio frames fed
            for _ in range(10):  # audio alone: the first part opens with audio only
                await feed("alice", "audio", "opus", opus[a], a * 960)
                a += 1
            await _until(lambda: rec._files["alice"].is_open)
            for i in range(20):  # video starts late: a new part with both tracks
                await feed("alice", "video", "vp8", video[i][0], 90000 + i * 3000,
                           tamper=(i == 10))
                await feed("alice", "audio", "opus", opus[a], a * 960)
                a += 1
            # what followed the tampered frame was skipped until this keyframe (the PLI's)
            for i in range(20, 30):
                await feed("alice", "video", "vp8", video[i][0], 90000 + i * 3000)
            # audio jumps by 1 s: a gap
            a += 50
            for _ in range(10):
                await feed("alice", "audio", "opus", opus[a], a * 960)
                a += 1
            for i in range(5):  # bob's frames do not open here
                await feed("bob", "video", "vp8", video[i][0], i * 3000)
            await _until(lambda: rec._inflight == 0)
            # alice goes silent: her file is finished, then she comes back (a new part)
            await _until(lambda: rec.participants["alice"].left_at_s is not None, 5)
            for _ in range(3):
                await feed("alice", "audio", "opus", opus[a], a * 960)
                a += 1
            await feed("alice", "video", "vp8", video[35][0], 900000)
            await _until(lambda: rec._inflight == 0)
            stop.set()
            return await task, src

    from pool_helpers import run

    m, src = run(main, timeout=60)
    assert validate(m) == [] and m["stopped"] == "interrupted"
    alice, bob = m["participants"]["alice"], m["participants"]["bob"]
    files = [f["path"] for f in alice["files"]]
    assert files == ["alice.webm", "alice.2.webm", "alice.3.webm"], alice["files"]
    assert set(alice["files"][0]["tracks"]) == {"audio"}
    assert set(alice["files"][1]["tracks"]) == {"audio", "video"}
    v = alice["tracks"]["video"]
    assert v["frames_rejected"] == {"AuthenticationFailed": 1}
    assert v["frames_skipped"] == 9  # deltas 11..19 after the tampered frame 10
    assert v["keyframe_requests"] == 1 and src.plis.count(("alice", "video")) == 1
    assert ("bob", "video") in src.plis  # bob's rejected video asks for keyframes too
    reasons = [g["reason"] for g in v["gaps"]]
    assert reasons == ["frames rejected"], v["gaps"]
    assert v["gaps"][0]["frames"] == 10  # the rejected frame and the 9 skipped
    au = alice["tracks"]["audio"]
    assert [g["reason"] for g in au["gaps"]] == ["timestamp jump"]
    assert au["gaps"][0]["end_s"] - au["gaps"][0]["start_s"] == pytest.approx(1.0, abs=0.05)
    assert alice["left_at_s"] is None  # back at the end
    for f in alice["files"]:
        d = decode_file(tmp_path / f["path"])
        assert len(d["video"]) == f["tracks"].get("video", {}).get("frames", 0)
        assert all(p > 35 for p in d["video"])
    # 10 video frames opened in part 2 before the tampered one, the keyframe, 9 deltas
    assert alice["files"][1]["tracks"]["video"]["frames"] == 10 + 1 + 9
    assert alice["frames_written"] == sum(sum(t["frames"] for t in f["tracks"].values())
                                          for f in alice["files"])
    # the wrong key: rejected, nothing written, no file
    assert bob["frames_written"] == 0 and bob["files"] == []
    assert sum(bob["frames_rejected"].values()) == 5
    assert not list(tmp_path.glob("bob*"))


def test_video_after_a_timestamp_jump_waits_for_a_keyframe(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames lost without a trace (no rejected frame, just a jump in the RTP timestamps):
    the delta frames after the jump refer to pictures the file lacks, so they are skipped
    and a keyframe requested; the file decodes whole."""
    monkeypatch.setattr(muxer_mod, "OPEN_GRACE_S", 0.05)
    video = _vp8_with_keyframes(60, {0, 45})

    async def main() -> tuple[dict[str, Any], ScriptedSource]:
        async with Pool(workers=1, placement="inline") as pool:
            await pool.set_key("carol>", KEY)
            await pool.set_key("carol", KEY)
            src = ScriptedSource()
            rec = Recorder(pool, src, tmp_path, idle_timeout_s=5.0)
            stop = asyncio.Event()
            task = asyncio.create_task(rec.run(stop=stop))
            await src.started.wait()
            assert src.sink is not None
            for i in [*range(0, 20), *range(40, 50)]:  # 20..39 lost: a 0.67 s jump
                data = video[i][0]
                sealed = await pool.encrypt("carol>", Frame(
                    data, "vp8", keyframe=video[i][1], ssrc=1, timestamp=i * 3000))
                src.sink.on_frame(EncodedFrame("carol", "video", "vp8", sealed, i * 3000,
                                               time.monotonic()))
            await _until(lambda: rec._inflight == 0)
            stop.set()
            return await task, src

    from pool_helpers import run

    m, src = run(main, timeout=60)
    v = m["participants"]["carol"]["tracks"]["video"]
    assert v["frames_skipped"] == 5  # deltas 40..44, until keyframe 45
    assert src.plis == [("carol", "video")]
    assert [g["reason"] for g in v["gaps"]] == ["waiting for keyframe", "timestamp jump"]
    f = m["participants"]["carol"]["files"][0]
    assert f["tracks"]["video"]["frames"] == 20 + 5
    d = decode_file(tmp_path / f["path"])
    assert len(d["video"]) == 25 and all(p > 35 for p in d["video"])
