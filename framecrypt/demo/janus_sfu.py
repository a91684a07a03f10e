"""``framecrypt demo --sfu janus``: the demo room through a real SFU, Janus's VideoRoom.

:class:`JanusSfu` stands where the demo's own relay stands (:class:`~framecrypt.demo.
room.RelayProcess`): it starts a private Janus (:class:`~framecrypt.webrtc.janus_server.
JanusServer`: generated config, loopback API, stopped and removed afterwards), creates
one room that Janus records itself (``record: true``), and joins each demo participant
with :class:`~framecrypt.webrtc.janus.JanusRoom`: one peer connection publishes its
sealed pattern and tone, one subscription per other sender opens theirs (subscribing to
late publishers as they appear). Janus holds no key.

What the server can see is measured on Janus's own recording: at the report every
``.mjr`` is converted by ``janus-pp-rec`` and decoded; ``frames_decodable`` counts
pictures of the pattern that was sent (0 expected), per participant as
``janus_decodable_frames``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiortc import RTCPeerConnection

from framecrypt.demo import media
from framecrypt.demo.keyroom import TrackedReceiver
from framecrypt.webrtc import attach_sender, local_configuration, prefer_codecs
from framecrypt.webrtc.errors import JanusError
from framecrypt.webrtc.janus import JanusRoom, RoomOptions, Stream
from framecrypt.webrtc.janus_recording import witness
from framecrypt.webrtc.janus_server import JanusServer

if TYPE_CHECKING:
    from framecrypt.demo.room import Participant, RemoteView

RECOVERED_DB = 30.0


class JanusSfu:
    """The demo's SFU when ``--sfu janus`` (the interface of ``RelayProcess``)."""

    def __init__(self) -> None:
        self.server: JanusServer | None = None
        self.room_id = secrets.randbelow(1 << 31) + 1
        self.rooms: dict[str, JanusRoom] = {}
        self._stack = contextlib.AsyncExitStack()
        self._participants: list[Participant] = []

    async def start(self, senders: list[str]) -> None:
        self.server = JanusServer(session_timeout=60)
        await self._stack.enter_async_context(self.server)

    async def join(self, p: Participant, tones: dict[str, float]) -> None:
        """Publish ``p``'s pattern and tone (if it sends) and subscribe to every other
        sender, now or when it publishes."""
        assert self.server is not None
        first = not self.rooms
        room = await self._stack.enter_async_context(JanusRoom.connect(
            self.server.ws_url, self.room_id, display=p.name,
            create=RoomOptions(record=True, rec_dir=str(self.server.rec_dir),
                               extra={"fir_freq": 10}) if first else None,
            ice_address=self.server.ice_address))
        self.rooms[p.name] = room
        self._participants.append(p)
        from framecrypt.demo.room import RemoteView

        for other in p.others:
            view = RemoteView(other, tones[other])
            view.video = TrackedReceiver(p.pool, f"{p.name}<-{other}")
            view.audio = TrackedReceiver(p.pool, f"{p.name}<-{other}")
            p.remotes[other] = view
        pc = p.pc

        @pc.on("connectionstatechange")
        def _state() -> None:
            if pc.connectionState == "connected":
                p.connected.set()

        if p.sends:
            assert p.video is not None and p.audio is not None
            tv = pc.addTransceiver(p.video, "sendonly")
            prefer_codecs(tv, "vp8")
            ta = pc.addTransceiver(p.audio, "sendonly")
            prefer_codecs(ta, "opus")
            p.sv = attach_sender(tv.sender, p.pool, p.name)
            p.sa = attach_sender(ta.sender, p.pool, p.name)
            await room.publish(pc)
        else:
            p.connected.set()  # nothing to publish: connected once it subscribes
        p.tasks.append(asyncio.create_task(self._follow(p, room)))

    async def _follow(self, p: Participant, room: JanusRoom) -> None:
        """Subscribe to each other sender once it publishes (now or later)."""
        done: set[str] = set()
        while True:
            for pub in list(room.publishers.values()):
                view = p.remotes.get(pub.display)
                if view is None or pub.display in done or not pub.streams:
                    continue
                done.add(pub.display)
                try:
                    await self._subscribe(p, room, pub.id, view)
                except JanusError:
                    done.discard(pub.display)
            try:  # wait for the next join or leave, then look at the map again
                await room.next_event(timeout=3600)
            except JanusError:
                return

    async def _subscribe(self, p: Participant, room: JanusRoom, feed: int,
                         view: RemoteView) -> None:
        tracks: dict[str, Any] = {}

        def prepare(tr: Any, stream: Stream) -> None:
            rt = view.video if stream.type == "video" else view.audio
            if rt is not None:
                rt.attach(tr.receiver)
            tracks[stream.type] = tr.receiver.track

        await room.subscribe(feed, pc=RTCPeerConnection(local_configuration()),
                             prepare=prepare)
        if "video" in tracks:
            p.tasks.append(asyncio.create_task(p._consume_video(view, tracks["video"])))
        if "audio" in tracks:
            p.tasks.append(asyncio.create_task(p._consume_audio(view, tracks["audio"])))

    # --- the relay's control calls ------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """What Janus forwarded, counted where it arrived (every subscriber's receivers:
        frames opened + frames rejected)."""
        fwd = nbytes = 0
        for p in self._participants:
            for v in p.remotes.values():
                for r in (v.video, v.audio):
                    if r is not None:
                        fwd += r.stats.frames_opened + r.stats.frames_failed
                        nbytes += r.stats.bytes_in
        return {"frames_forwarded": fwd, "bytes_forwarded": nbytes}

    async def call(self, msg: dict[str, Any], timeout: float = 20.0) -> dict[str, Any]:
        if msg.get("op") == "stats":
            return {"stats": self.stats()}
        if msg.get("op") == "report":
            return await asyncio.wait_for(self._report(Path(msg["dir"])), timeout * 3)
        return {}

    async def _report(self, out: Path) -> dict[str, Any]:
        assert self.server is not None
        feeds = {name: room.feed_id for name, room in self.rooms.items()}
        garbage: list[Any] = []
        best = [0.0]

        def score(frame: Any) -> bool:
            psnr = media.score(frame)[1]
            best[0] = max(best[0], psnr)
            if psnr < RECOVERED_DB:
                garbage[:] = [frame]
            return psnr >= RECOVERED_DB

        with tempfile.TemporaryDirectory(prefix="framecrypt-pp-") as tmp:
            checks = await asyncio.to_thread(witness, self.server.rec_dir, Path(tmp),
                                             video_score=score)
        per: dict[str, dict[str, int]] = {}
        for c in checks:
            name = next((n for n, f in feeds.items() if f"-user-{f}-" in c.mjr), None)
            if name is None or c.kind != "video":
                continue
            d = per.setdefault(name, {"janus_recorded_frames": 0,
                                      "janus_decoder_output": 0,
                                      "janus_decodable_frames": 0})
            d["janus_recorded_frames"] += c.packets
            d["janus_decoder_output"] += c.decoded
            d["janus_decodable_frames"] += c.decodable
        video = [c for c in checks if c.kind == "video"]
        stats = {**self.stats(),
                 "frames_received": sum(c.packets for c in video),
                 "decode_attempts": sum(c.packets for c in video),
                 "decoder_output": sum(c.decoded for c in video),
                 "frames_decodable": sum(c.decodable for c in video),
                 "best_psnr_db": round(best[0], 2)}
        view = None
        if garbage:
            (out / "relay.png").write_bytes(media.png_bytes(garbage[0]))
            view = "relay.png"
        info = await asyncio.to_thread(self.server.info)
        extra = {"sfu": {"name": "janus", "version": info.get("version_string"),
                         "room": self.room_id, "recordings": len(checks),
                         "what_it_sees": "Janus's own recording (record: true) converted "
                                         "by janus-pp-rec and decoded",
                         "participants": per}}
        return {"stats": stats, "view": view, "extra": extra}

    async def stop(self) -> None:
        await self._stack.aclose()
