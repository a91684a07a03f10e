"""What Janus itself can see: its own room recording, turned into media and decoded.

A VideoRoom created with ``record: true`` writes one ``.mjr`` file per stream of each
publisher in ``rec_dir``; ``janus-pp-rec FILE.mjr OUT.webm`` (Debian ``janus-tools``)
turns one into a playable container. With end-to-end encryption those files hold the
sealed frames: :func:`witness` converts every recording and counts the frames that
decode to the media that was sent (the caller's ``video_score`` / ``audio_score``
decide what "the media that was sent" is, e.g. the test pattern's PSNR). Zero
decodable frames is the "the server cannot see" witness; a clear publisher in the same
room is the control that shows the witness can see.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import JanusError

__all__ = ["RecordingCheck", "convert", "decode", "find_pp_rec", "mjr_header", "witness"]

EXTENSIONS = {"vp8": ".webm", "vp9": ".webm", "av1": ".webm", "h264": ".mkv",
              "opus": ".opus"}


@dataclass(frozen=True)
class RecordingCheck:
    """One stream recording as Janus wrote it, converted and decoded."""

    mjr: str  # the .mjr file name
    kind: str  # "video" / "audio"
    codec: str
    packets: int  # packets in the converted container (frames Janus recorded)
    decoded: int  # frames the decoder produced (garbage included)
    decodable: int  # of those, frames the score accepted as the media sent
    error: str = ""  # why conversion or decoding stopped early ("" if it did not)


def find_pp_rec() -> str | None:
    return shutil.which("janus-pp-rec")


def mjr_header(mjr: Path, timeout: float = 20.0) -> dict[str, Any]:
    """The recording's JSON header (``janus-pp-rec --json``): ``t`` (v/a/d), ``c``."""
    tool = find_pp_rec()
    if tool is None:
        raise JanusError(None, "janus-pp-rec not found (apt-get install janus-tools)")
    proc = subprocess.run([tool, "-j", "-d", "0", str(mjr)], capture_output=True,
                          timeout=timeout, check=False)
    try:
        header = json.loads(proc.stdout.decode(errors="replace").strip().splitlines()[-1])
    except (ValueError, IndexError) as e:
        raise JanusError(None, f"{mjr.name}: no JSON header from janus-pp-rec") from e
    if not isinstance(header, dict):
        raise JanusError(None, f"{mjr.name}: header is not an object")
    return header


def convert(mjr: Path, out_dir: Path, timeout: float = 60.0) -> tuple[Path, str, str]:
    """``janus-pp-rec`` one recording into ``out_dir``: ``(path, kind, codec)``."""
    header = mjr_header(mjr)
    kind = {"v": "video", "a": "audio"}.get(str(header.get("t")), "data")
    codec = str(header.get("c", "")).lower()
    ext = EXTENSIONS.get(codec)
    if ext is None:
        raise JanusError(None, f"{mjr.name}: no container for {kind} codec {codec!r}")
    out = out_dir / (mjr.stem + ext)
    tool = find_pp_rec()
    assert tool is not None
    proc = subprocess.run([tool, "-d", "0", str(mjr), str(out)], capture_output=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0 or not out.is_file():
        raise JanusError(None, f"{mjr.name}: janus-pp-rec exited {proc.returncode}")
    return out, kind, codec


def decode(path: Path, kind: str, score: Callable[[Any], bool] | None
           ) -> tuple[int, int, int, str]:
    """``(packets, decoded, decodable, error)`` of one media file, decoding every packet
    (a packet that does not decode is counted and skipped)."""
    import av

    packets = decoded = decodable = 0
    error = ""
    try:
        with av.open(str(path)) as container:
            streams = [s for s in container.streams if s.type == kind]
            if not streams:
                return 0, 0, 0, f"no {kind} stream"
            stream = streams[0]
            ctx: Any = stream.codec_context
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                packets += 1
                try:
                    frames = ctx.decode(packet)
                except av.FFmpegError:
                    continue
                for frame in frames:
                    decoded += 1
                    if score is not None and score(frame):
                        decodable += 1
    except av.FFmpegError as e:
        error = f"{type(e).__name__}: {e}"
    return packets, decoded, decodable, error


def witness(rec_dir: Path, out_dir: Path, *,
            video_score: Callable[[Any], bool] | None = None,
            audio_score: Callable[[Any], bool] | None = None,
            match: str = "") -> list[RecordingCheck]:
    """Convert and decode every ``*.mjr`` in ``rec_dir`` whose name contains ``match``
    (e.g. ``-user-FEEDID-``): one :class:`RecordingCheck` each, in name order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    checks = []
    for mjr in sorted(rec_dir.glob("*.mjr")):
        if match not in mjr.name:
            continue
        try:
            path, kind, codec = convert(mjr, out_dir)
        except (JanusError, subprocess.SubprocessError) as e:
            checks.append(RecordingCheck(mjr.name, "", "", 0, 0, 0, str(e)))
            continue
        score = video_score if kind == "video" else audio_score
        packets, decoded, decodable, error = decode(path, kind, score)
        checks.append(RecordingCheck(mjr.name, kind, codec, packets, decoded, decodable,
                                     error))
    return checks
