"""One participant's file: the opened encoded frames of its video and audio tracks,
muxed with PyAV without re-encoding (WebM for VP8/Opus, Matroska when H.264 is in it).

The container header names every stream, so a file opens once it knows which tracks
it holds: when each track it expects has produced its first frame, or
:data:`OPEN_GRACE_S` after the first frame (what came until then is buffered). A
track that starts after the header was written cannot join this file (``add`` refuses
it, counted as ``late_track``): the recorder then finishes this part and starts the
next one with every track.

H.264 streams get their codec parameters (avcC) from the first keyframe's SPS/PPS
through a parsed template stream; VP8 dimensions come from the keyframe header.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from .errors import RecordingFailed
from .source import CLOCK_RATES

OPEN_GRACE_S = 3.0  # a subscriber's video waits for a keyframe: allow for a PLI or two
MAX_PENDING = 600  # frames buffered before the header is written


def safe_name(participant: str) -> str:
    """A file-system-safe stem for a participant name."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", participant).strip(".") or "participant"
    return stem[:64]


def vp8_size(keyframe: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe header (RFC 6386 §9.1)."""
    if len(keyframe) < 10 or keyframe[0] & 1 or keyframe[3:6] != b"\x9d\x01\x2a":
        return None
    w = int.from_bytes(keyframe[6:8], "little") & 0x3FFF
    h = int.from_bytes(keyframe[8:10], "little") & 0x3FFF
    return (w, h) if w and h else None


@dataclass(frozen=True, slots=True)
class Packet:
    """One opened frame, ready to mux (``pts`` in the track's clock)."""

    kind: str
    codec: str
    data: bytes
    pts: int
    keyframe: bool


class ParticipantFile:
    """One container file of one participant (see the module doc)."""

    def __init__(self, directory: Path, participant: str, part: int,
                 expected: tuple[str, ...], opened_at: float) -> None:
        self.directory = directory
        self.participant = participant
        self.part = part
        self.expected = expected
        self.first_at = opened_at
        self.path: Path | None = None
        self.container_format = ""
        self.frames: dict[str, int] = {}
        self.codecs: dict[str, str] = {}
        self.late_track = 0
        self.closed = False
        self.ended_at: float | None = None
        self._out: Any = None
        self._streams: dict[str, Any] = {}
        self._last_ms: dict[str, int] = {}
        self._pending: list[Packet] = []

    def __repr__(self) -> str:
        return f"ParticipantFile({self.participant!r}, part={self.part}, frames={self.frames})"

    @property
    def is_open(self) -> bool:
        return self._out is not None

    def add(self, packet: Packet, now: float) -> bool:
        """Mux ``packet`` (or buffer it until the header can be written). False when
        it cannot go into this file (a late track, or a timestamp going back)."""
        if self.closed:
            return False
        if self._out is None:
            self._pending.append(packet)
            self.maybe_open(now)
            return True
        return self._mux(packet)

    def maybe_open(self, now: float) -> None:
        """Write the header once every expected track has a frame, or after the grace
        period (or when the buffer is full)."""
        if self._out is not None or not self._pending:
            return
        kinds = {p.kind for p in self._pending}
        if (all(k in kinds for k in self.expected) or now - self.first_at >= OPEN_GRACE_S
                or len(self._pending) >= MAX_PENDING):
            self._open()

    def _open(self) -> None:
        pending, self._pending = self._pending, []
        firsts: dict[str, Packet] = {}
        for p in pending:
            firsts.setdefault(p.kind, p)
        codecs = {k: p.codec for k, p in firsts.items()}
        mkv = any(c == "h264" for c in codecs.values())
        self.container_format = "matroska" if mkv else "webm"
        suffix = ".mkv" if mkv else ".webm"
        stem = safe_name(self.participant) + (f".{self.part}" if self.part > 1 else "")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / (stem + suffix)
        try:
            out = av.open(str(self.path), "w", format=self.container_format,
                          options={"cluster_time_limit": "1000", "flush_packets": "1"})
            for kind in ("video", "audio"):
                if kind in firsts:
                    self._streams[kind] = self._add_stream(out, firsts[kind])
                    self.codecs[kind] = firsts[kind].codec
                    self.frames[kind] = 0
        except (av.FFmpegError, OSError, ValueError) as e:
            raise RecordingFailed(f"{self.path}: {type(e).__name__}") from None
        self._out = out
        for p in pending:
            self._mux(p)

    @staticmethod
    def _add_stream(out: Any, first: Packet) -> Any:
        if first.codec == "h264":
            # codec parameters (SPS/PPS -> avcC) parsed from the first keyframe
            probe = av.open(io.BytesIO(first.data), format="h264")
            stream = out.add_stream_from_template(probe.streams.video[0])
            probe.close()
        elif first.codec == "vp8":
            stream = out.add_stream("vp8")
            size = vp8_size(first.data)
            stream.width, stream.height = size if size is not None else (320, 240)
            stream.pix_fmt = "yuv420p"
        else:
            stream = out.add_stream("opus", rate=CLOCK_RATES["opus"])
            stream.layout = "stereo"
        stream.time_base = Fraction(1, CLOCK_RATES[first.codec])
        return stream

    def _mux(self, p: Packet) -> bool:
        stream = self._streams.get(p.kind)
        if stream is None or self.codecs.get(p.kind) != p.codec:
            self.late_track += 1
            return False
        clock = CLOCK_RATES[p.codec]
        ms = p.pts * 1000 // clock  # the container's resolution
        if ms <= self._last_ms.get(p.kind, -1):
            return False
        self._last_ms[p.kind] = ms
        pkt = av.Packet(p.data)
        pkt.stream = stream
        pkt.time_base = Fraction(1, clock)
        pkt.pts = pkt.dts = p.pts
        pkt.is_keyframe = p.keyframe
        try:
            self._out.mux(pkt)
        except (av.FFmpegError, OSError, ValueError) as e:
            raise RecordingFailed(f"{self.path}: {type(e).__name__}") from None
        self.frames[p.kind] += 1
        return True

    def close(self) -> None:
        """Write the trailer (the buffered frames first). Idempotent."""
        if self.closed:
            return
        if self._out is None and self._pending:
            self._open()
        self.closed = True
        if self._out is not None:
            try:
                self._out.close()
            except (av.FFmpegError, OSError) as e:
                raise RecordingFailed(f"{self.path}: {type(e).__name__}") from None
