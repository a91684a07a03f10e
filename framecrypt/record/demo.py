"""``framecrypt demo --record DIR``: the demo room recorded by ``framecrypt record``.

The recorder is one more member of the demo's key room (:mod:`framecrypt.demo.keyroom`):
it gets every sender's key over Olm like the participants do (pool participant
``recorder<-alice``), ratchets when someone joins and rotates when someone leaves. It
subscribes through the room's source (the relay, or Janus), so the SFU forwards it the
same sealed frames as everyone else. At the end each participant's recording is
decoded and scored against the source (the test pattern: luma PSNR of the frame its
barcode names) and, with Janus, Janus's own recording of the room is converted with
``janus-pp-rec`` and decoded: ``janus_decodable_frames`` counts its frames that show
the pattern (0: the server could not see).
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


def janus_decodable(rec_dir: Path, out_dir: Path, feeds: dict[int, str]) -> dict[str, int]:
    """Per participant (by feed id in the .mjr names): video frames of Janus's own
    recording that decode to the pattern (PSNR >= 30 dB)."""
    from framecrypt.demo import media
    from framecrypt.webrtc.janus_recording import witness

    checks = witness(rec_dir, out_dir, video_score=lambda fr: media.score(fr)[1] >= RECOVERED_DB)
    out: dict[str, int] = {}
    for fid, name in feeds.items():
        out[name] = sum(c.decodable for c in checks
                        if c.kind == "video" and f"-user-{fid}-" in c.mjr)
    return out


@dataclass
class DemoRecording:
    """The recorder running next to the demo's participants (see the module doc)."""

    pool: Pool
    source: RoomSource
    out_dir: Path
    janus_rec_dir: Path | None = None  # Janus's own recording folder (--sfu janus)
    recorder: Recorder | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[dict[str, Any]] | None = None

    def start(self) -> None:
        self.recorder = Recorder(self.pool, self.source, self.out_dir, key_name=key_name,
                                 idle_timeout_s=2.0)
        self._task = asyncio.create_task(self.recorder.run(stop=self._stop))

    async def finish(self) -> dict[str, Any]:
        """Stop, finish the files and return the demo's ``recording`` summary."""
        if self._task is None:
            return {}
        self._stop.set()
        try:
            self.manifest = await asyncio.wait_for(self._task, 30)
        except (TimeoutError, Exception) as e:  # the demo reports it, it does not crash
            return {"dir": str(self.out_dir), "error": type(e).__name__}
        return await asyncio.to_thread(self.summarize)

    def summarize(self) -> dict[str, Any]:
        """Per participant: frames written, the recording's PSNR against the source,
        and (Janus) what Janus's own recording decodes to."""
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
        if self.janus_rec_dir is not None:
            feeds = dict(getattr(self.source, "feeds_seen", {}))
            try:
                seen = janus_decodable(self.janus_rec_dir, self.out_dir / "janus-pp", feeds)
            except Exception as e:  # reported in the summary, not raised
                for part in parts.values():
                    part["janus_recording_error"] = type(e).__name__
            else:
                for name, n in seen.items():
                    parts.setdefault(name, {})["janus_decodable_frames"] = n
        return {"dir": str(self.out_dir), "manifest": str(self.out_dir / "manifest.json"),
                "stopped": self.manifest.get("stopped"), "participants": parts}
