"""``framecrypt record`` in a real Janus VideoRoom (a private Janus per test, loopback
config, stopped and removed afterwards): Python members publish sealed VP8 + Opus, the
recorder subscribes to every publisher (one joins while it records, one leaves), opens
the frames and writes files that play; Janus's own recording of the same room, turned
into WebM by ``janus-pp-rec``, decodes to no frame of the pattern."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from record_helpers import decode_file, dominant_hz

from framecrypt.demo import media

pytestmark = pytest.mark.timeout(150)

NAMES = ("alice", "bob", "carol")
TONES = {"alice": 440.0, "bob": 660.0, "carol": 880.0}
STARTS = {"alice": 1000, "bob": 3000, "carol": 5000}


@pytest.fixture
def janus() -> Iterator[Any]:
    from framecrypt.webrtc.janus_server import JanusServer, janus_unavailable

    reason = janus_unavailable()
    if reason is not None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"Janus unavailable in CI: {reason}", pytrace=False)
        pytest.skip(f"Janus unavailable: {reason}")
    server = JanusServer(session_timeout=30).start()
    try:
        yield server
    finally:
        print("---- janus.log (tail) ----\n" + server.log_tail())
        server.stop()


class Publisher:
    """A Python member that only publishes (sealed with its own pool participant)."""

    def __init__(self, name: str, pool: Any) -> None:
        self.name, self.pool = name, pool
        self.stack = contextlib.AsyncExitStack()
        self.senders: list[Any] = []

    async def join(self, server: Any, room_id: int, create: Any = None) -> None:
        from aiortc import RTCPeerConnection

        from framecrypt.webrtc import attach_sender, local_configuration, prefer_codecs
        from framecrypt.webrtc.janus import JanusRoom

        room = await self.stack.enter_async_context(JanusRoom.connect(
            server.ws_url, room_id, display=self.name, create=create,
            ice_address=server.ice_address))
        pc = RTCPeerConnection(local_configuration())
        tv = pc.addTransceiver(media.PatternTrack(fps=15, start=STARTS[self.name]), "sendonly")
        prefer_codecs(tv, "vp8")
        ta = pc.addTransceiver(media.ToneTrack(TONES[self.name]), "sendonly")
        prefer_codecs(ta, "opus")
        self.senders = [attach_sender(tv.sender, self.pool, self.name),
                        attach_sender(ta.sender, self.pool, self.name)]
        await room.publish(pc)

    async def leave(self) -> None:
        await self.stack.aclose()


def test_record_janus_room_join_leave_and_janus_sees_nothing(janus: Any,
                                                            tmp_path: Path) -> None:
    from framecrypt import Pool
    from framecrypt.record import Recorder
    from framecrypt.record.janus_source import JanusSource
    from framecrypt.webrtc.janus import RoomOptions
    from framecrypt.webrtc.janus_recording import witness

    keys = {n: secrets.token_bytes(32) for n in NAMES}
    out = tmp_path / "rec"

    async def main() -> tuple[dict[str, Any], dict[str, float]]:
        marks: dict[str, float] = {}
        async with Pool(workers=1, placement="pool", livekit__failure_tolerance=-1) as pool:
            for n in NAMES:
                await pool.set_key(n, keys[n])
                await pool.set_key(f"rec<-{n}", keys[n])
            pubs = {n: Publisher(n, pool) for n in NAMES}
            create = RoomOptions(record=True, rec_dir=str(janus.rec_dir))
            await pubs["alice"].join(janus, 77, create)
            await pubs["bob"].join(janus, 77)
            source = JanusSource(janus.ws_url, 77, ice_address=janus.ice_address)
            rec = Recorder(pool, source, out, key_name=lambda p: f"rec<-{p}")
            stop = asyncio.Event()

            async def drive() -> None:
                t0 = time.monotonic()
                await asyncio.sleep(3)
                await pubs["carol"].join(janus, 77)  # joins while recording
                marks["carol_joined"] = time.monotonic() - t0
                await asyncio.sleep(3)
                await pubs["bob"].leave()  # leaves while recording
                marks["bob_left"] = time.monotonic() - t0
                await asyncio.sleep(3)
                stop.set()

            try:
                d = asyncio.create_task(drive())
                manifest = await asyncio.wait_for(rec.run(stop=stop), 90)
                await d
            finally:
                for p in pubs.values():
                    await p.leave()
            return manifest, marks

    from pool_helpers import run

    manifest, marks = run(main, timeout=120)
    assert manifest["room"]["source"] == "janus" and manifest["stopped"] == "interrupted"
    assert sorted(manifest["participants"]) == list(NAMES)
    for name, p in manifest["participants"].items():
        assert p["frames_rejected"] == {}, (name, p)
        assert len(p["files"]) == 1, (name, p["files"])
        f = p["files"][0]
        d = decode_file(out / f["path"])
        assert len(d["video"]) == f["tracks"]["video"]["frames"] >= 30, (name, f)
        assert min(d["video"]) >= 35.0, (name, min(d["video"]))
        assert all(STARTS[name] <= t < STARTS[name] + 1000 for t in d["indices"])
        assert abs(dominant_hz(d["audio"], d["rate"]) - TONES[name]) < 5
    bob, carol = manifest["participants"]["bob"], manifest["participants"]["carol"]
    assert bob["left_at_s"] is not None and bob["left_at_s"] < marks["bob_left"] + 1.0
    assert carol["joined_at_s"] > marks["carol_joined"] - 1.0
    assert manifest["participants"]["alice"]["left_at_s"] is None
    # Janus's own recording of the same room: sealed frames, nothing of the pattern
    checks = witness(janus.rec_dir, tmp_path / "pp",
                     video_score=lambda fr: media.score(fr)[1] >= 30.0)
    video = [c for c in checks if c.kind == "video"]
    assert len(video) == 3 and all(c.packets >= 30 for c in video), checks
    assert sum(c.decodable for c in video) == 0, checks
