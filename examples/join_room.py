"""Join an end-to-end encrypted room from Python (aiortc + framecrypt).

The room is the demo's untrusted relay: it forwards frames it cannot read. Start it,
then one process per participant, all on this machine:

    python -m framecrypt.demo.relay --senders alice,bob --port 7000 &
    python examples/join_room.py alice --room alice,bob --relay 127.0.0.1:7000 &
    python examples/join_room.py bob   --room alice,bob --relay 127.0.0.1:7000

Each participant sends a test pattern (VP8) and a tone (Opus), sealed with its key in
the LiveKit frame format, and opens what the others send with the shared passphrase
(PBKDF2, as livekit-client's ``createKeyMaterialFromString``). With a different
``--passphrase`` a participant decodes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from framecrypt import Pool
from framecrypt.demo import media
from framecrypt.webrtc import (
    attach_receiver,
    attach_sender,
    local_configuration,
    loopback_only,
    prefer_codecs,
)


async def signal_relay(relay: str, message: dict[str, Any]) -> dict[str, Any]:
    """One JSON line to the relay, one back (the demo relay's signaling)."""
    host, port = relay.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(json.dumps(message).encode() + b"\n")
    await writer.drain()
    reply: dict[str, Any] = json.loads(await reader.readline())
    writer.close()
    return reply


async def count_frames(track: MediaStreamTrack, seen: dict[str, Any]) -> None:
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        seen["frames"] += 1
        if track.kind == "video" and seen["frames"] % 30 == 0:
            seen["psnr"] = media.score(frame)[1]  # the pattern carries its frame index


async def main(args: argparse.Namespace) -> None:
    me, room = args.name, args.room.split(",")
    others = [p for p in room if p != me]
    async with Pool(workers=2) as pool:
        # One key context per sender: mine seals what I send; "me<-bob" opens bob's
        # frames. A str is a passphrase (PBKDF2), bytes a raw key (HKDF).
        await pool.set_key(me, args.passphrase)
        for other in others:
            await pool.set_key(f"{me}<-{other}", args.passphrase)

        pc = RTCPeerConnection(local_configuration())
        video = pc.addTransceiver(media.PatternTrack(start=1000 * room.index(me)), "sendonly")
        audio = pc.addTransceiver(media.ToneTrack(440.0 + 110 * room.index(me)), "sendonly")
        prefer_codecs(video, "vp8")  # only codecs framecrypt can seal: VP8, H.264, Opus
        prefer_codecs(audio, "opus")
        attach_sender(video.sender, pool, me)  # every frame sealed before packetization
        attach_sender(audio.sender, pool, me)
        seen: dict[str, dict[str, Any]] = {}
        for other in others:  # the relay expects one video + audio slot per other sender
            for kind in ("video", "audio"):
                t = pc.addTransceiver(kind, "recvonly")
                prefer_codecs(t)
                # opened before decoding; a frame that fails is dropped and a PLI sent
                attach_receiver(t.receiver, pool, f"{me}<-{other}")
                seen[f"{other}/{kind}"] = {"frames": 0, "psnr": None, "receiver": t.receiver}

        loopback_only(pc)  # this example stays on 127.0.0.1
        await pc.setLocalDescription(await pc.createOffer())
        offer = {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
        answer = (await signal_relay(args.relay, {"op": "join", "name": me, "sends": True,
                                                  "offer": offer}))["answer"]
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        tasks = [asyncio.create_task(count_frames(s["receiver"].track, s))
                 for s in seen.values()]

        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            await asyncio.sleep(1.0)
            print(f"{me}: " + ", ".join(
                f"{k} {s['frames']}" + (f" ({s['psnr']:.1f} dB)" if s["psnr"] else "")
                for k, s in seen.items()), flush=True)
        for t in tasks:
            t.cancel()
        await pc.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name")
    p.add_argument("--room", required=True, help="the relay's roster, e.g. alice,bob")
    p.add_argument("--relay", default="127.0.0.1:7000", help="the relay's host:port")
    p.add_argument("--passphrase", default="correct horse battery staple")
    p.add_argument("--seconds", type=float, default=10.0)
    asyncio.run(main(p.parse_args()))
