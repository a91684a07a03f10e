"""A real SFU nobody here wrote in the path: Janus 1.1 (Debian) VideoRoom, private per
test (tests/janus_helpers.py), with Python members over framecrypt.webrtc.janus.

Two members publish the test pattern (VP8) and a tone (Opus) sealed in the LiveKit
format through Janus and open each other's frames: the picture and the tone come out;
a member with a wrong key decodes nothing; Janus's own room recording of the sealed
streams, converted by janus-pp-rec, decodes no frame of the pattern, while the
recording of a clear publisher in the same room (the control) does; the same for the
tone on the audio recordings. Keepalives keep a session; silence loses it (JanusClosed).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from janus_helpers import (
    Member,
    janus_server,
    pattern_recovered,
    tone_recovered,
    wait_until,
)
from pool_helpers import run

from framecrypt import Pool
from framecrypt.webrtc.janus import JanusError, JanusRoom, PublisherJoined, RoomOptions
from framecrypt.webrtc.janus_recording import witness
from framecrypt.webrtc.janus_server import JanusServer

__all__ = ["janus_server"]  # the fixture, used by name

pytestmark = pytest.mark.timeout(120)

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
WRONG = bytes(range(1, 33))


def test_private_server_starts_answers_and_is_removed(janus_server: JanusServer) -> None:
    info = janus_server.info()
    assert info["version_string"] == "1.1.2"
    assert set(info["plugins"]) == {"janus.plugin.videoroom"}
    assert set(info["transports"]) == {"janus.transport.http", "janus.transport.websockets"}
    # its own folder: config, log; nothing from /etc/janus
    assert janus_server.workdir is not None
    cfg = (janus_server.workdir / "etc" / "janus.jcfg").read_text()
    assert f'ice_enforce_list = "{janus_server.ice_address}"' in cfg
    assert "stun_server" not in cfg and "turn_server" not in cfg
    assert "Loading plugin 'libjanus_videoroom.so'" in janus_server.log_tail(100_000)
    # a second one, stopped here: process gone, folder removed
    other = JanusServer().start()
    pid, folder = other.pid, other.workdir
    assert pid is not None and folder is not None and folder.is_dir()
    assert other.http_port != janus_server.http_port
    other.stop()
    assert not folder.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_room_errors_and_publisher_events(janus_server: JanusServer) -> None:
    async def main() -> None:
        url = janus_server.ws_url
        with pytest.raises(JanusError) as e:
            async with JanusRoom.connect(url, 999, display="x"):
                pass
        assert e.value.code == 426  # no such room
        opts = RoomOptions()
        async with JanusRoom.connect(url, 7, display="alice", create=opts,
                                     ice_address=janus_server.ice_address) as alice:
            with pytest.raises(JanusError) as e:
                async with JanusRoom.connect(url, 7, create=opts, exist_ok=False):
                    pass
            assert e.value.code == 427  # room exists
            with pytest.raises(JanusError) as e:
                await alice.subscribe(123456789)
            assert e.value.code == 428  # no such feed
            pool = Pool(workers=1)
            await pool.start()
            bob = Member("bob", pool, tone_hz=550.0)
            try:
                await pool.set_key("bob", KEY_B)
                await bob.join(janus_server, 7)
                ev = await alice.next_event(timeout=20)
                assert isinstance(ev, PublisherJoined) and ev.publisher.display == "bob"
                assert [s.type for s in ev.publisher.streams] == ["video", "audio"]
                assert ev.publisher.streams[0].codec == "vp8"
                parts = await alice.list_participants()
                assert {p["display"] for p in parts} == {"alice", "bob"}
                feed = ev.publisher.id
                # a subscription (no receivers attached: nothing is opened) takes a
                # configure (the simulcast layer switch; bob publishes one layer)
                sub = await alice.subscribe(feed)
                assert [s.mid for s in sub.streams] == ["0", "1"]
                await sub.configure(substream=0, temporal=0, mid="0")
            finally:
                await bob.close()
                await pool.close()
            left = await alice.next_event(timeout=10)
            assert left.id == feed  # type: ignore[union-attr]
            assert feed not in alice.publishers

    run(main, timeout=60)


def test_keepalives_keep_a_session_and_silence_loses_it() -> None:
    """Janus drops a session after session_timeout without a request: keepalives keep
    one alive; the other one's next event and request raise JanusClosed."""
    from janus_helpers import require_janus

    from framecrypt.webrtc.errors import JanusClosed

    require_janus()

    async def main() -> None:
        async with JanusServer(session_timeout=3) as j, \
                JanusRoom.connect(j.ws_url, 5, display="kept", create=RoomOptions(),
                                  keepalive_s=1) as kept, \
                JanusRoom.connect(j.ws_url, 5, display="silent", keepalive_s=60) as silent:
            with pytest.raises(JanusClosed, match="timed out"):
                await silent.next_event(timeout=15)
            with pytest.raises(JanusClosed):
                await silent.list_participants()
            parts = await kept.list_participants()
            assert [p["display"] for p in parts] == ["kept"]

    run(main, timeout=30)


def test_e2ee_members_through_janus_and_janus_sees_nothing(janus_server: JanusServer,
                                                           tmp_path: Path) -> None:
    async def main() -> None:
        rec_dir = janus_server.rec_dir
        pool = Pool(workers=1)
        await pool.start()
        for ctx, key in (("alice", KEY_A), ("bob<-alice", KEY_A), ("bob", KEY_B),
                         ("alice<-bob", KEY_B), ("mallory<-alice", WRONG)):
            await pool.set_key(ctx, key)
        alice = Member("alice", pool, tone_hz=440.0, start=0)
        bob = Member("bob", pool, tone_hz=660.0, start=3000)
        carol = Member("carol", pool, tone_hz=880.0, start=6000, seal=False)  # control
        mallory = Member("mallory", pool, tone_hz=0.0, publishes=False)
        members = [alice, bob, carol, mallory]
        try:
            opts = RoomOptions(record=True, rec_dir=str(rec_dir))
            await alice.join(janus_server, 42, create=opts)
            await asyncio.gather(*(m.join(janus_server, 42) for m in members[1:]))
            ab = await alice.subscribe("bob", "alice<-bob")
            ba = await bob.subscribe("alice", "bob<-alice")
            ma = await mallory.subscribe("alice", "mallory<-alice")
            await wait_until(lambda: min(ab.frames, ba.frames) >= 60
                             and min(ab.audio_frames, ba.audio_frames) >= 100, 60,
                             lambda: f"frames ab={ab.frames} ba={ba.frames}")
            feeds = {m.name: m.room.feed_id for m in members if m.room is not None}
            for view, tone in ((ab, 660.0), (ba, 440.0)):
                assert view.video is not None and view.audio is not None
                assert view.video.stats.frames_failed == 0, view.video.stats
                assert min(view.psnrs[2:]) > 30 and sum(view.psnrs) / len(view.psnrs) > 35, \
                    view.psnrs
                assert view.tone_hz([440.0, 550.0, 660.0, 880.0]) == tone
            # the wrong key opens nothing: no picture, no sound, frames rejected
            assert ma.video is not None and ma.audio is not None
            assert ma.frames == 0 and ma.audio_frames == 0
            assert ma.video.stats.frames_opened == 0 and ma.video.stats.frames_failed >= 10
            assert ma.audio.stats.frames_failed >= 50
            print(f"ab: {ab.frames} frames, PSNR {ab.psnrs}; ba: {ba.frames} frames; "
                  f"mallory: {ma.video.stats}")
            sealed = sum(s.stats.frames_sealed for s in alice.senders)
            assert sealed >= 150
        finally:
            for m in reversed(members):
                await m.close()
            await pool.close()
        # Janus's own recording: sealed streams decode no pattern frame and no frame of
        # their tone; carol's clear streams in the same room do (the witness can see
        # when there is something to see); mallory published nothing
        by = {}
        for m in (alice, bob, carol):
            checks = witness(rec_dir, tmp_path / "pp", video_score=pattern_recovered,
                             audio_score=tone_recovered(m.tone_hz),
                             match=f"-user-{feeds[m.name]}-")
            print("\n".join(map(str, checks)))
            assert sorted(c.kind for c in checks) == ["audio", "video"], checks
            by.update({(m.name, c.kind): c for c in checks})
        for name in ("alice", "bob"):
            v, a = by[(name, "video")], by[(name, "audio")]
            assert v.codec == "vp8" and v.packets >= 60 and v.decodable == 0, v
            assert a.codec == "opus" and a.packets >= 100 and a.decodable == 0, a
        v, a = by[("carol", "video")], by[("carol", "audio")]
        assert v.packets >= 60 and v.decodable >= 0.8 * v.packets, v
        assert a.packets >= 100 and a.decodable >= 0.8 * a.packets, a
        assert len(list(rec_dir.glob("*.mjr"))) == 6  # mallory published nothing

    run(main, timeout=110)


def test_h264_room_e2ee(janus_server: JanusServer) -> None:
    """An H.264 room: the sealed frames (clear NAL headers, RBSP-escaped ciphertext)
    survive Janus's H.264 handling and open on the other side; a wrong key opens none."""

    async def main() -> None:
        pool = Pool(workers=1)
        await pool.start()
        for ctx, key in (("alice", KEY_A), ("bob<-alice", KEY_A),
                         ("mallory<-alice", WRONG)):
            await pool.set_key(ctx, key)
        alice = Member("alice", pool, tone_hz=440.0, video_codec="h264")
        bob = Member("bob", pool, tone_hz=0.0, publishes=False)
        mallory = Member("mallory", pool, tone_hz=0.0, publishes=False)
        try:
            await alice.join(janus_server, 264, create=RoomOptions(videocodec="h264"))
            await bob.join(janus_server, 264)
            await mallory.join(janus_server, 264)
            pub = await bob.room.wait_for_publisher("alice", timeout=20)  # type: ignore[union-attr]
            assert pub.streams[0].codec == "h264"
            ba = await bob.subscribe("alice", "bob<-alice")
            ma = await mallory.subscribe("alice", "mallory<-alice")
            await wait_until(lambda: ba.frames >= 45, 40, lambda: f"{ba.frames} frames")
            assert ba.video is not None and ba.video.stats.frames_failed == 0
            assert min(ba.psnrs[2:]) > 30, ba.psnrs
            assert ma.frames == 0 and ma.video is not None and ma.video.stats.frames_failed > 0
        finally:
            for m in (mallory, bob, alice):
                await m.close()
            await pool.close()

    run(main, timeout=90)


# ---- a hostile or broken server: typed errors, nothing hangs (no Janus needed) ----------


async def _fake_janus(script: list[object]) -> tuple[object, str]:
    """A WebSocket server on 127.0.0.1 that answers the n-th request with script[n]:
    a dict (sent with the request's transaction), bytes/str (sent as is), None (no
    answer), or "close" (closes the connection)."""
    import json

    from websockets.asyncio.server import ServerConnection, serve

    async def handler(ws: ServerConnection) -> None:
        n = 0
        async for raw in ws:
            req = json.loads(raw)
            step = script[min(n, len(script) - 1)]
            n += 1
            if step == "close":
                await ws.close()
                return
            if isinstance(step, dict):
                await ws.send(json.dumps({**step, "transaction": req["transaction"]}))
            elif isinstance(step, str | bytes):
                await ws.send(step)

    server = await serve(handler, "127.0.0.1", 0, subprotocols=["janus-protocol"])
    port = next(iter(server.sockets)).getsockname()[1]
    return server, f"ws://127.0.0.1:{port}"


CREATED = {"janus": "success", "data": {"id": 1}}
ATTACHED = {"janus": "success", "data": {"id": 2}}


@pytest.mark.parametrize("case", ["not json", "no type", "bad id", "core error",
                                  "plugin error", "silence", "close", "bad jsep",
                                  "bad publishers", "too many publishers"])
def test_hostile_server_replies_are_typed_errors(case: str) -> None:
    from framecrypt.webrtc.errors import (
        JanusClosed,
        JanusProtocolError,
        JanusTimeout,
    )

    joined = {"janus": "event", "plugindata": {"plugin": "janus.plugin.videoroom",
                                               "data": {"videoroom": "joined", "id": 5}}}
    scripts: dict[str, tuple[list[object], type[Exception], int | None]] = {
        "not json": (["{nope"], JanusProtocolError, None),
        "no type": (['{"transaction": "x"}'], JanusProtocolError, None),
        "bad id": ([{"janus": "success", "data": {"id": "1"}}], JanusProtocolError, None),
        "core error": ([{"janus": "error", "error": {"code": 403, "reason": "no"}}],
                       JanusError, 403),
        "plugin error": ([CREATED, ATTACHED, {"janus": "event", "plugindata": {
            "plugin": "janus.plugin.videoroom",
            "data": {"videoroom": "event", "error_code": 426, "error": "No such room"}}}],
            JanusError, 426),
        "silence": ([CREATED, ATTACHED, None], JanusTimeout, None),
        "close": ([CREATED, ATTACHED, "close"], JanusClosed, None),
        "bad jsep": ([CREATED, ATTACHED, {**joined, "jsep": {"type": "pranswer",
                                                             "sdp": "v=0"}}],
                     JanusProtocolError, None),
        "bad publishers": ([CREATED, ATTACHED, {"janus": "event", "plugindata": {
            "plugin": "janus.plugin.videoroom", "data": {
                "videoroom": "joined", "id": 5, "publishers": [{"id": "x"}]}}}],
            JanusProtocolError, None),
        "too many publishers": ([CREATED, ATTACHED, {"janus": "event", "plugindata": {
            "plugin": "janus.plugin.videoroom", "data": {
                "videoroom": "joined", "id": 5,
                "publishers": [{"id": i} for i in range(10, 5010)]}}}],
            JanusProtocolError, None),
    }
    script, expected, code = scripts[case]

    async def main() -> None:
        server, url = await _fake_janus(script)
        try:
            with pytest.raises(expected) as e:
                async with JanusRoom.connect(url, 1, display="x", timeout=1.5):
                    pass
            assert isinstance(e.value, JanusError) and e.value.code == code
            assert "sdp" not in str(e.value).lower() or case == "bad jsep"
        finally:
            server.close()  # type: ignore[attr-defined]
            await server.wait_closed()  # type: ignore[attr-defined]

    run(main, timeout=20)


def test_unreachable_server_is_a_typed_error() -> None:
    from framecrypt.webrtc.errors import JanusClosed
    from framecrypt.webrtc.janus_server import free_port

    async def main() -> None:
        with pytest.raises(JanusClosed):
            async with JanusRoom.connect(f"ws://127.0.0.1:{free_port()}", 1, timeout=2):
                pass

    run(main, timeout=10)
