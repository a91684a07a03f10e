"""Two Python members in one E2EE Janus VideoRoom (framecrypt.webrtc.janus).

    python examples/janus_room.py                         # a private Janus, 5 s
    python examples/janus_room.py --url ws://HOST:8188 --room 1234 --ice-address IP

Each member publishes a test pattern (VP8) and a tone (Opus), every frame sealed in the
LiveKit format through a framecrypt pool, and subscribes to the other, opening its
frames before decoding. Janus forwards what it cannot read. The last line printed is a
JSON summary: frames decoded and luma PSNR per direction.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from typing import Any

import av
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from framecrypt import Pool
from framecrypt.demo import media
from framecrypt.webrtc import attach_receiver, attach_sender, local_configuration, prefer_codecs
from framecrypt.webrtc.janus import JanusRoom, RoomOptions
from framecrypt.webrtc.janus_server import JanusServer

ROOM_KEY = b"a 32-byte key shared out of band"  # raw bytes: HKDF, as livekit-client


async def member(name: str, other: str, url: str, room_id: int, ice: str | None,
                 pool: Pool, seconds: float, tone: float) -> dict[str, Any]:
    async with JanusRoom.connect(url, room_id, display=name, ice_address=ice,
                                 create=RoomOptions()) as room:
        pc = RTCPeerConnection(local_configuration())
        tv = pc.addTransceiver(media.PatternTrack(), "sendonly")
        prefer_codecs(tv, "vp8")
        ta = pc.addTransceiver(media.ToneTrack(tone), "sendonly")
        prefer_codecs(ta, "opus")
        attach_sender(tv.sender, pool, name)            # seal with my key
        attach_sender(ta.sender, pool, name)
        await room.publish(pc)

        them = await room.wait_for_publisher(other, timeout=20)
        tracks = []

        def prepare(transceiver: Any, _stream: Any) -> None:  # before we answer Janus
            attach_receiver(transceiver.receiver, pool, f"{name}<-{other}")  # their key
            tracks.append(transceiver.receiver.track)

        await room.subscribe(them.id, prepare=prepare)
        psnrs: list[float] = []

        async def watch(track: Any) -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    frame = await track.recv()
                    if isinstance(frame, av.VideoFrame):
                        psnrs.append(media.score(frame)[1])

        tasks = [asyncio.create_task(watch(t)) for t in tracks]
        await asyncio.sleep(seconds)                    # let the media run
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"from": other, "frames_decoded": len(psnrs),
            "psnr_db": round(sum(psnrs) / len(psnrs), 2) if psnrs else None}


async def main(args: argparse.Namespace) -> None:
    async with contextlib.AsyncExitStack() as stack:
        url, ice = args.url, args.ice_address
        if url is None:                                 # a private Janus on this host
            janus = await stack.enter_async_context(JanusServer())
            url, ice = janus.ws_url, janus.ice_address
        pool = await stack.enter_async_context(Pool(workers=1))
        for ctx in ("alice", "bob", "alice<-bob", "bob<-alice"):
            await pool.set_key(ctx, ROOM_KEY)
        results = await asyncio.gather(
            member("alice", "bob", url, args.room, ice, pool, args.seconds, 440.0),
            member("bob", "alice", url, args.room, ice, pool, args.seconds, 660.0))
    print(json.dumps({"alice": results[0], "bob": results[1]}))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="Janus WebSocket API (default: start a private Janus)")
    p.add_argument("--room", type=int, default=1234)
    p.add_argument("--ice-address", help="gather ICE candidates on this address only")
    p.add_argument("--seconds", type=float, default=5.0)
    asyncio.run(main(p.parse_args()))
