"""Headless Chromium running the published livekit-client E2EE worker <-> aiortc with
framecrypt, on loopback. One run = one case; the result is one JSON object on stdout.

    unshare -n python tests/browser/harness.py --netns --transform script [--wrong-key]

Inside a fresh network namespace (``--netns`` brings ``lo`` up) it:

- writes a y4m test pattern (frame-index barcode) and a 440 Hz wav for Chromium's fake
  camera and microphone;
- serves ``page.html`` / ``page.js`` and livekit-client's ``dist/`` (the npm package in
  tests/interop/node_modules) on 127.0.0.1;
- starts a framecrypt Pool and answers the page's offer with aiortc (no ICE servers,
  127.0.0.1 candidates only), sealing its pattern + 660 Hz tone with
  :func:`framecrypt.webrtc.attach_sender` and opening the browser's frames with
  :func:`framecrypt.webrtc.attach_receiver`;
- scores what each side decodes: luma PSNR of frames against the frame named by their
  barcode (both directions), the tone frequency (both directions);
- stops as soon as enough was seen (or after ``--timeout``), then kills Chromium.

Keys are random per run and never printed; the page fetches its key from /config.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
LK_DIST = ROOT / "tests" / "interop" / "node_modules" / "livekit-client" / "dist"
TONE_FROM_BROWSER = 440.0
TONE_FROM_PYTHON = 660.0
Y4M_FRAMES = 60
WARMUP_FRAMES = 20  # skip aiortc's first decoded frames (the browser's bitrate ramps up)
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--mute-audio",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--metrics-recording-only",
    "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
)
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript",
                 ".map": "application/json"}


def lo_up() -> None:
    """``ip link set lo up`` without iproute2 (SIOCGIFFLAGS / SIOCSIFFLAGS)."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, siocgifflags, ifr))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))


def loopback_candidates(sdp: str) -> str:
    """Keep only 127.0.0.1 candidates (Chromium may add ::1)."""
    return "\r\n".join(line for line in sdp.split("\r\n")
                       if not line.startswith("a=candidate:") or " 127.0.0.1 " in line)


class Case:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.python_key = secrets.token_bytes(32)
        self.browser_key = secrets.token_bytes(32) if args.wrong_key else self.python_key
        self.done = asyncio.Event()
        self.pc: Any = None
        self.pool: Any = None
        self.rx_video: Any = None
        self.rx_audio: Any = None
        self.tx_video: Any = None
        self.aiortc_frames = 0
        self.aiortc_psnr: list[float] = []
        self.aiortc_audio_frames = 0
        self.aiortc_samples: list[int] = []
        self.browser_frames: list[dict[str, Any]] = []
        self.browser_stats: dict[str, Any] = {}
        self.page_logs: list[str] = []
        self.offer_info: dict[str, Any] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.t0 = time.monotonic()
        self.t_connected: float | None = None

    # --- completion ------------------------------------------------------------------------

    def enough(self) -> bool:
        b = self.browser_stats
        if self.args.wrong_key:
            rx_v = self.rx_video.stats.frames_failed if self.rx_video else 0
            rx_a = self.rx_audio.stats.frames_failed if self.rx_audio else 0
            return (rx_v >= 60 and rx_a >= 100 and b.get("video_packets_received", 0) >= 150
                    and b.get("audio_packets_received", 0) >= 100)
        return (len(self.aiortc_psnr) >= 30 and self.aiortc_audio_frames >= 100
                and len(self.browser_frames) >= self.args.frames
                and b.get("audio_samples_received", 0) >= 48000)

    # --- aiortc side -----------------------------------------------------------------------

    async def answer(self, offer: dict[str, Any]) -> dict[str, str]:
        from aiortc import RTCPeerConnection, RTCSessionDescription

        from framecrypt.demo import media
        from framecrypt.webrtc import (
            attach_receiver,
            attach_sender,
            local_configuration,
            loopback_only,
        )

        pc = self.pc = RTCPeerConnection(local_configuration())

        @pc.on("connectionstatechange")
        def _state() -> None:
            if pc.connectionState == "connected" and self.t_connected is None:
                self.t_connected = time.monotonic()

        await pc.setRemoteDescription(
            RTCSessionDescription(loopback_candidates(offer["sdp"]), offer["type"]))
        for t in pc.getTransceivers():
            if t.kind == "video":
                self.rx_video = attach_receiver(t.receiver, self.pool, "browser")
                t.sender.replaceTrack(media.PatternTrack())
                self.tasks.append(asyncio.create_task(self.consume_video(t.receiver.track)))
            else:
                self.rx_audio = attach_receiver(t.receiver, self.pool, "browser")
                t.sender.replaceTrack(media.ToneTrack(TONE_FROM_PYTHON))
                self.tasks.append(asyncio.create_task(self.consume_audio(t.receiver.track)))
            t.direction = "sendrecv"
            tx = attach_sender(t.sender, self.pool, "python")
            if t.kind == "video":
                self.tx_video = tx
        loopback_only(pc)
        await pc.setLocalDescription(await pc.createAnswer())
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}

    async def consume_video(self, track: Any) -> None:
        from aiortc.mediastreams import MediaStreamError

        from framecrypt.demo import media

        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.aiortc_frames += 1
            if self.aiortc_frames > WARMUP_FRAMES and len(self.aiortc_psnr) < 30:
                _t, p = media.score(frame)
                self.aiortc_psnr.append(round(p, 2))

    async def consume_audio(self, track: Any) -> None:
        from aiortc.mediastreams import MediaStreamError

        from framecrypt.demo import media

        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.aiortc_audio_frames += 1
            if 50 < self.aiortc_audio_frames <= 60:  # 0.2 s, after the first second
                self.aiortc_samples += media.audio_mono(frame)

    # --- HTTP ------------------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, v in
                       (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status, ctype, payload = await self.route(method, path.split("?")[0], headers, body)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            writer.close()
            return
        writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                     f"Content-Length: {len(payload)}\r\nCache-Control: no-store\r\n"
                     "Connection: close\r\n\r\n".encode() + payload)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def route(self, method: str, path: str, headers: dict[str, str],
                    body: bytes) -> tuple[str, str, bytes]:
        def js(obj: Any) -> tuple[str, str, bytes]:
            return "200 OK", "application/json", json.dumps(obj).encode()

        if method == "GET" and path != "/config":
            if path in ("/", "/page.html"):
                f = HERE / "page.html"
            elif path == "/page.js":
                f = HERE / "page.js"
            elif path.startswith("/lk/") and "/" not in path[4:] and ".." not in path:
                f = LK_DIST / path[4:]
            else:
                return "404 Not Found", "text/plain", b"not found"
            if not f.is_file():
                return "404 Not Found", "text/plain", b"not found"
            return "200 OK", CONTENT_TYPES.get(f.suffix, "application/octet-stream"), \
                f.read_bytes()
        if path == "/config":
            return js({"key_hex": self.browser_key.hex()})
        if path == "/offer":
            offer = json.loads(body)
            self.offer_info = {"mode": offer.get("mode"),
                               "script_transform": offer.get("script_transform")}
            return js(await self.answer(offer))
        if path == "/frame":
            from framecrypt.demo import media

            if len(body) == media.WIDTH * media.HEIGHT:
                t = media.read_barcode(body)
                p = media.psnr(body, media.reference_luma(t))
                self.browser_frames.append({"index": t, "psnr_db": round(p, 2),
                                            "how": headers.get("x-how", "?")})
            return js({})
        if path == "/stats":
            self.browser_stats = json.loads(body)
            if self.enough():
                self.done.set()
            return js({"done": self.done.is_set()})
        if path == "/log":
            self.page_logs.append(body.decode(errors="replace")[:500])
            return js({})
        return "404 Not Found", "text/plain", b"not found"

    # --- result ----------------------------------------------------------------------------

    def result(self, timed_out: bool, chromium_log: str) -> dict[str, Any]:
        from framecrypt.demo import media

        tone = (media.dominant_hz(self.aiortc_samples,
                                  candidates=[float(h) for h in range(300, 1000, 10)])
                if self.aiortc_samples else None)
        bf = self.browser_frames
        out = {
            "transform": self.args.transform,
            "wrong_key": self.args.wrong_key,
            "timed_out": timed_out,
            "offer": self.offer_info,
            "seconds_to_connected": (round(self.t_connected - self.t0, 2)
                                     if self.t_connected else None),
            "seconds_total": round(time.monotonic() - self.t0, 2),
            "aiortc": {
                "video_frames_decoded": self.aiortc_frames,
                "psnr_db": statistics.median(self.aiortc_psnr) if self.aiortc_psnr else None,
                "psnr_min_db": min(self.aiortc_psnr) if self.aiortc_psnr else None,
                "audio_frames_decoded": self.aiortc_audio_frames,
                "tone_hz": tone,
                "rejected_video": self.rx_video.stats.frames_failed if self.rx_video else 0,
                "rejected_audio": self.rx_audio.stats.frames_failed if self.rx_audio else 0,
                "sealed_video": self.tx_video.stats.frames_sealed if self.tx_video else 0,
                "keyframe_requests": self.tx_video.stats.keyframe_requests
                if self.tx_video else 0,
            },
            "browser": {
                **self.browser_stats,
                "frames_scored": len(bf),
                "psnr_db": statistics.median(f["psnr_db"] for f in bf) if bf else None,
                "psnr_min_db": min(f["psnr_db"] for f in bf) if bf else None,
                "capture": sorted({f["how"] for f in bf}),
            },
            "page_logs": self.page_logs[:10],
        }
        if timed_out or self.page_logs:
            out["chromium_log_tail"] = chromium_log[-3000:]
        return out


async def stop_group(proc: asyncio.subprocess.Process) -> None:
    """Stop a browser started in its own process group: SIGTERM to the group, SIGKILL
    after 5 s if it has not exited."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 5)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from framecrypt import Pool
    from framecrypt.demo import media

    tmp = Path(tempfile.mkdtemp(prefix="fc-browser-"))
    case = Case(args, tmp)
    media.write_y4m(tmp / "pattern.y4m", Y4M_FRAMES)
    media.write_wav(tmp / "tone.wav", 5.0, TONE_FROM_BROWSER)
    chromium: asyncio.subprocess.Process | None = None
    log_path = tmp / "chromium.log"
    server: asyncio.Server | None = None
    timed_out = False
    try:
        case.pool = Pool(workers=1, placement="pool")
        await case.pool.start()
        await case.pool.set_key("python", case.python_key)
        await case.pool.set_key("browser", case.python_key)
        server = await asyncio.start_server(case.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        url = (f"http://127.0.0.1:{port}/page.html?transform={args.transform}"
               f"&frames={args.frames}")
        with open(log_path, "wb") as log:
            chromium = await asyncio.create_subprocess_exec(
                args.chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}",
                f"--use-file-for-fake-video-capture={tmp / 'pattern.y4m'}",
                f"--use-file-for-fake-audio-capture={tmp / 'tone.wav'}", url,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)
        try:
            await asyncio.wait_for(case.done.wait(), args.timeout)
        except TimeoutError:
            timed_out = True
        # let the page see {"done": true} once (it stops its own loop); then kill it
    finally:
        if chromium is not None:
            await stop_group(chromium)
        for t in case.tasks:
            t.cancel()
        await asyncio.gather(*case.tasks, return_exceptions=True)
        if case.pc is not None:
            await case.pc.close()
        if server is not None:
            server.close()
        if case.pool is not None:
            await case.pool.close()
    chromium_log = log_path.read_text(errors="replace") if log_path.exists() else ""
    shutil.rmtree(tmp, ignore_errors=True)
    return case.result(timed_out, chromium_log)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--transform", choices=("script", "insertable"), default="script")
    p.add_argument("--wrong-key", action="store_true")
    p.add_argument("--netns", action="store_true", help="bring lo up first (in unshare -n)")
    p.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    p.add_argument("--frames", type=int, default=20, help="browser frames to score")
    p.add_argument("--timeout", type=float, default=40.0)
    args = p.parse_args()
    if args.netns:
        lo_up()
    result = asyncio.run(run(args))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
