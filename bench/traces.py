"""Real encoded frames for the benchmark, generated once and cached on disk.

VP8 and H.264 come from PyAV encoding :mod:`framecrypt.samples`' moving test pattern
at a few resolutions and bitrates (deltas from 320x240 and 640x360 streams, keyframes
from 720p/1080p streams at high bitrate so they are tens of KB), Opus from its tone.
The set is written to ``bench/.cache/`` (or ``$FRAMECRYPT_BENCH_CACHE``) keyed by the
spec and the PyAV/FFmpeg versions, so every contender of every run sees the same bytes.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

# (pool, codec, width, height, bitrate, frames, gop): "delta" pools keep the deltas of
# long-GOP streams, "key" pools the keyframes of short-GOP high-bitrate streams.
VideoSpec = tuple[str, str, int, int, int, int, int]

STANDARD: tuple[VideoSpec, ...] = (
    ("delta", "vp8", 640, 360, 1_000_000, 300, 300),
    ("delta", "vp8", 320, 240, 500_000, 150, 150),
    ("key", "vp8", 1920, 1080, 16_000_000, 32, 4),
    ("delta", "h264", 640, 360, 1_000_000, 300, 300),
    ("delta", "h264", 320, 240, 500_000, 150, 150),
    ("key", "h264", 1280, 720, 10_000_000, 40, 4),
)
STANDARD_OPUS = 500

# a few seconds to make: CI's smoke run has no cache
SMOKE: tuple[VideoSpec, ...] = (
    ("delta", "vp8", 160, 120, 200_000, 24, 24),
    ("key", "vp8", 160, 120, 400_000, 8, 2),
    ("delta", "h264", 160, 120, 200_000, 24, 24),
    ("key", "h264", 160, 120, 400_000, 8, 2),
)
SMOKE_OPUS = 50


@dataclass(frozen=True)
class Traces:
    """Frames by pool: ``deltas[codec]``, ``keys[codec]``, ``opus``; ``meta`` says how."""

    deltas: dict[str, list[bytes]]
    keys: dict[str, list[bytes]]
    opus: list[bytes]
    meta: dict[str, Any]

    def describe(self) -> dict[str, Any]:
        def stats(xs: list[bytes]) -> dict[str, int]:
            n = [len(x) for x in xs]
            return {"count": len(n), "mean_bytes": sum(n) // max(1, len(n)),
                    "min_bytes": min(n, default=0), "max_bytes": max(n, default=0)}

        out: dict[str, Any] = {f"{c} deltas": stats(v) for c, v in self.deltas.items()}
        out |= {f"{c} keyframes": stats(v) for c, v in self.keys.items()}
        out["opus"] = stats(self.opus)
        return out


def cache_dir() -> Path:
    env = os.environ.get("FRAMECRYPT_BENCH_CACHE")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent / ".cache"
    try:
        here.mkdir(exist_ok=True)
        if os.access(here, os.W_OK):
            return here
    except OSError:
        pass
    return Path.home() / ".cache" / "framecrypt-bench"


def _encode_job(spec: VideoSpec) -> tuple[VideoSpec, list[tuple[bool, bytes]]]:
    from framecrypt import samples

    _pool, codec, w, h, br, n, gop = spec
    frames = samples.video(codec, n, w, h, gop, br)
    return spec, [(f.keyframe, f.data) for f in frames]


def _opus_job(count: int) -> list[bytes]:
    from framecrypt import samples

    return [f.data for f in samples.audio(count)]


def _versions() -> dict[str, Any]:
    import av

    libs = getattr(av, "library_versions", {})
    return {"av": av.__version__, "libs": {k: list(v) for k, v in sorted(libs.items())}}


def load(kind: str = "standard", *, progress: bool = True) -> Traces:
    """The trace set ``kind`` ("standard" | "smoke"), from the cache or made now."""
    specs, n_opus = (SMOKE, SMOKE_OPUS) if kind == "smoke" else (STANDARD, STANDARD_OPUS)
    ident = {"specs": [list(s) for s in specs], "opus": n_opus, **_versions()}
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"traces-{kind}-{key}.msgpack"
    if path.is_file():
        try:
            raw = msgpack.unpackb(path.read_bytes(), raw=False)
            return Traces(raw["deltas"], raw["keys"], raw["opus"], raw["meta"])
        except (OSError, ValueError, KeyError, msgpack.ExtraData):
            pass  # a broken cache is made again
    t0 = time.perf_counter()
    if progress:
        print(f"generating {kind} traces with PyAV ({len(specs)} video streams, {n_opus} Opus"
              f" frames), cached in {path.parent} …", file=sys.stderr, flush=True)
    deltas: dict[str, list[bytes]] = {}
    keys: dict[str, list[bytes]] = {}
    made: dict[VideoSpec, list[tuple[bool, bytes]]] = {}
    if kind == "smoke":
        for spec in specs:
            made[spec] = _encode_job(spec)[1]
        opus = _opus_job(n_opus)
    else:
        import multiprocessing as mp

        workers = max(1, min(len(specs), os.cpu_count() or 1))
        with concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=mp.get_context("spawn")) as ex:
            # longest first, so the two cores finish together
            order = sorted(specs, key=lambda s: -s[2] * s[3] * s[5])
            futs = [ex.submit(_encode_job, s) for s in order]
            fo = ex.submit(_opus_job, n_opus)
            for fut in concurrent.futures.as_completed(futs):
                spec, frames = fut.result()
                made[spec] = frames
                if progress:
                    print(f"  {spec[1]} {spec[2]}x{spec[3]} @ {spec[4] // 1000} kb/s: "
                          f"{len(frames)} frames", file=sys.stderr, flush=True)
            opus = fo.result()
    for spec in specs:  # spec order: deterministic pools
        pool, codec = spec[0], spec[1]
        for kf, data in made[spec][1:] if pool == "delta" else made[spec]:
            if pool == "delta" and not kf:
                deltas.setdefault(codec, []).append(data)
            elif pool == "key" and kf:
                keys.setdefault(codec, []).append(data)
    meta = {"kind": kind, "key": key, **ident,
            "generated_s": round(time.perf_counter() - t0, 1)}
    traces = Traces(deltas, keys, opus, meta)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(msgpack.packb({"deltas": deltas, "keys": keys, "opus": opus,
                                       "meta": meta}, use_bin_type=True))
        os.replace(tmp, path)
    except OSError as e:
        print(f"  (trace cache not written: {e})", file=sys.stderr)
    if progress:
        print(f"  traces ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return traces
