"""The demo room: N Python participants, one untrusted relay process, one framecrypt
pool that seals and opens every frame.

Each participant has one ``RTCPeerConnection`` to the relay: it sends a test pattern
(VP8, encoded by aiortc with PyAV) and a tone (Opus), sealed by a
:class:`~framecrypt.webrtc.SenderTransform`; it receives every other sender's video and
audio, opened by a :class:`~framecrypt.webrtc.ReceiverTransform` before decoding. All
keys live in this process's pool; the relay never gets any.

The keys come from :mod:`framecrypt.keys` (see :mod:`framecrypt.demo.keyroom`): each
participant's :class:`~framecrypt.keys.PoolDriver` exchanges them over Olm on an
in-process signaling bus. With three or more participants the last one joins late
(at 30 % of the run: the others ratchet) and the second one leaves (at 65 %: the
others rotate to a new key); the leaver stays subscribed at the relay and is shown to
open nothing sealed under the new keys.
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
from typing import TYPE_CHECKING, Any

import av
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from framecrypt.demo import media
from framecrypt.demo.dave_keys import DaveKeys
from framecrypt.demo.keyroom import KeyRoom, TrackedReceiver
from framecrypt.record.demo import NAME as RECORDER
from framecrypt.record.demo import DemoRecording, demo_source
from framecrypt.record.demo import merge as merge_recording
from framecrypt.webrtc import (
    SenderTransform,
    attach_sender,
    local_configuration,
    loopback_only,
    prefer_codecs,
)

if TYPE_CHECKING:
    from framecrypt.demo.janus_sfu import JanusSfu

NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")
INTRUDER = "mallory"
SCORE_EVERY = 10  # PSNR of every 10th decoded frame (pure Python: ~10 ms each)
CONNECT_TIMEOUT_S = 20.0
JOIN_AT, LEAVE_AT = 0.30, 0.65  # of the duration


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
    verify: bool = False  # SAS between every pair
    churn: bool = True  # one joins late, one leaves (3+ participants)
    sfu: str = "relay"  # "relay" (the embedded relay) or "janus" (demo/janus_sfu.py)
    format: str = "livekit"  # or "dave": keys from a DAVE MLS group (demo/dave_keys.py)
    record_dir: Path | None = None  # framecrypt record joins the room (record/demo.py)

    def names(self) -> list[str]:
        return [NAMES[i] if i < len(NAMES) else f"p{i + 1}" for i in range(self.participants)]

    def joiner(self) -> str | None:
        return self.names()[-1] if self.churn and self.participants >= 3 else None

    def leaver(self) -> str | None:
        return self.names()[1] if self.churn and self.participants >= 3 else None


@dataclass
class RemoteView:
    """What one participant gets from one other sender."""

    source: str
    expected_hz: float
    video: TrackedReceiver | None = None
    audio: TrackedReceiver | None = None
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
            view.video = TrackedReceiver(self.pool, key_ctx)
            view.video.attach(rv.receiver)
            view.audio = TrackedReceiver(self.pool, key_ctx)
            view.audio.attach(ra.receiver)
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

    def stop_sending(self) -> None:
        """Leave: stop the outgoing tracks (the receivers stay subscribed)."""
        for t in (self.video, self.audio):
            if t is not None:
                t.stop()

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

    async def join(self, p: Participant, tones: dict[str, float]) -> None:
        await p.join(self.join_call, tones)

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
    joiner, leaver = options.joiner(), options.leaver()
    relay: RelayProcess | JanusSfu
    if options.sfu == "janus":
        from framecrypt.demo.janus_sfu import JanusSfu

        relay = JanusSfu()
    else:
        relay = RelayProcess()
    participants: list[Participant] = []
    t_start = time.monotonic()
    t_media = t_start
    # keys change under the receivers (join ratchet, leave rotation) while frames sealed
    # under the old ones are still in flight: never mark a key invalid after failures
    # (livekit's failureTolerance), as Jitsi and livekit's external key provider
    pool = Pool(workers=options.workers, placement=options.placement, format=options.format,
                livekit__failure_tolerance=-1)
    keys: Any = DaveKeys(pool) if options.format == "dave" else KeyRoom(pool)
    churn = Churn(joiner, leaver)
    summary: dict[str, Any] = {}
    recording: DemoRecording | None = None
    try:
        await pool.start()
        await relay.start(senders)
        # the signaling server: Olm sessions and key-info between the members present
        await keys.open([n for n in senders if n != joiner]
                        + ([RECORDER] if options.record_dir is not None else []))
        if options.verify:
            await keys.verify([(a, b) for a in keys.present for b in keys.present if a < b])
        for i, name in enumerate(everyone):
            if name == joiner:
                continue
            if name == INTRUDER:  # not in the key exchange: a key of her own making
                for other in senders:
                    await (pool.set_dave_key(f"{name}<-{other}", 1, secrets.token_bytes(16))
                           if options.format == "dave" else
                           pool.set_key(f"{name}<-{other}", secrets.token_bytes(32)))
            participants.append(Participant(name, i, name != INTRUDER, senders, pool,
                                            options.fps))
        await asyncio.gather(*(relay.join(p, tones) for p in participants))
        await asyncio.wait_for(asyncio.gather(*(p.connected.wait() for p in participants)),
                               CONNECT_TIMEOUT_S)
        t_media = time.monotonic()
        if options.record_dir is not None:
            recording = DemoRecording(pool, demo_source(relay, senders), options.record_dir)
            recording.start()
        if ui is not None:
            ui.started(len(participants))
        deadline = t_media + options.duration
        while not stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                break
            if joiner is not None and churn.joined_at is None \
                    and now >= t_media + JOIN_AT * options.duration:
                churn.joined_at = time.monotonic()
                await keys.join(joiner)
                p = Participant(joiner, everyone.index(joiner), True, senders, pool,
                                options.fps)
                participants.append(p)
                await relay.join(p, tones)
                await asyncio.wait_for(p.connected.wait(), CONNECT_TIMEOUT_S)
                churn.connected_at = time.monotonic()
                if options.verify:
                    await keys.verify([(a, joiner) for a in keys.present if a != joiner])
            if leaver is not None and churn.left_at is None \
                    and now >= t_media + LEAVE_AT * options.duration:
                churn.left_at = time.monotonic()
                await keys.leave(leaver)
                for p in participants:
                    if p.name == leaver:
                        p.stop_sending()
            if ui is not None:
                rs = await _relay_stats(relay)
                ui.update(snapshot(participants, pool, rs, now - t_media, options.duration))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(0.25, deadline - now))
        elapsed = time.monotonic() - t_media
        rec_summary = await recording.finish() if recording is not None else None
        options.report_dir.mkdir(parents=True, exist_ok=True)
        rep = await relay.call({"op": "report", "dir": str(options.report_dir.resolve())})
        summary = report.summarize(participants, pool, rep["stats"], elapsed, options,
                                   interrupted=stop.is_set(), relay_view=rep.get("view"))
        summary.update(rep.get("extra", {}))  # --sfu janus: what Janus recorded
        key_summary(summary, keys, participants, churn, t_media)
        if rec_summary is not None:
            merge_recording(summary, rec_summary)
        if ui is not None:
            ui.update(snapshot(participants, pool, rep["stats"], elapsed, options.duration))
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
        if recording is not None:
            await recording.finish()  # files finished on every path (no-op when done)
        await asyncio.gather(*(p.close() for p in participants), return_exceptions=True)
        await keys.close()
        await relay.stop()
        await pool.close()
    report.write(summary, participants, options)
    return DemoResult(summary, bool(summary.get("ok")))


@dataclass
class Churn:
    """Who joins late and who leaves, and when (``time.monotonic()``)."""

    joiner: str | None
    leaver: str | None
    joined_at: float | None = None
    connected_at: float | None = None
    left_at: float | None = None


def key_summary(summary: dict[str, Any], keys: KeyRoom, participants: list[Participant],
                churn: Churn, t0: float) -> None:
    """Add ``sas``, ``rotations``, ``timeline``, ``leaver`` and ``signaling`` to the
    summary, and the key checks to ``checks_failed``."""
    from framecrypt.keys import demo_report

    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - t0, 3)

    dr = demo_report(keys.drivers.values(), t0=t0)
    checks: list[str] = summary.setdefault("checks_failed", [])
    for s in dr["sas"]:
        if s["emoji_a"] != s["emoji_b"]:
            checks.append(f"SAS of {s['pair'][0]} and {s['pair'][1]} differ")
    by_name = {p.name: p for p in participants}
    timeline: list[dict[str, Any]] = []
    ratchets = keys.switches("join")
    rotations = keys.switches("leave")
    if churn.joined_at is not None:
        timeline.append({"t_s": rel(churn.joined_at), "event": "join",
                         "participant": churn.joiner})
        if churn.connected_at is not None:
            timeline.append({"t_s": rel(churn.connected_at), "event": "media connected",
                             "participant": churn.joiner})
        for name, (index, at) in sorted(ratchets.items()):
            timeline.append({"t_s": rel(at), "event": "switch", "participant": name,
                             "cause": "join", "key_index": index})
        j = by_name.get(churn.joiner or "")
        if j is not None:  # the joiner only ever gets the ratcheted keys
            for src, v in sorted(j.remotes.items()):
                if v.video is not None and v.video.keys.first_any is not None:
                    timeline.append({"t_s": rel(v.video.keys.first_any),
                                     "event": "first frame on the new key",
                                     "participant": churn.joiner, "from": src,
                                     "cause": "join"})
    leaver_info: dict[str, Any] | None = None
    if churn.left_at is not None and churn.leaver is not None:
        timeline.append({"t_s": rel(churn.left_at), "event": "leave",
                         "participant": churn.leaver})
        for name, (index, at) in sorted(rotations.items()):
            timeline.append({"t_s": rel(at), "event": "switch", "participant": name,
                             "cause": "leave", "key_index": index})
        remaining = [p for p in participants if p.name in keys.present]
        for p in remaining:
            for src, v in sorted(p.remotes.items()):
                if src not in rotations or v.video is None:
                    continue
                index = rotations[src][0] % keys.config.keyring_size
                first = v.video.keys.first_opened.get(index)
                n = v.video.keys.opened.get(index, 0)
                if first is None:
                    checks.append(f"{p.name} decoded no frame of {src} on its new key {index}")
                else:
                    timeline.append({"t_s": rel(first), "event": "first frame on the new key",
                                     "participant": p.name, "from": src, "cause": "leave",
                                     "key_index": index, "frames": n})
        gone = by_name.get(churn.leaver)
        opened = rejected = before = 0
        per: dict[str, dict[str, int]] = {}
        if gone is not None:
            for src, v in gone.remotes.items():
                if src not in rotations:
                    continue
                index = rotations[src][0] % keys.config.keyring_size
                o = r = 0
                for tr in (v.video, v.audio):
                    if tr is not None:
                        o += tr.keys.opened.get(index, 0)
                        r += tr.keys.rejected.get(index, 0)
                        before += sum(c for k, c in tr.keys.opened.items() if k != index)
                per[src] = {"key_index": index, "frames_decoded": o, "frames_rejected": r}
                opened += o
                rejected += r
        leaver_info = {
            "name": churn.leaver, "left_at_s": rel(churn.left_at),
            "switched_at_s": rel(max((at for _i, at in rotations.values()), default=None)),
            "frames_decoded_after_switch": opened,
            "frames_rejected_after_switch": rejected,
            "frames_decoded_before_switch": before,
            "from": per,
        }
        if opened:
            checks.append(f"{churn.leaver} (left) decoded {opened} frames sealed after "
                          "the others switched keys")
        if not rotations:
            checks.append(f"nobody rotated after {churn.leaver} left")
    if churn.joiner is not None and churn.joined_at is not None and not ratchets:
        checks.append(f"nobody ratcheted after {churn.joiner} joined")
    timeline.sort(key=lambda e: (e["t_s"], e["event"]))
    for p in summary.get("participants", []):
        if p["name"] == churn.joiner:
            p["joined_at_s"] = rel(churn.joined_at)
        if p["name"] == churn.leaver:
            p["left_at_s"] = rel(churn.left_at)
    summary["signaling"] = {
        "server": "in-process bus (Olm, framecrypt.keys); the relay saw only RTP",
        "messages": keys.messages(), "refused": len(keys.errors),
    }
    summary["sas"] = dr["sas"]
    summary["rotations"] = dr["rotations"]
    summary["timeline"] = timeline
    summary["leaver"] = leaver_info
    summary["ok"] = not checks and not summary.get("interrupted", False)


async def _relay_stats(relay: RelayProcess | JanusSfu) -> dict[str, Any]:
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
        "health": pool.participant_stats(),
        "relay": relay,
    }
