"""The workloads: what every contender is fed, built once per run from the traces with
fixed seeds (so every contender sees the same frames in the same order).

- ``size-100B`` … ``size-100KB``: random bytes (content does not matter), sealed as
  VP8 delta frames in the LiveKit format and opened again (half the ops each), 4
  participants.
- ``conference``: per participant Opus at 50/s, VP8 deltas at 30/s and a VP8
  keyframe every 2 s (staggered), real encoder output; every frame is sealed by its
  sender ("encrypt own") and opened once by a receiver ("decrypt others").
- ``heavy``: the costly paths. LiveKit H.264 (NAL parsing, RBSP escaping) with a
  keyframe (37–108 KB, mean ~70 KB) every second, and SFrame suite 0x0001
  (AES-128-CTR + HMAC-SHA256) on VP8 + Opus with a ~60 KB keyframe every second;
  sealed and opened as in the conference mix. The two parts run one after the other.
- ``ratchet-storm``: 16 participants with *passphrase* keys are ratcheted (PBKDF2,
  2 × 100,000 iterations per step) at 100/s, round-robin, while their conference-mix
  frames are sealed at 4,000 frames/s in total (the real-time media of 50
  participants; less if that is over 50 % of the contender's per-frame max).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

from framecrypt import livekit, sframe
from framecrypt.bench.traces import Traces

SIZES = (100, 1024, 10 * 1024, 100 * 1024)
SIZE_NAMES = {100: "size-100B", 1024: "size-1KB", 10 * 1024: "size-10KB",
              100 * 1024: "size-100KB"}
WORKLOADS = (*SIZE_NAMES.values(), "conference", "heavy", "ratchet-storm")
HEAVY_SUITE = 0x0001  # AES_128_CTR_HMAC_SHA256_80
SEED = 20261122
STORM_PARTICIPANTS = 16
STORM_FRAMES_PER_S = 4000.0
STORM_RATCHETS_PER_S = 100.0


def material(i: int) -> bytes:
    """Raw key material of participant ``i`` (HKDF in the LiveKit format)."""
    return f"framecrypt-bench-participant-{i:04d}".encode()


def sframe_base(i: int) -> bytes:
    """SFrame base key of participant ``i`` (16 bytes, suite 0x0001)."""
    return hashlib.sha256(b"framecrypt-bench-sframe" + i.to_bytes(4, "big")).digest()[:16]


def passphrase(i: int) -> str:
    """Passphrase of storm participant ``i`` (PBKDF2)."""
    return f"ratchet storm participant {i}"


@dataclass(slots=True)
class Op:
    """One frame operation. ``data`` is the input (plaintext to seal, or the sealed
    frame to open); ``plain_len`` its plaintext size; ``expect`` what opening gives."""

    pidx: int
    enc: bool
    codec: str
    keyframe: bool
    ssrc: int
    ts: int
    count: int
    data: bytes
    plain_len: int
    expect: bytes


@dataclass
class Segment:
    fmt: str  # "livekit" | "sframe"
    suite: int
    ops: list[Op]

    @property
    def nbytes(self) -> int:
        return sum(o.plain_len for o in self.ops)


@dataclass
class Workload:
    name: str
    title: str
    kind: str  # "throughput" | "storm"
    participants: int
    segments: list[Segment]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ops(self) -> int:
        return sum(len(s.ops) for s in self.segments)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.segments)

    @property
    def formats(self) -> set[str]:
        return {s.fmt for s in self.segments}

    def subsample(self, cap: int) -> Workload:
        """Every k-th op of each segment so at most ``cap`` ops remain (same mix)."""
        if self.ops <= cap:
            return self
        k = -(-self.ops // cap)
        segs = [Segment(s.fmt, s.suite, s.ops[::k]) for s in self.segments]
        return Workload(self.name, self.title, self.kind, self.participants, segs,
                        dict(self.info, subsampled_every=k))

    def interleaved(self) -> list[tuple[int, Op]]:
        """(segment index, op) of every segment, merged by relative position, so any
        prefix holds every segment in proportion (the paced runs submit a prefix)."""
        keyed = [((j + 0.5) / len(seg.ops), si, op)
                 for si, seg in enumerate(self.segments) for j, op in enumerate(seg.ops)]
        keyed.sort(key=lambda t: (t[0], t[1]))
        return [(si, op) for _, si, op in keyed]

    def describe(self) -> dict[str, Any]:
        n = self.ops
        return {"title": self.title, "kind": self.kind, "participants": self.participants,
                "ops": n, "bytes": self.nbytes,
                "mean_frame_bytes": round(self.nbytes / n) if n else 0,
                "encrypt_ops": sum(o.enc for s in self.segments for o in s.ops),
                "segments": [{"format": s.fmt, "suite": s.suite if s.fmt == "sframe" else None,
                              "ops": len(s.ops)} for s in self.segments],
                **self.info}


def _seal(fmt: str, suite: int, pidx: int, codec: str, kf: bool, ssrc: int, ts: int,
          count: int, plain: bytes, keys: dict[int, bytes]) -> tuple[bytes, bytes]:
    """(sealed, what opening it gives) by the pure core."""
    if fmt == "sframe":
        return sframe.protect(suite, sframe_base(pidx), 0, count, plain), plain
    key = keys.get(pidx)
    if key is None:
        key = keys[pidx] = livekit.derive_key(material(pidx))
    sealed = livekit.protect(plain, key=key, codec=codec, keyframe=kf, ssrc=ssrc, timestamp=ts,
                             send_count=count)
    expect = plain if codec not in ("h264", "h265") else livekit.unprotect(
        sealed, key=key, codec=codec, keyframe=kf)
    return sealed, expect


def _ops_for(fmt: str, suite: int, frames: list[tuple[int, str, bool, int, int, bytes]],
             decrypt: bool) -> list[Op]:
    """Each frame → an encrypt op (its sender) and, with ``decrypt``, an open of the
    same frame sealed by the pure core (a receiver)."""
    keys: dict[int, bytes] = {}
    counts: dict[tuple[int, int], int] = {}
    ops: list[Op] = []
    for pidx, codec, kf, ssrc, ts, plain in frames:
        # LiveKit counts per stream (the IV holds the SSRC); SFrame per key (KID)
        stream = (pidx, ssrc if fmt == "livekit" else 0)
        c = counts.get(stream, 0)
        counts[stream] = c + 1
        if not decrypt:
            ops.append(Op(pidx, True, codec, kf, ssrc, ts, c, plain, len(plain), plain))
            continue
        sealed, expect = _seal(fmt, suite, pidx, codec, kf, ssrc, ts, c, plain, keys)
        ops.append(Op(pidx, True, codec, kf, ssrc, ts, c, plain, len(plain), expect))
        ops.append(Op(pidx, False, codec, kf, ssrc, ts, c, sealed, len(plain), expect))
    return ops


def size_sweep(size: int, n_ops: int, seed: int = SEED) -> Workload:
    rng = random.Random(seed + size)
    pool = [rng.randbytes(size) for _ in range(32 if size > 20_000 else 64)]
    p = 4
    # n_ops / 2 frames, each sealed by its sender and opened by a receiver (issue 14's
    # "batch seal and open"; seal-only before)
    frames = [(j % p, "vp8", False, 1000 + j % p, (j // p) * 3000, pool[j % len(pool)])
              for j in range(max(1, n_ops // 2))]
    ops = _ops_for("livekit", 0, frames, decrypt=True)
    return Workload(SIZE_NAMES[size], f"{size} B random frames, seal + open (LiveKit VP8 "
                    "delta)", "throughput", p, [Segment("livekit", 0, ops)],
                    {"frame_bytes": size})


def _av_timeline(traces: Traces, participants: int, n_frames: int, *, video: str,
                 audio: bool, key_every: int, rng: random.Random
                 ) -> list[tuple[int, str, bool, int, int, bytes]]:
    """Frames of ``participants`` in time order (10 ms ticks): Opus at 50/s when
    ``audio``, ``video`` at 30/s with a keyframe every ``key_every`` video frames
    (staggered by participant); deltas follow the trace in order from a random start."""
    deltas, keys, opus = traces.deltas[video], traces.keys[video], traces.opus
    d_pos = [rng.randrange(len(deltas)) for _ in range(participants)]
    a_pos = [rng.randrange(len(opus)) for _ in range(participants)]
    v_idx = [0] * participants
    stagger = [(i * key_every) // max(1, participants) for i in range(participants)]
    out: list[tuple[int, str, bool, int, int, bytes]] = []
    t = 0
    while len(out) < n_frames:
        for i in range(participants):
            if audio and t % 2 == 0:
                out.append((i, "opus", False, 1000 + i, t * 480, opus[a_pos[i] % len(opus)]))
                a_pos[i] += 1
            if t % 10 in (0, 3, 7):
                kf = (v_idx[i] + key_every - stagger[i]) % key_every == 0
                if kf:
                    data = keys[rng.randrange(len(keys))]
                else:
                    data = deltas[d_pos[i] % len(deltas)]
                    d_pos[i] += 1
                out.append((i, video, kf, 2000 + i, t * 900, data))
                v_idx[i] += 1
        t += 1
    return out[:n_frames]


def conference(traces: Traces, participants: int, n_frames: int, seed: int = SEED,
               decrypt: bool = True) -> Workload:
    rng = random.Random(seed)
    frames = _av_timeline(traces, participants, n_frames, video="vp8", audio=True,
                          key_every=60, rng=rng)
    ops = _ops_for("livekit", 0, frames, decrypt=decrypt)
    return Workload("conference", "conference mix: Opus 50/s + VP8 30/s (key every 2 s), "
                    "seal own + open others", "throughput", participants,
                    [Segment("livekit", 0, ops)], {"frames": len(frames)})


def heavy(traces: Traces, participants: int, n_frames: int, seed: int = SEED) -> Workload:
    rng = random.Random(seed + 1)
    h264 = _av_timeline(traces, participants, n_frames // 2, video="h264", audio=False,
                        key_every=30, rng=rng)
    sf = _av_timeline(traces, participants, n_frames - n_frames // 2, video="vp8",
                      audio=True, key_every=30, rng=rng)
    segs = [Segment("livekit", 0, _ops_for("livekit", 0, h264, decrypt=True)),
            Segment("sframe", HEAVY_SUITE, _ops_for("sframe", HEAVY_SUITE, sf, decrypt=True))]
    return Workload("heavy", "heavy mix: LiveKit H.264 (NAL/escaping) + SFrame 0x0001 "
                    "AES-CTR+HMAC, keyframe every 1 s", "throughput", participants, segs,
                    {"frames": len(h264) + len(sf), "sframe_suite": HEAVY_SUITE})


def ratchet_storm(traces: Traces, participants: int, n_frames: int,
                  seed: int = SEED) -> Workload:
    wl = conference(traces, participants, n_frames, seed + 2, decrypt=False)
    return Workload("ratchet-storm", "ratchet storm: PBKDF2 ratchets at 100/s while "
                    "conference frames (seal) flow at 4,000/s", "storm", participants,
                    wl.segments, {"ratchets_per_s": STORM_RATCHETS_PER_S,
                                  "frames_per_s": STORM_FRAMES_PER_S,
                                  "key": "passphrase (PBKDF2)"})


@dataclass(frozen=True)
class Scale:
    """How big a run is."""

    name: str
    traces: str
    runs: int
    size_ops: dict[int, int]
    conf_participants: int
    conf_frames: int
    heavy_participants: int
    heavy_frames: int
    storm_frames: int
    storm_s: float
    storm_runs: int
    all_pools_paced: bool  # latency and storm for every pool (else N workers only)
    latency_s: float
    probe_s: float
    latency_runs: int
    latency_workloads: tuple[str, ...]
    naive_cap: int
    node_cap: int
    node_runs: int
    node_timeout_s: float


SCALES = {
    "smoke": Scale(
        name="smoke", traces="smoke", runs=1,
        size_ops={100: 200, 1024: 200, 10240: 100, 102400: 30},
        conf_participants=4, conf_frames=150, heavy_participants=2, heavy_frames=80,
        storm_frames=400, storm_s=0.25, storm_runs=1, all_pools_paced=True,
        latency_s=0.2, probe_s=0.1, latency_runs=1, latency_workloads=("conference",),
        naive_cap=120, node_cap=0, node_runs=0, node_timeout_s=0.0),
    "quick": Scale(
        name="quick", traces="standard", runs=3,
        size_ops={100: 6_000, 1024: 6_000, 10240: 3_000, 102400: 600},
        conf_participants=8, conf_frames=5_000, heavy_participants=4, heavy_frames=2_000,
        storm_frames=6_000, storm_s=1.0, storm_runs=1, all_pools_paced=False,
        latency_s=0.5, probe_s=0.2, latency_runs=1, latency_workloads=("conference",),
        naive_cap=2_000, node_cap=1_500, node_runs=2, node_timeout_s=120.0),
    "full": Scale(
        name="full", traces="standard", runs=7,
        size_ops={100: 40_000, 1024: 40_000, 10240: 20_000, 102400: 4_000},
        conf_participants=8, conf_frames=24_000, heavy_participants=4, heavy_frames=8_000,
        storm_frames=15_000, storm_s=3.0, storm_runs=3, all_pools_paced=True,
        latency_s=1.5, probe_s=0.5, latency_runs=3,
        latency_workloads=("size-1KB", "conference", "heavy"),
        naive_cap=10_000, node_cap=6_000, node_runs=5, node_timeout_s=600.0),
}


def build(traces: Traces, scale: Scale, only: set[str] | None = None) -> dict[str, Workload]:
    out: dict[str, Workload] = {}
    for size in SIZES:
        if only is None or SIZE_NAMES[size] in only:
            out[SIZE_NAMES[size]] = size_sweep(size, scale.size_ops[size])
    if only is None or "conference" in only:
        out["conference"] = conference(traces, scale.conf_participants, scale.conf_frames)
    if only is None or "heavy" in only:
        out["heavy"] = heavy(traces, scale.heavy_participants, scale.heavy_frames)
    if only is None or "ratchet-storm" in only:
        out["ratchet-storm"] = ratchet_storm(traces, STORM_PARTICIPANTS, scale.storm_frames)
    return out
