"""``framecrypt demo --record DIR``: the demo room recorded by ``framecrypt record``.

The recorder is one more member of the demo's key room (:mod:`framecrypt.demo.keyroom`):
it gets every sender's key over Olm like the participants do (pool participant
``recorder<-alice``), ratchets when someone joins and rotates when someone leaves. It
subscribes through the room's source (the relay, or Janus), so the SFU forwards it the
same sealed frames as everyone else. At the end each participant's recording is
decoded and scored against the source (the test pattern: luma PSNR of the frame its
barcode names). With ``--sfu janus`` the demo puts, next to it, what Janus's own
recording of the room decodes to (``janus_decodable_frames``, measured by
:mod:`framecrypt.demo.janus_sfu`; 0: the server could not see).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .session import Recorder
from .source import RoomSource

if TYPE_CHECKING:
    from framecrypt.broker.pool import Pool

NAME = "recorder"
SCORE_EVERY = 5  # PSNR of every 5th decoded frame (pure Python, ~10 ms each)
RECOVERED_DB = 30.0


def key_name(participant: str) -> str:
    """The recorder's pool participant for ``participant``'s frames (the demo's key
    room names them ``member<-sender``)."""
    return f"{NAME}<-{participant}"


def score_file(path: Path) -> dict[str, Any]:
    """Decode a recording: frames, mean luma PSNR of every ``SCORE_EVERY``-th video
    frame against the pattern frame it names, decode errors."""
    import av

    from framecrypt.demo import media

    frames = errors = 0
    psnrs: list[float] = []
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                return {"frames_decoded": 0, "psnr_db": None, "decode_errors": 0}
            for packet in c.demux(c.streams.video[0]):
                try:
                    decoded = packet.decode()
                except av.FFmpegError:
                    errors += 1
                    continue
                for fr in decoded:
                    if frames % SCORE_EVERY == 0:
                        psnrs.append(media.score(fr)[1])
                    frames += 1
    except av.FFmpegError:
        errors += 1
    psnr = round(sum(psnrs) / len(psnrs), 2) if psnrs else None
    return {"frames_decoded": frames, "psnr_db": psnr, "decode_errors": errors}


@dataclass
class DemoRecording:
    """The recorder running next to the demo's participants (see the module doc)."""

    pool: Pool
    source: RoomSource
    out_dir: Path
    recorder: Recorder | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[dict[str, Any]] | None = None
    _summary: dict[str, Any] | None = None

    def start(self) -> None:
        self.recorder = Recorder(self.pool, self.source, self.out_dir, key_name=key_name,
                                 idle_timeout_s=2.0)
        self._task = asyncio.create_task(self.recorder.run(stop=self._stop))

    async def finish(self) -> dict[str, Any]:
        """Stop, finish the files and return the demo's ``recording`` summary."""
        if self._task is None:
            return {}
        if self._summary is None:
            self._stop.set()
            try:
                self.manifest = await asyncio.wait_for(self._task, 30)
            except Exception as e:  # the demo reports it (checks_failed), it does not crash
                self._summary = {"dir": str(self.out_dir), "error": type(e).__name__}
            else:
                self._summary = await asyncio.to_thread(self.summarize)
        return self._summary

    def summarize(self) -> dict[str, Any]:
        """Per participant: frames written and the recording's PSNR against the source."""
        parts: dict[str, dict[str, Any]] = {}
        for name, p in self.manifest.get("participants", {}).items():
            scores = [score_file(self.out_dir / f["path"]) for f in p["files"]]
            ps = [s["psnr_db"] for s in scores if s["psnr_db"] is not None]
            parts[name] = {
                "frames_written": p["frames_written"],
                "video_frames_decoded": sum(s["frames_decoded"] for s in scores),
                "recording_psnr_db": round(sum(ps) / len(ps), 2) if ps else None,
                "frames_rejected": p["frames_rejected"],
                "files": [f["path"] for f in p["files"]],
            }
        return {"dir": str(self.out_dir), "manifest": str(self.out_dir / "manifest.json"),
                "stopped": self.manifest.get("stopped"), "participants": parts}


def demo_source(sfu: Any, senders: list[str]) -> RoomSource:
    """The recorder's way into the demo room: the relay process or the private Janus."""
    if getattr(sfu, "server", None) is not None:  # framecrypt.demo.janus_sfu.JanusSfu
        from .janus_source import JanusSource

        return JanusSource(sfu.server.ws_url, sfu.room_id, display=NAME,
                           ice_address=sfu.server.ice_address)
    from .relay_source import RelaySource

    return RelaySource(f"127.0.0.1:{sfu.port}", senders, name=NAME)


def merge(summary: dict[str, Any], recording: dict[str, Any]) -> None:
    """Put the recording into the demo summary: ``recording`` and, per participant,
    ``frames_written``, ``recording_psnr_db`` and (Janus) ``janus_decodable_frames``;
    a participant whose recording does not show the picture fails the run."""
    summary["recording"] = recording
    janus = summary.get("sfu", {}).get("participants", {})
    checks: list[str] = summary.setdefault("checks_failed", [])
    rec = recording.get("participants", {})
    if "error" in recording:
        checks.append(f"the recorder failed: {recording['error']}")
    for p in summary.get("participants", []):
        name = p.get("name")
        r = rec.get(name)
        if r is None:
            if p.get("frames_sent"):
                checks.append(f"the recorder wrote nothing of {name}")
            continue
        p["frames_written"] = r["frames_written"]
        p["recording_psnr_db"] = r["recording_psnr_db"]
        if name in janus:
            p["janus_decodable_frames"] = janus[name].get("janus_decodable_frames")
        psnr = r["recording_psnr_db"]
        if psnr is None or psnr < RECOVERED_DB:
            checks.append(f"the recording of {name} does not show the picture sent "
                          f"({psnr} dB)")
    summary["ok"] = bool(summary.get("ok")) and not checks
