"""The demo's untrusted relay: an SFU stand-in that has **no keys**.

``python -m framecrypt.demo.relay --senders alice,bob,carol`` listens on 127.0.0.1
(a random port, printed as the first line of stdout as JSON) for participants. Each
participant sends one offer over a JSON-lines TCP connection: its own video and audio
(if it sends) and one recvonly video + audio slot per other sender, in roster order.

The relay terminates DTLS-SRTP like any SFU, reassembles each incoming frame, and
re-packetizes it towards every subscriber without touching it. What it can read is
what LiveKit's SFU can read: RTP headers and the clear codec header (10 bytes of a VP8
keyframe, 3 of a delta frame, 1 Opus TOC byte): enough to start a subscriber on a
keyframe and to forward keyframe requests, not enough to see the picture. To show
that, it also feeds every video frame to its own VP8 decoder and counts what decodes.

It exits on ``{"op": "shutdown"}``, SIGTERM or SIGINT. Started by the demo
(``--managed``) it ignores SIGINT (the demo stops it after asking for its report) and
exits when its stdin closes (the demo died).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from framecrypt.demo import media
from framecrypt.webrtc import _aiortc_internals as _ai
from framecrypt.webrtc import local_configuration, loopback_only

KINDS = ("video", "audio")
CLOCK = {"video": 90000, "audio": 48000}
PLI_INTERVAL_S = 0.3
QUEUE_FRAMES = {"video": 30, "audio": 50}
RECOVERED_DB = 30.0


def vp8_keyframe(data: bytes) -> bool:
    """What the relay may read: the clear VP8 frame tag."""
    return bool(data) and not data[0] & 1


class ForwardTrack(MediaStreamTrack):
    """Frames of one source towards one subscriber, as pre-encoded packets (aiortc
    packetizes them without an encoder). Video starts on a keyframe."""

    def __init__(self, kind: str, on_start: Any) -> None:
        super().__init__()
        self.kind = kind
        self._queue: asyncio.Queue[av.Packet[Any] | None] = asyncio.Queue(QUEUE_FRAMES[kind])
        self._active = False
        self._want_keyframe = kind == "video"
        self._on_start = on_start
        self.forwarded = 0
        self.bytes = 0
        self.dropped = 0

    def push(self, data: bytes, timestamp: int) -> bool:
        """Queue one frame; False when it was not queued (inactive, waiting for a
        keyframe, or full: then the subscriber waits for the next keyframe)."""
        if not self._active or self.readyState != "live":
            return False
        if self._want_keyframe:
            if not vp8_keyframe(data):
                return False
            self._want_keyframe = False
        if self._queue.full():
            self.dropped += 1
            self._want_keyframe = self.kind == "video"
            return False
        packet = av.Packet(data)
        packet.pts = timestamp
        packet.time_base = Fraction(1, CLOCK[self.kind])
        self._queue.put_nowait(packet)
        self.forwarded += 1
        self.bytes += len(data)
        return True

    async def recv(self) -> Any:
        if not self._active:
            self._active = True
            self._on_start()
        packet = await self._queue.get()
        if packet is None:
            raise MediaStreamError
        return packet

    def stop(self) -> None:
        super().stop()
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)


@dataclass
class Source:
    """One participant's incoming track at the relay."""

    name: str
    kind: str
    receiver: Any = None
    subscribers: list[ForwardTrack] = field(default_factory=list)
    frames: int = 0
    nbytes: int = 0
    decode_attempts: int = 0
    decoded: int = 0  # frames its VP8 decoder turned into pictures (garbage or not)
    decodable: int = 0  # of those, pictures of what was sent (luma PSNR >= 30 dB)
    best_psnr: float = 0.0
    garbage: Any = None  # the last picture its decoder made of a sealed frame
    last_pli: float = 0.0
    plis: int = 0
    sample: bytes = b""  # a sealed keyframe as the relay saw it
    decoder: Any = None

    def request_keyframe(self) -> None:
        if self.kind != "video" or self.receiver is None:
            return
        now = time.monotonic()
        if now - self.last_pli < PLI_INTERVAL_S:
            return
        self.last_pli = now
        self.plis += 1
        _ai.request_keyframe(self.receiver)

    def on_frame(self, mime: str, data: bytes, timestamp: int) -> None:
        self.frames += 1
        self.nbytes += len(data)
        if self.kind == "video":
            if vp8_keyframe(data) and (not self.sample or len(data) > len(self.sample)):
                self.sample = data
            self._try_decode(data)
        for sub in self.subscribers:
            sub.push(data, timestamp)

    def _try_decode(self, data: bytes) -> None:
        if self.decoder is None:
            self.decoder = av.CodecContext.create("libvpx", "r")
        self.decode_attempts += 1
        try:
            frames = self.decoder.decode(av.Packet(data))
        except av.FFmpegError:
            return
        for frame in frames:
            # the test pattern is public: did the relay get the picture that was sent?
            self.decoded += 1
            _t, psnr = media.score(frame)
            self.best_psnr = max(self.best_psnr, psnr)
            if psnr >= RECOVERED_DB:
                self.decodable += 1
            else:
                self.garbage = frame


class Relay:
    def __init__(self, senders: list[str]) -> None:
        self.senders = senders
        self.sources = {(n, k): Source(n, k) for n in senders for k in KINDS}
        self.pcs: dict[str, RTCPeerConnection] = {}
        self.stopping = asyncio.Event()

    async def join(self, name: str, sends: bool, offer: dict[str, str]) -> dict[str, str]:
        pc = RTCPeerConnection(local_configuration())
        self.pcs[name] = pc
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], offer["type"]))
        trs = pc.getTransceivers()
        slots = list(trs)
        if sends:
            for kind in KINDS:
                t = slots.pop(0)
                src = self.sources[(name, kind)]
                src.receiver = t.receiver
                _ai.install_tap(t.receiver, src.on_frame)
        for other in self.senders:
            if other == name:
                continue
            for kind in KINDS:
                t = slots.pop(0)
                src = self.sources[(other, kind)]
                track = ForwardTrack(kind, src.request_keyframe)
                src.subscribers.append(track)
                t.sender.replaceTrack(track)
                t.direction = "sendonly"
                _ai.watch_keyframe_requests(t.sender, src.request_keyframe)
        loopback_only(pc)
        await pc.setLocalDescription(await pc.createAnswer())
        desc = pc.localDescription
        return {"sdp": desc.sdp, "type": desc.type}

    def stats(self) -> dict[str, Any]:
        srcs = self.sources.values()
        return {
            "frames_received": sum(s.frames for s in srcs),
            "frames_forwarded": sum(t.forwarded for s in srcs for t in s.subscribers),
            "bytes_forwarded": sum(t.bytes for s in srcs for t in s.subscribers),
            "frames_decodable": sum(s.decodable for s in srcs),
            "decode_attempts": sum(s.decode_attempts for s in srcs),
            "decoder_output": sum(s.decoded for s in srcs),
            "best_psnr_db": round(max((s.best_psnr for s in srcs), default=0.0), 2),
            "keyframe_requests": sum(s.plis for s in srcs),
            "sources": {f"{s.name}/{s.kind}": {"frames": s.frames, "bytes": s.nbytes,
                                               "decoded": s.decoded,
                                               "decodable": s.decodable}
                        for s in srcs},
        }

    def write_view(self, path: Path) -> str | None:
        """What the relay sees of a video frame: what its decoder made of a sealed
        frame, or (when it rejected them all) a sealed keyframe's bytes as pixels."""
        garbage = next((s.garbage for s in self.sources.values() if s.garbage is not None),
                       None)
        if garbage is not None:
            path.write_bytes(media.png_bytes(garbage))
            return path.name
        sample = next((s.sample for s in self.sources.values() if s.sample), b"")
        if not sample:
            return None
        w, h = media.WIDTH, media.HEIGHT
        reps = (w * h) // len(sample) + 1
        y = (sample * reps)[: w * h]
        grey = b"\x80" * (w * h // 4)
        path.write_bytes(media.png_bytes(media.yuv_frame((y, grey, grey), w, h)))
        return path.name

    async def close(self) -> None:
        for s in self.sources.values():
            for t in s.subscribers:
                t.stop()
        await asyncio.gather(*(pc.close() for pc in self.pcs.values()),
                             return_exceptions=True)


async def handle(relay: Relay, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
    try:
        while line := await reader.readline():
            msg = json.loads(line)
            op = msg.get("op")
            reply: dict[str, Any]
            if op == "join":
                reply = {"answer": await relay.join(msg["name"], bool(msg["sends"]),
                                                    msg["offer"])}
            elif op == "stats":
                reply = {"stats": relay.stats()}
            elif op == "report":
                view = relay.write_view(Path(msg["dir"]) / "relay.png")
                reply = {"stats": relay.stats(), "view": view}
            elif op == "shutdown":
                reply = {"ok": True}
                relay.stopping.set()
            else:
                reply = {"error": f"unknown op {op!r}"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, json.JSONDecodeError):
        pass
    except asyncio.CancelledError:
        # shutting down with a client still connected: end quietly (Python 3.11's
        # start_server logs an error for a connection task that ends cancelled)
        pass
    finally:
        writer.close()


async def serve(senders: list[str], port: int, managed: bool) -> None:
    relay = Relay(senders)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, relay.stopping.set)
    if not managed:
        loop.add_signal_handler(signal.SIGINT, relay.stopping.set)
    server = await asyncio.start_server(lambda r, w: handle(relay, r, w), "127.0.0.1", port)
    bound = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": bound}), flush=True)

    def stdin_closed() -> None:
        try:
            data = os.read(sys.stdin.fileno(), 4096)
        except OSError:
            data = b""
        if not data:
            relay.stopping.set()
            loop.remove_reader(sys.stdin.fileno())

    if managed:
        loop.add_reader(sys.stdin.fileno(), stdin_closed)
    async with server:
        await relay.stopping.wait()
    if managed:
        with contextlib.suppress(OSError, ValueError):
            loop.remove_reader(sys.stdin.fileno())
    await relay.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m framecrypt.demo.relay")
    p.add_argument("--senders", required=True, help="comma-separated roster of senders")
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any)")
    p.add_argument("--managed", action="store_true",
                   help="run under the demo: ignore SIGINT, exit when stdin closes")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.managed:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(serve([s for s in args.senders.split(",") if s], args.port, args.managed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
