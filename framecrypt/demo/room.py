"""The demo room: N Python participants, one untrusted relay process, one framecrypt
pool that seals and opens every frame.

Each participant has one ``RTCPeerConnection`` to the relay: it sends a test pattern
(VP8, encoded by aiortc with PyAV) and a tone (Opus), sealed by a
:class:`~framecrypt.webrtc.SenderTransform`; it receives every other sender's video and
audio, opened by a :class:`~framecrypt.webrtc.ReceiverTransform` before decoding. All
keys live in this process's pool; the relay never gets any.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

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

NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")
INTRUDER = "mallory"
SCORE_EVERY = 10  # PSNR of every 10th decoded frame (pure Python: ~10 ms each)
CONNECT_TIMEOUT_S = 20.0


@dataclass
class DemoOptions:
    participants: int = 3
    duration: float = 8.0
    wrong_key: bool = False
    fps: int = media.FPS
    workers: int = 2
    placement: str = "pool"
    report_dir: Path = Path("report")
    json_path: Path | None = None
    live: bool | None = None  # None: when stdout is a terminal

    def names(self) -> list[str]:
        return [NAMES[i] if i < len(NAMES) else f"p{i + 1}" for i in range(self.participants)]


@dataclass
class RemoteView:
    """What one participant gets from one other sender."""

    source: str
    expected_hz: float
    video: ReceiverTransform | None = None
    audio: ReceiverTransform | None = None
    frames_decoded: int = 0
    audio_frames_decoded: int = 0
    psnrs: list[float] = field(default_factory=list)
    best: Any = None  # the best-scoring decoded frame (av.VideoFrame)
    best_psnr: float = -1.0
    samples: deque[list[int]] = field(default_factory=lambda: deque(maxlen=10))  # 0.2 s
    _tone: float | None = None

    def psnr_db(self) -> float | None:
        return round(sum(self.psnrs) / len(self.psnrs), 2) if self.psnrs else None

    def tone_hz(self) -> float | None:
        """The strongest of the demo's tones (± 30 Hz) in the last 0.2 s received."""
        if self._tone is None and self.samples:
            s = [x for chunk in self.samples for x in chunk]
            cands = sorted({float(h) for h in tone_list(len(NAMES) + 1)} | {
                self.expected_hz - 30, self.expected_hz + 30})
            self._tone = media.dominant_hz(s, candidates=cands)
        return self._tone


def tone_list(n: int) -> list[float]:
    return [440.0 + 110.0 * i for i in range(n)]


class Participant:
    def __init__(self, name: str, index: int, sends: bool, senders: list[str], pool: Any,
                 fps: int) -> None:
        self.name = name
        self.sends = sends
        self.pool = pool
        self.pc = RTCPeerConnection(local_configuration())
        self.tone_hz = tone_list(len(NAMES) + 1)[index]
        self.video = media.PatternTrack(fps=fps, start=1000 * index) if sends else None
        self.audio = media.ToneTrack(self.tone_hz) if sends else None
        self.sv: SenderTransform | None = None
        self.sa: SenderTransform | None = None
        self.others = [s for s in senders if s != name]
        self.remotes: dict[str, RemoteView] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.connected = asyncio.Event()

    async def join(self, call: Callable[[dict[str, Any]], Any], tones: dict[str, float]) -> None:
        pc = self.pc
        if self.sends:
            assert self.video is not None and self.audio is not None
            tv = pc.addTransceiver(self.video, "sendonly")
            prefer_codecs(tv, "vp8")
            ta = pc.addTransceiver(self.audio, "sendonly")
            prefer_codecs(ta, "opus")
            self.sv = attach_sender(tv.sender, self.pool, self.name)
            self.sa = attach_sender(ta.sender, self.pool, self.name)
        recv: list[tuple[RemoteView, Any, Any]] = []
        for other in self.others:
            view = RemoteView(other, tones[other])
            rv = pc.addTransceiver("video", "recvonly")
            prefer_codecs(rv, "vp8")
            ra = pc.addTransceiver("audio", "recvonly")
            prefer_codecs(ra, "opus")
            key_ctx = f"{self.name}<-{other}"
            view.video = attach_receiver(rv.receiver, self.pool, key_ctx)
            view.audio = attach_receiver(ra.receiver, self.pool, key_ctx)
            self.remotes[other] = view
            recv.append((view, rv, ra))

        @pc.on("connectionstatechange")
        def _state() -> None:
            if pc.connectionState == "connected":
                self.connected.set()

        loopback_only(pc)
        await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription
        reply = await call({"op": "join", "name": self.name, "sends": self.sends,
                            "offer": {"sdp": offer.sdp, "type": offer.type}})
        answer = reply["answer"]
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        for view, rv, ra in recv:
            self.tasks.append(asyncio.create_task(self._consume_video(view, rv.receiver.track)))
            self.tasks.append(asyncio.create_task(self._consume_audio(view, ra.receiver.track)))

    async def _consume_video(self, view: RemoteView, track: MediaStreamTrack) -> None:
        n = 0
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, av.VideoFrame):
                continue
            view.frames_decoded += 1
            n += 1
            if n % SCORE_EVERY == 1:
                _t, p = media.score(frame)
                view.psnrs.append(p)
                if p > view.best_psnr:
                    view.best, view.best_psnr = frame, p

    async def _consume_audio(self, view: RemoteView, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, av.AudioFrame):
                continue
            view.audio_frames_decoded += 1
            view.samples.append(media.audio_mono(frame))

    @property
    def frames_sent(self) -> int:
        return self.sv.stats.frames_sealed if self.sv else 0

    @property
    def audio_frames_sent(self) -> int:
        return self.sa.stats.frames_sealed if self.sa else 0

    @property
    def frames_decoded(self) -> int:
        return sum(v.frames_decoded for v in self.remotes.values())

    def psnr_db(self) -> float | None:
        ps = [p for v in self.remotes.values() for p in v.psnrs]
        return round(sum(ps) / len(ps), 2) if ps else None

    def errors(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in [self.sv, self.sa]:
            if t is not None:
                for k, n in t.stats.errors.items():
                    out[f"send:{k}"] = out.get(f"send:{k}", 0) + n
        for v in self.remotes.values():
            for r in (v.video, v.audio):
                if r is not None:
                    for k, n in r.stats.errors.items():
                        out[k] = out.get(k, 0) + n
        return out

    def failed_frames(self) -> int:
        return sum(r.stats.frames_failed for v in self.remotes.values()
                   for r in (v.video, v.audio) if r is not None)

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.pc.close()


class RelayProcess:
    """The relay subprocess and its JSON-lines control connection."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self._lock = asyncio.Lock()
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def start(self, senders: list[str]) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "framecrypt.demo.relay", "--managed",
            "--senders", ",".join(senders),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            start_new_session=True)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        if not line:
            raise RuntimeError("the relay process did not start")
        self.port = int(json.loads(line)["port"])
        self._conn = await asyncio.open_connection("127.0.0.1", self.port)

    async def call(self, msg: dict[str, Any], timeout: float = 20.0) -> dict[str, Any]:
        """One request on the shared control connection."""
        assert self._conn is not None
        async with self._lock:
            reader, writer = self._conn
            writer.write(json.dumps(msg).encode() + b"\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), timeout)
        if not line:
            raise ConnectionError("relay closed the connection")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"relay: {reply['error']}")
        return reply

    async def join_call(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Joins use their own connection (they may run concurrently)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(json.dumps(msg).encode() + b"\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 20)
        finally:
            writer.close()
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"relay: {reply['error']}")
        return reply

    async def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            await self.call({"op": "shutdown"}, timeout=5)
        if self._conn is not None:
            self._conn[1].close()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


@dataclass
class DemoResult:
    summary: dict[str, Any]
    ok: bool


async def run(options: DemoOptions, ui: Any = None) -> DemoResult:
    """Run the room for ``options.duration`` seconds (or until SIGINT) and write the
    report. ``ui`` gets ``update(snapshot)`` calls while it runs."""
    from framecrypt import Pool

    from . import report

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    interrupts = 0
    main_task = asyncio.current_task()

    def on_sigint() -> None:
        nonlocal interrupts
        interrupts += 1
        stop.set()
        if interrupts > 1 and main_task is not None:
            main_task.cancel()

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, on_sigint)

    senders = options.names()
    everyone = senders + ([INTRUDER] if options.wrong_key else [])
    tones = {n: tone_list(len(NAMES) + 1)[i] for i, n in enumerate(everyone)}
    room_key = secrets.token_bytes(32)  # never printed
    relay = RelayProcess()
    participants: list[Participant] = []
    t_start = time.monotonic()
    t_media = t_start
    pool = Pool(workers=options.workers, placement=options.placement)
    summary: dict[str, Any] = {}
    try:
        await pool.start()
        await relay.start(senders)
        for i, name in enumerate(everyone):
            bad = name == INTRUDER
            key = secrets.token_bytes(32) if bad else room_key
            if not bad:
                await pool.set_key(name, key)
            for other in senders:
                if other != name:
                    await pool.set_key(f"{name}<-{other}", key)
            participants.append(Participant(name, i, not bad, senders, pool, options.fps))
        await asyncio.gather(*(p.join(relay.join_call, tones) for p in participants))
        await asyncio.wait_for(asyncio.gather(*(p.connected.wait() for p in participants)),
                               CONNECT_TIMEOUT_S)
        t_media = time.monotonic()
        if ui is not None:
            ui.started(len(participants))
        deadline = t_media + options.duration
        while not stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                break
            if ui is not None:
                rs = await _relay_stats(relay)
                ui.update(snapshot(participants, pool, rs, now - t_media, options.duration))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(0.25, deadline - now))
        elapsed = time.monotonic() - t_media
        options.report_dir.mkdir(parents=True, exist_ok=True)
        rep = await relay.call({"op": "report", "dir": str(options.report_dir.resolve())})
        summary = report.summarize(participants, pool, rep["stats"], elapsed, options,
                                   interrupted=stop.is_set(), relay_view=rep.get("view"))
        if ui is not None:
            ui.update(snapshot(participants, pool, rep["stats"], elapsed, options.duration))
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
        await asyncio.gather(*(p.close() for p in participants), return_exceptions=True)
        await relay.stop()
        await pool.close()
    report.write(summary, participants, options)
    return DemoResult(summary, bool(summary.get("ok")))


async def _relay_stats(relay: RelayProcess) -> dict[str, Any]:
    try:
        stats: dict[str, Any] = (await relay.call({"op": "stats"}, timeout=2))["stats"]
        return stats
    except (TimeoutError, ConnectionError, RuntimeError):
        return {}


def snapshot(participants: list[Participant], pool: Any, relay: dict[str, Any],
             elapsed: float, duration: float) -> dict[str, Any]:
    st = pool.stats()
    return {
        "elapsed": elapsed,
        "duration": duration,
        "participants": [
            {"name": p.name, "frames_sent": p.frames_sent, "audio_sent": p.audio_frames_sent,
             "frames_decoded": p.frames_decoded,
             "audio_decoded": sum(v.audio_frames_decoded for v in p.remotes.values()),
             "from": {v.source: v.frames_decoded for v in p.remotes.values()},
             "psnr_db": p.psnr_db(), "failed": p.failed_frames(), "errors": p.errors()}
            for p in participants
        ],
        "pool": {"frames_ok": st["frames_ok"], "frames_failed": st["frames_failed"],
                 "frames_inline": st["frames_inline"], "frames_pool": st["frames_pool"],
                 "bytes_out": st["bytes_out"], "errors": st["errors_by_reason"],
                 "workers": len(st["workers"])},
        "relay": relay,
    }
