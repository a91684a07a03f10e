"""Helpers of the recorder tests: a publisher process (several participants, each
its own peer connection to the demo relay, sending the test pattern and a tone sealed
with its own key) driven over stdin, the relay process, and checks on recorded files.

    python tests/record_helpers.py --relay 127.0.0.1:PORT --room alice,bob --key-hex HEX

prints ``{"ready": true}`` once every participant is connected, then answers one JSON
line per command on stdin: ``{"op": "rotate", "name", "index", "key_hex"}`` (the
participant switches to a new key at that index), ``{"op": "ratchet", "name"}``,
``{"op": "leave", "name"}`` (stops sending), ``{"op": "stats"}``; it exits when stdin
closes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FPS = 15


def tone_hz(index: int) -> float:
    return 440.0 + 110.0 * index


def pattern_start(index: int) -> int:
    return 1000 * (index + 1)


# --- processes driven by the tests ----------------------------------------------------


class Relay:
    def __init__(self, senders: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "framecrypt.demo.relay", "--senders", ",".join(senders)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
            cwd=ROOT)
        assert self.proc.stdout is not None
        self.port = int(json.loads(self.proc.stdout.readline())["port"])
        self.address = f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Publishers:
    def __init__(self, relay: str, room: list[str], key_hex: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--relay", relay,
             "--room", ",".join(room), "--key-hex", key_hex],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, start_new_session=True, cwd=ROOT)
        line = self._line()
        assert json.loads(line) == {"ready": True}, line

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the publisher process exited")
        return line

    def call(self, **msg: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        reply: dict[str, Any] = json.loads(self._line())
        return reply

    def stop(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- checks on recorded files -----------------------------------------------------------


def decode_file(path: Path) -> dict[str, Any]:
    """Every packet of a recorded file decoded, as a player does (a packet that does not
    decode is counted and skipped): packets and undecodable packets per kind, the luma
    PSNR of each decoded video frame against the pattern frame its barcode names, its
    index, and the audio samples (first channel, float)."""
    import av
    import numpy as np

    from framecrypt.demo import media

    out: dict[str, Any] = {"video": [], "indices": [], "audio": np.zeros(0), "rate": 48000,
                           "packets": {"video": 0, "audio": 0},
                           "undecodable": {"video": 0, "audio": 0}}
    def take(frame: Any) -> None:
        if isinstance(frame, av.VideoFrame):
            y = media.luma(frame)
            t = media.read_barcode(y)
            ref = np.frombuffer(media.reference_luma(t), np.uint8).astype(np.float64)
            mse = float(np.mean((np.frombuffer(y, np.uint8) - ref) ** 2))
            out["video"].append(99.0 if mse == 0 else 10 * np.log10(255 ** 2 / mse))
            out["indices"].append(t)
        elif isinstance(frame, av.AudioFrame):
            a = frame.to_ndarray()
            ch0 = a[0] if a.ndim == 2 and frame.format.is_planar else a.reshape(-1)[
                :: len(frame.layout.channels)]
            out["audio"] = np.concatenate([out["audio"], ch0.astype(np.float64)])
            out["rate"] = frame.sample_rate

    with av.open(str(path)) as c:
        for packet in c.demux(*c.streams):
            kind = packet.stream.type
            if packet.size == 0 or kind not in ("video", "audio"):
                continue
            out["packets"][kind] += 1
            try:
                frames = packet.decode()
            except av.FFmpegError:
                out["undecodable"][kind] += 1
                continue
            for frame in frames:
                take(frame)
        for stream in c.streams:  # what the decoders still hold (H.264's reorder delay)
            if stream.type in ("video", "audio"):
                for frame in stream.codec_context.decode(None):
                    take(frame)
    return out


def dominant_hz(samples: Any, rate: int) -> float:
    import numpy as np

    s = samples[-rate:] if len(samples) > rate else samples
    spectrum = np.abs(np.fft.rfft(s * np.hanning(len(s))))
    return float(np.fft.rfftfreq(len(s), 1 / rate)[int(np.argmax(spectrum))])


# --- the publisher process -------------------------------------------------------------


async def publish(args: argparse.Namespace) -> None:
    from aiortc import RTCPeerConnection, RTCSessionDescription

    from framecrypt import Pool
    from framecrypt.demo import media
    from framecrypt.webrtc import (
        _aiortc_internals,
        attach_sender,
        local_configuration,
        loopback_only,
        prefer_codecs,
    )

    room = args.room.split(",")
    key = bytes.fromhex(args.key_hex)
    host, port = args.relay.rsplit(":", 1)
    tracks: dict[str, list[Any]] = {}
    pcs: list[Any] = []
    senders: dict[str, list[Any]] = {}
    loop = asyncio.get_running_loop()
    async with Pool(workers=1, placement="inline") as pool:
        connected = []
        for i, me in enumerate(room):
            await pool.set_key(me, key)
            pc = RTCPeerConnection(local_configuration())
            pcs.append(pc)
            video = media.PatternTrack(fps=FPS, start=pattern_start(i))
            audio = media.ToneTrack(tone_hz(i))
            tracks[me] = [video, audio]
            tv = pc.addTransceiver(video, "sendonly")
            prefer_codecs(tv, "vp8")
            ta = pc.addTransceiver(audio, "sendonly")
            prefer_codecs(ta, "opus")
            senders[me] = [attach_sender(tv.sender, pool, me), attach_sender(ta.sender, pool, me)]
            for other in room:
                if other != me:
                    for kind in ("video", "audio"):
                        t = pc.addTransceiver(kind, "recvonly")
                        prefer_codecs(t)
                        _aiortc_internals.install_tap(t.receiver, lambda *a: None)
            ev = asyncio.Event()
            connected.append(ev)
            pc.on("connectionstatechange",
                  lambda pc=pc, ev=ev: ev.set() if pc.connectionState == "connected" else None)
            loopback_only(pc)
            await pc.setLocalDescription(await pc.createOffer())
            r, w = await asyncio.open_connection(host, int(port))
            w.write(json.dumps({"op": "join", "name": me, "sends": True, "offer": {
                "sdp": pc.localDescription.sdp, "type": pc.localDescription.type}}).encode()
                + b"\n")
            answer = json.loads(await r.readline())["answer"]
            w.close()
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in connected)), 30)
        print(json.dumps({"ready": True}), flush=True)
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            msg = json.loads(line)
            op, name = msg["op"], msg.get("name", "")
            reply: dict[str, Any] = {"ok": True, "t": time.monotonic()}
            if op == "rotate":
                await pool.set_key(name, bytes.fromhex(msg["key_hex"]), msg["index"])
            elif op == "ratchet":
                reply["generation"] = await pool.ratchet_key(name)
            elif op == "leave":
                for tr in tracks[name]:
                    tr.stop()
            elif op == "stats":
                reply["sent"] = {n: {"video": s[0].stats.frames_sealed,
                                     "audio": s[1].stats.frames_sealed}
                                 for n, s in senders.items()}
            print(json.dumps(reply), flush=True)
        for pc in pcs:
            await pc.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--relay", required=True)
    p.add_argument("--room", required=True)
    p.add_argument("--key-hex", required=True)
    asyncio.run(publish(p.parse_args()))
