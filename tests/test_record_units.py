"""The recorder's parts without a room: the muxer (H.264 into Matroska with the
stream's own codec parameters, VP8 + Opus into WebM, buffering until both tracks are
known, timestamps that go back), RTP timestamp unwrapping and gaps, the key file's
validation and reloading, the manifest schema, and that no key reaches a repr."""

from __future__ import annotations

import asyncio
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest
from record_helpers import decode_file, dominant_hz

from framecrypt.demo import media
from framecrypt.record import KeyFile, KeyFileError
from framecrypt.record.keyfile import parse
from framecrypt.record.manifest import SCHEMA, VERSION, build, validate
from framecrypt.record.muxer import OPEN_GRACE_S, Packet, ParticipantFile, safe_name, vp8_size
from framecrypt.record.tracks import ParticipantState, TrackState

pytestmark = pytest.mark.timeout(60)


def _encode_video(codec: str, n: int) -> list[tuple[bytes, bool]]:
    enc = av.CodecContext.create(codec, "w")
    enc.width, enc.height, enc.pix_fmt = media.WIDTH, media.HEIGHT, "yuv420p"
    enc.time_base = Fraction(1, 30)
    if codec == "libx264":
        enc.options = {"tune": "zerolatency", "preset": "ultrafast"}
        enc.profile = "Baseline"
    out = []
    for t in range(n):
        f = media.pattern_frame(t)
        f.pts = t
        out += [(bytes(p), bool(p.is_keyframe)) for p in enc.encode(f)]
    return out + [(bytes(p), bool(p.is_keyframe)) for p in enc.encode(None)]


def _encode_opus(n: int, hz: float) -> list[bytes]:
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format = 48000, "mono", "s16"
    enc.time_base = Fraction(1, 48000)
    out = []
    for i in range(n):
        fr = av.AudioFrame(format="s16", layout="mono", samples=960)
        fr.planes[0].update(media.tone_samples(i * 960, 960, hz))
        fr.sample_rate, fr.pts = 48000, i * 960
        out += [bytes(p) for p in enc.encode(fr)]
    return out


def test_h264_goes_into_matroska_with_its_own_parameters(tmp_path: Path) -> None:
    frames = _encode_video("libx264", 30)
    f = ParticipantFile(tmp_path, "alice", 1, ("video",), 0.0)
    for i, (data, key) in enumerate(frames):
        assert f.add(Packet("video", "h264", data, i * 3000, key), 0.0)
    f.close()
    assert f.path == tmp_path / "alice.mkv" and f.container_format == "matroska"
    with av.open(str(f.path)) as c:
        cc = c.streams.video[0].codec_context
        # avcC built from the stream's SPS/PPS (profile 66: Baseline), not an encoder's
        assert cc.extradata is not None and cc.extradata[0] == 1 and cc.extradata[1] == 66
        pictures = list(c.decode(video=0))
    assert len(pictures) == len(frames) == f.frames["video"]
    assert min(media.score(p)[1] for p in pictures) > 35


def test_vp8_and_opus_into_webm_buffered_until_both_tracks_start(tmp_path: Path) -> None:
    video, audio = _encode_video("libvpx", 30), _encode_opus(50, 660.0)
    assert vp8_size(video[0][0]) == (media.WIDTH, media.HEIGHT) and vp8_size(video[1][0]) is None
    f = ParticipantFile(tmp_path, "bob/../x", 2, ("video", "audio"), 0.0)
    for i, (data, key) in enumerate(video):
        f.add(Packet("video", "vp8", data, 100_000 + i * 3000, key), 0.1)
    assert not f.is_open  # the audio track has not started yet
    for i, data in enumerate(audio):
        f.add(Packet("audio", "opus", data, 48_000 + i * 960, False), 0.2)
    assert f.is_open
    # a frame whose timestamp goes back is refused, not muxed
    assert not f.add(Packet("audio", "opus", audio[0], 48_000, False), 0.3)
    f.close()
    assert f.path is not None and f.path.name == "bob_.._x.2.webm"
    d = decode_file(f.path)
    assert len(d["video"]) == 30 and min(d["video"]) > 35
    assert abs(dominant_hz(d["audio"], d["rate"]) - 660.0) < 5
    assert f.frames == {"video": 30, "audio": 50}


def test_a_file_cut_short_plays_up_to_its_last_cluster(tmp_path: Path) -> None:
    """What a SIGKILL leaves (no trailer): clusters of <= 1 s are flushed as they
    complete, so all but about the last second decodes."""
    import shutil

    video = _encode_video("libvpx", 90)  # 3 s at 30 fps
    f = ParticipantFile(tmp_path, "dave", 1, ("video",), 0.0)
    for i, (data, key) in enumerate(video):
        f.add(Packet("video", "vp8", data, i * 3000, key), 0.0)
    assert f.path is not None
    cut = tmp_path / "cut.webm"
    shutil.copy(f.path, cut)  # the file as it is on disk while recording
    f.close()
    d = decode_file(cut)
    assert len(d["video"]) >= 90 - 31 and min(d["video"]) > 35


def test_a_lone_track_opens_the_file_after_the_grace_period(tmp_path: Path) -> None:
    audio = _encode_opus(5, 440.0)
    f = ParticipantFile(tmp_path, "carol", 1, ("video", "audio"), 10.0)
    f.add(Packet("audio", "opus", audio[0], 0, False), 10.0)
    f.maybe_open(10.0 + OPEN_GRACE_S / 2)
    assert not f.is_open
    f.maybe_open(10.0 + OPEN_GRACE_S)
    assert f.is_open
    # video that starts after the header cannot join this file
    assert not f.add(Packet("video", "vp8", b"\x00" * 20, 0, True), 11.5)
    assert f.late_track == 1
    f.close()
    f.close()  # idempotent


def test_safe_names() -> None:
    assert safe_name("alice") == "alice"
    assert safe_name("../../etc/passwd") == "_.._etc_passwd"
    assert safe_name("") == "participant" and len(safe_name("x" * 500)) == 64


def test_rtp_timestamps_unwrap_and_gaps() -> None:
    t = TrackState("audio", "opus")
    start = 0xFFFFFFFF - 960 * 2
    pts = [t.place((start + 960 * i) & 0xFFFFFFFF, 0.5) for i in range(5)]
    assert pts == [24000 + 960 * i for i in range(5)]  # across the 32-bit wrap
    assert t.step_s((start + 960 * 4 + 48000) & 0xFFFFFFFF) == pytest.approx(1.0)
    t.restart()
    assert t.place(5, 0.0) == 0 and not t.waiting_keyframe
    v = TrackState("video", "vp8")
    assert v.waiting_keyframe and v.clock == 90000
    g = v.open_gap(1.0, "frames rejected")
    assert v.open_gap(1.2, "frames rejected") is g  # one gap while it lasts
    v.close_gap(2.0)
    assert g.as_dict() == {"start_s": 1.0, "end_s": 2.0, "reason": "frames rejected",
                           "frames": 0}


def test_manifest_schema() -> None:
    p = ParticipantState("alice", 0.5)
    p.track("video", "vp8").frames_rejected["AuthenticationFailed"] = 3
    m = build(started_wall=0.0, ended_wall=2.0, duration_s=2.0, stopped="duration",
              source="relay", address="127.0.0.1:1", fmt="livekit",
              participants={"alice": p})
    assert validate(m) == []
    assert m["schema"] == SCHEMA and m["version"] == VERSION == 1
    assert m["started_at"] == "1970-01-01T00:00:00.000+00:00"
    assert m["totals"]["frames_rejected"] == 3
    assert m["participants"]["alice"]["frames_rejected"] == {"AuthenticationFailed": 3}
    assert validate({"schema": "x"})[:2] == ["schema", "version"]


@pytest.mark.parametrize("text, reason", [
    ("[", "not valid JSON"),
    ("[]", "the top level must be an object"),
    ('{"default": {}}', "default must be a list"),
    ('{"default": [{"index": 300, "passphrase": "p"}]}', "default[0].index"),
    ('{"default": [{"index": 0}]}', "needs a passphrase or key_hex"),
    ('{"default": [{"key_hex": "zz"}]}', "key_hex is not hex"),
    ('{"participants": []}', "participants must be an object"),
])
def test_key_file_validation(text: str, reason: str) -> None:
    with pytest.raises(KeyFileError) as e:
        parse(text)
    assert reason in str(e.value)


def test_key_file_sets_what_changed_and_never_shows_keys(tmp_path: Path) -> None:
    secret = "aa" * 32
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"default": [{"index": 0, "passphrase": "s3cret pass"}],
                                "participants": {"bob": [{"index": 2, "key_hex": secret}]}}))
    default, parts = parse(path.read_text())
    assert "s3cret" not in repr(default) and secret not in repr(parts)

    class FakePool:
        def __init__(self) -> None:
            self.calls: list[tuple[str, int]] = []

        async def set_key(self, participant: str, material: Any, index: int = 0) -> None:
            self.calls.append((participant, index))

    pool = FakePool()
    kf = KeyFile(path, pool, ["alice", "bob"], key_name=lambda p: f"rec<-{p}")  # type: ignore[arg-type]
    assert asyncio.run(kf.load()) == 2
    assert pool.calls == [("rec<-alice", 0), ("rec<-bob", 2)]
    assert asyncio.run(kf.load()) == 0  # nothing changed: no key reset
    path.write_text(json.dumps({"default": [{"index": 0, "passphrase": "other"}],
                                "participants": {"bob": [{"index": 2, "key_hex": secret}]}}))
    assert asyncio.run(kf.load()) == 1 and pool.calls[-1] == ("rec<-alice", 0)
    assert "s3cret" not in repr(kf)


def test_a_detached_participants_late_frames_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames still coming from a receiver after the room said the publisher left must
    not reach the recorder (they reopened the file as a second part in a CI run); a new
    subscription for the same name (it came back) is tapped again."""
    from framecrypt.record import taps
    from framecrypt.record.source import EncodedFrame

    installed: list[Any] = []
    monkeypatch.setattr(taps._ai, "install_tap", lambda receiver, fn: installed.append(fn))

    class Sink:
        def __init__(self) -> None:
            self.frames: list[EncodedFrame] = []

        def on_frame(self, frame: EncodedFrame) -> None:
            self.frames.append(frame)

        def on_left(self, participant: str) -> None:
            raise AssertionError("not called here")

    async def main() -> None:
        src, sink = taps.TappedSource(), Sink()
        src._attach(object(), sink, "bob", "video")  # type: ignore[arg-type]
        src._attach(object(), sink, "alice", "video")  # type: ignore[arg-type]
        installed[0]("video/vp8", b"\x10\x00", 1)
        src._detach("bob")
        installed[0]("video/vp8", b"\x10\x00", 2)  # late: dropped
        installed[1]("video/vp8", b"\x10\x00", 3)  # alice is untouched
        src._attach(object(), sink, "bob", "video")  # type: ignore[arg-type]
        installed[2]("video/vp8", b"\x10\x00", 4)  # bob is back
        assert [(f.participant, f.timestamp) for f in sink.frames] == \
            [("bob", 1), ("alice", 3), ("bob", 4)]
        assert ("bob", "video") in src._receivers

    asyncio.run(main())
