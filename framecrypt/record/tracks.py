"""Per-participant, per-track bookkeeping of a recording (no I/O): RTP timestamp
unwrapping and the file timeline, keyframe gating after a loss, gaps, rejected
frames by reason, key index changes. What :mod:`framecrypt.record.manifest` reports.

Timeline: a participant's file starts at its first frame; each track's first frame
is placed at its arrival time since then, later frames at their RTP timestamp
distance from it (so audio and video stay aligned to within the network jitter of
their first frames; the relay and SFUs send no RTCP sender reports we could use).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .source import CLOCK_RATES

# a timestamp step longer than this is a gap (frames lost or the sender paused)
GAP_S = {"video": 0.5, "audio": 0.2}


@dataclass
class Gap:
    start_s: float
    end_s: float | None
    reason: str  # "frames rejected" | "timestamp jump" | "waiting for keyframe"
    frames: int = 0  # frames received in it and not written

    def as_dict(self) -> dict[str, Any]:
        end = None if self.end_s is None else round(self.end_s, 3)
        return {"start_s": round(self.start_s, 3), "end_s": end, "reason": self.reason,
                "frames": self.frames}


@dataclass
class TrackState:
    """One track (video or audio) of one participant."""

    kind: str
    codec: str
    frames_received: int = 0
    frames_opened: int = 0
    frames_written: int = 0
    keyframes_written: int = 0
    frames_skipped: int = 0  # opened, not written: waiting for a keyframe after a loss
    frames_not_muxed: int = 0  # opened, not written: timestamp not increasing, late track
    frames_rejected: dict[str, int] = field(default_factory=dict)
    keyframe_requests: int = 0
    gaps: list[Gap] = field(default_factory=list)
    waiting_keyframe: bool = False
    first_ts: int | None = None
    last_ts: int = 0  # unwrapped
    base_pts: int = 0  # the first frame's place on the file timeline (track clock)
    key_index: int | None = None

    def __post_init__(self) -> None:
        self.waiting_keyframe = self.kind == "video"

    @property
    def clock(self) -> int:
        return CLOCK_RATES[self.codec]

    def unwrap(self, ts: int) -> int:
        """The 32-bit RTP timestamp as a monotonic-ish 64-bit one."""
        if self.first_ts is None:
            return ts
        prev = self.last_ts
        candidate = (prev & ~0xFFFFFFFF) | ts
        if candidate - prev > 1 << 31:
            candidate -= 1 << 32
        elif prev - candidate > 1 << 31:
            candidate += 1 << 32
        return candidate

    def step_s(self, ts: int) -> float:
        """Seconds from the latest frame on this file's timeline to ``ts``."""
        if self.first_ts is None:
            return 0.0
        return (self.unwrap(ts) - self.last_ts) / self.clock

    def place(self, ts: int, offset_s: float) -> int:
        """The frame's pts in the file (track clock); ``offset_s`` is the arrival of
        the track's first frame since the file started."""
        u = self.unwrap(ts)
        if self.first_ts is None:
            self.first_ts = self.last_ts = u
            self.base_pts = max(0, round(offset_s * self.clock))
        else:
            self.last_ts = max(self.last_ts, u)
        return self.base_pts + (u - self.first_ts)

    def restart(self) -> None:
        """A new file (part): a new timeline, video waits for a keyframe."""
        self.first_ts = None
        self.waiting_keyframe = self.kind == "video"

    def open_gap(self, at_s: float, reason: str) -> Gap:
        g = self.gaps[-1] if self.gaps else None
        if g is not None and g.end_s is None:
            return g
        g = Gap(at_s, None, reason)
        self.gaps.append(g)
        return g

    def close_gap(self, at_s: float) -> None:
        if self.gaps and self.gaps[-1].end_s is None:
            self.gaps[-1].end_s = at_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "codec": self.codec,
            "frames_received": self.frames_received,
            "frames_opened": self.frames_opened,
            "frames_written": self.frames_written,
            "keyframes_written": self.keyframes_written,
            "frames_skipped": self.frames_skipped,
            "frames_not_muxed": self.frames_not_muxed,
            "frames_rejected": dict(sorted(self.frames_rejected.items())),
            "keyframe_requests": self.keyframe_requests,
            "gaps": [g.as_dict() for g in self.gaps],
        }


@dataclass
class KeyChange:
    at_s: float
    kind: str  # "key index" (the sender switched keys) | "ratchet" (the key ratcheted)
    key_index: int
    previous_index: int | None = None
    track: str = ""

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"at_s": round(self.at_s, 3), "kind": self.kind,
                             "key_index": self.key_index}
        if self.kind == "key index":
            d["previous_index"] = self.previous_index
            d["track"] = self.track
        return d


@dataclass
class FileInfo:
    path: str
    container: str
    started_at_s: float
    ended_at_s: float | None
    frames: dict[str, int]
    codecs: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "container": self.container,
                "started_at_s": round(self.started_at_s, 3),
                "ended_at_s": None if self.ended_at_s is None else round(self.ended_at_s, 3),
                "tracks": {k: {"codec": self.codecs[k], "frames": n}
                           for k, n in sorted(self.frames.items())}}


@dataclass
class ParticipantState:
    name: str
    joined_at_s: float
    tracks: dict[str, TrackState] = field(default_factory=dict)
    files: list[FileInfo] = field(default_factory=list)
    key_changes: list[KeyChange] = field(default_factory=list)
    left_at_s: float | None = None
    last_frame_at_s: float = 0.0
    part: int = 0

    def track(self, kind: str, codec: str) -> TrackState:
        t = self.tracks.get(kind)
        if t is None:
            t = self.tracks[kind] = TrackState(kind, codec)
        return t

    @property
    def frames_written(self) -> int:
        return sum(t.frames_written for t in self.tracks.values())

    def rejected(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tracks.values():
            for r, n in t.frames_rejected.items():
                out[r] = out.get(r, 0) + n
        return dict(sorted(out.items()))

    def as_dict(self) -> dict[str, Any]:
        return {
            "joined_at_s": round(self.joined_at_s, 3),
            "left_at_s": None if self.left_at_s is None else round(self.left_at_s, 3),
            "last_frame_at_s": round(self.last_frame_at_s, 3),
            "frames_written": self.frames_written,
            "frames_rejected": self.rejected(),
            "keyframe_requests": sum(t.keyframe_requests for t in self.tracks.values()),
            "gaps": sum(len(t.gaps) for t in self.tracks.values()),
            "key_rotations": [k.as_dict() for k in self.key_changes],
            "files": [f.as_dict() for f in self.files],
            "tracks": {k: t.as_dict() for k, t in sorted(self.tracks.items())},
        }
