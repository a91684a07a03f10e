"""A private Janus per test, and Python room members for the Janus tests.

``janus_server``: a pytest fixture that starts Janus with a generated config (only the
VideoRoom plugin, HTTP + WebSocket on 127.0.0.1, free ports, ICE on one local address,
no STUN/TURN; framecrypt.webrtc.janus_server), and stops it by PID and removes its
folder afterwards, also when the test fails (the log's tail is printed then). Without
Janus the test is skipped with the reason; under CI (env ``CI`` set) it fails instead.

``Member``: an aiortc member of a Janus room: publishes the test pattern (VP8) and a
tone (Opus), sealed by framecrypt's sender transform (or in clear, ``seal=False``: the
control), subscribes to other members with receivers that open with a given pool
participant, and counts what it decodes per source.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import av
import pytest
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from framecrypt.demo import media
from framecrypt.webrtc import (
    ReceiverTransform,
    SenderTransform,
    attach_receiver,
    attach_sender,
    local_configuration,
    prefer_codecs,
)
from framecrypt.webrtc.janus import JanusRoom, RoomOptions, Stream, Subscription
from framecrypt.webrtc.janus_server import JanusServer, janus_unavailable

RECOVERED_DB = 30.0  # a decoded frame "is" the pattern frame it names at this PSNR


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_janus() -> None:
    reason = janus_unavailable()
    if reason is not None:
        if in_ci():
            pytest.fail(f"Janus unavailable in CI: {reason}", pytrace=False)
        pytest.skip(f"Janus unavailable: {reason}")


@pytest.fixture
def janus_server() -> Iterator[JanusServer]:
    require_janus()
    server = JanusServer(session_timeout=30)
    try:
        server.start()
        yield server
    finally:
        # captured: pytest shows it only when the test failed
        print("---- janus.log (tail) ----\n" + server.log_tail())
        server.stop()


async def wait_until(cond: Callable[[], bool], timeout: float,
                     what: str | Callable[[], str]) -> None:
    """Poll a condition (media runs in real time) with a hard bound."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            detail = what if isinstance(what, str) else what()
            raise AssertionError(f"timed out waiting for {detail}")
        await asyncio.sleep(0.05)


def tone_recovered(hz: float) -> Callable[[Any], bool]:
    """A decoded audio frame that is the tone ``hz``: at least 90% of its energy at
    ``hz`` (Goertzel). Opus frames of the clear tone score 0.93-1.0 (99% above 0.9);
    sealed frames decoded as Opus scored at most 0.54 in 1200 frames, and about one in
    400 of them crossed the 0.5 this used to take (a false "Janus can hear it")."""
    import numpy as np

    def score(frame: Any) -> bool:
        x = frame.to_ndarray().astype(np.float64)
        x = x.reshape(-1) if x.shape[0] == 1 else x[0]
        energy = float(np.dot(x, x))
        if not energy > 0.0 or not np.isfinite(energy):
            return False
        n = np.arange(len(x))
        w = 2 * np.pi * hz / frame.sample_rate
        power = abs(complex(np.dot(x, np.cos(w * n)), np.dot(x, np.sin(w * n)))) ** 2
        return power / (len(x) / 2 * energy) > 0.9

    return score


def pattern_recovered(frame: Any) -> bool:
    """A decoded picture of the pattern frame its barcode names (PSNR ≥ 30 dB)."""
    return media.score(frame)[1] >= RECOVERED_DB


@dataclass
class View:
    """What one member decodes of one source."""

    video: ReceiverTransform | None = None
    audio: ReceiverTransform | None = None
    frames: int = 0
    psnrs: list[float] = field(default_factory=list)
    audio_frames: int = 0
    samples: list[int] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def tone_hz(self, candidates: list[float]) -> float | None:
        s = self.samples[-9600:]
        return media.dominant_hz(s, candidates=candidates) if s else None


class Member:
    """One Python member of a Janus room (see the module docstring)."""

    def __init__(self, name: str, pool: Any, *, tone_hz: float, start: int = 0,
                 seal: bool = True, publishes: bool = True, video_codec: str = "vp8") -> None:
        self.name = name
        self.video_codec = video_codec
        self.pool = pool
        self.tone_hz = tone_hz
        self.start = start
        self.seal = seal
        self.publishes = publishes
        self.room: JanusRoom | None = None
        self.views: dict[str, View] = {}
        self.subs: dict[str, Subscription] = {}
        self.senders: list[SenderTransform] = []
        self._stack = contextlib.AsyncExitStack()

    async def join(self, server: JanusServer, room_id: int,
                   create: RoomOptions | None = None) -> None:
        self.room = await self._stack.enter_async_context(JanusRoom.connect(
            server.ws_url, room_id, display=self.name, create=create,
            ice_address=server.ice_address))
        if self.publishes:
            pc = RTCPeerConnection(local_configuration())
            tv = pc.addTransceiver(media.PatternTrack(start=self.start), "sendonly")
            prefer_codecs(tv, self.video_codec)
            ta = pc.addTransceiver(media.ToneTrack(self.tone_hz), "sendonly")
            prefer_codecs(ta, "opus")
            if self.seal:
                self.senders = [attach_sender(tv.sender, self.pool, self.name),
                                attach_sender(ta.sender, self.pool, self.name)]
            await self.room.publish(pc)

    async def subscribe(self, source: str, key_ctx: str | None = None) -> View:
        """Subscribe to ``source``'s feed; open with pool participant ``key_ctx``
        (None: frames are decoded as they come, no opening)."""
        assert self.room is not None
        pub = await self.room.wait_for_publisher(source, timeout=20)
        view = View()
        tracks: list[MediaStreamTrack] = []

        def prepare(tr: Any, stream: Stream) -> None:
            if key_ctx is not None:
                rt = attach_receiver(tr.receiver, self.pool, key_ctx)
                setattr(view, stream.type, rt)
            tracks.append(tr.receiver.track)

        self.subs[source] = await self.room.subscribe(pub.id, prepare=prepare)
        for track in tracks:
            view.tasks.append(asyncio.create_task(self._consume(view, track)))
        self.views[source] = view
        return view

    async def _consume(self, view: View, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if isinstance(frame, av.VideoFrame):
                view.frames += 1
                if view.frames % 5 == 1:
                    view.psnrs.append(media.score(frame)[1])
            elif isinstance(frame, av.AudioFrame):
                view.audio_frames += 1
                view.samples.extend(media.audio_mono(frame))
                del view.samples[:-48000]

    async def close(self) -> None:
        for v in self.views.values():
            for t in v.tasks:
                t.cancel()
            await asyncio.gather(*v.tasks, return_exceptions=True)
        await self._stack.aclose()
