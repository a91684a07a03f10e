"""Pool benchmark: a conference mix through inline sealing and the worker pool, side by
side in one run (issue 3's figures; issue 6 grows this into the full bench).

    python -m framecrypt.bench.pool                 # quick
    python -m framecrypt.bench.pool --frames 60000 --rounds 5 --json out.json

Mix per participant (DESIGN/issue 6): Opus 120 B at 50/s, VP8 deltas ~4 KB at 30/s,
a ~60 KB keyframe every 2 s; every participant's frames are encrypted, and every
sealed frame is then decrypted (as the other participants would). Frames are random
bytes of those sizes (content does not matter for VP8/Opus framing).

Figures: frames/s (wall), broker-process CPU µs per frame (all threads of the main
process, ZeroMQ's I/O thread included), what ``auto`` placed inline. Each contender
runs once per round, rounds interleaved; medians with min-max.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from typing import Any

from framecrypt import Frame, Pool, livekit
from framecrypt.tuning import tune_allocator


def conference_mix(n_frames: int, participants: int, seed: int = 7) -> dict[str, list[Frame]]:
    rng = random.Random(seed)
    out: dict[str, list[Frame]] = {}
    per = n_frames // participants
    for p in range(participants):
        frames: list[Frame] = []
        t = 0  # 10 ms ticks: 50 audio/s, 30 video/s (every 10/3 ticks), key every 2 s
        while len(frames) < per:
            if t % 2 == 0:
                frames.append(Frame(rng.randbytes(120), "opus", False, 1000 + p, t * 480))
            if t % 10 in (0, 3, 7):
                key = t % 200 == 0
                size = 60_000 if key else rng.randint(2_000, 6_000)
                frames.append(Frame(rng.randbytes(size), "vp8", key, 2000 + p, t * 900))
            t += 1
        out[f"p{p}"] = frames[:per]
    return out


def run_inline(mix: dict[str, list[Frame]]) -> tuple[float, float]:
    keys = {p: livekit.derive_key(p.encode().ljust(32, b"#")) for p in mix}
    c0, t0 = time.process_time(), time.perf_counter()
    count = 0
    for p, frames in mix.items():
        key = keys[p]
        sealed = [livekit.protect(f.data, key=key, codec=f.codec, keyframe=f.keyframe,
                                  ssrc=f.ssrc, timestamp=f.timestamp, send_count=i)
                  for i, f in enumerate(frames)]
        for f, s in zip(frames, sealed, strict=True):
            livekit.unprotect(s, key=key, codec=f.codec, keyframe=f.keyframe)
        count += 2 * len(frames)
    return time.perf_counter() - t0, time.process_time() - c0


async def run_pool(mix: dict[str, list[Frame]], chunk: int,
                   **kw: Any) -> tuple[float, float, dict[str, Any]]:
    async with Pool(**kw) as pool:
        for p in mix:
            await pool.set_key(p, p.encode().ljust(32, b"#"))
        # warm-up
        await pool.encrypt_many("p0", mix["p0"][:200])
        base = pool.stats()
        c0, t0 = time.process_time(), time.perf_counter()

        async def one(p: str, frames: list[Frame]) -> None:
            for i in range(0, len(frames), chunk):
                part = frames[i : i + chunk]
                sealed = await pool.encrypt_many(p, part)
                await pool.decrypt_many(p, [Frame(s, f.codec, f.keyframe)
                                            for s, f in zip(sealed, part, strict=True)])

        await asyncio.gather(*(one(p, fs) for p, fs in mix.items()))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        st = pool.stats()
        st["inline_share"] = ((st["frames_inline"] - base["frames_inline"]) /
                              max(1, st["frames_submitted"] - base["frames_submitted"]))
        return wall, cpu, st


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=24000, help="frames per direction")
    ap.add_argument("--participants", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=256, help="frames per encrypt_many call")
    ap.add_argument("--json", metavar="PATH")
    a = ap.parse_args(argv)
    tune_allocator()
    mix = conference_mix(a.frames, a.participants)
    n = 2 * sum(len(v) for v in mix.values())
    mean = sum(len(f.data) for v in mix.values() for f in v) / (n / 2)
    print(f"conference mix: {n} frame operations ({n // 2} encrypt + {n // 2} decrypt), "
          f"{a.participants} participants, mean frame {mean:.0f} B, {os.cpu_count()} CPUs",
          file=sys.stderr)
    contenders: dict[str, dict[str, Any] | None] = {"inline (pure core)": None}
    for tr in ("shm", "ipc"):
        for w in (1, 2):
            contenders[f"pool {tr} {w}w placement=pool"] = dict(
                workers=w, transport=tr, placement="pool")
    contenders["pool shm 2w placement=auto"] = dict(workers=2, transport="shm",
                                                     placement="auto")
    res: dict[str, dict[str, list[float]]] = {k: {"fps": [], "cpu_us": [], "inline": []}
                                              for k in contenders}
    for r in range(a.rounds):
        for name, kw in contenders.items():
            if kw is None:
                wall, cpu = run_inline(mix)
                share = 1.0
            else:
                wall, cpu, st = asyncio.run(run_pool(mix, a.chunk, **kw))
                share = st["inline_share"]
            res[name]["fps"].append(n / wall)
            res[name]["cpu_us"].append(cpu / n * 1e6)
            res[name]["inline"].append(share)
            print(f"  round {r + 1}/{a.rounds} {name}: {n / wall:,.0f} fr/s", file=sys.stderr)
    base = statistics.median(res["inline (pure core)"]["fps"])
    print(f"\n{'contender':34s} {'frames/s':>18s} {'x inline':>8s} {'broker µs/frame':>16s}"
          f" {'inline share':>12s}")
    table = {}
    for name, v in res.items():
        fps = statistics.median(v["fps"])
        cpu = statistics.median(v["cpu_us"])
        table[name] = {"fps_median": fps, "fps_min": min(v["fps"]), "fps_max": max(v["fps"]),
                       "broker_cpu_us_per_frame": cpu, "ratio_vs_inline": fps / base,
                       "inline_share": statistics.median(v["inline"])}
        print(f"{name:34s} {fps:>9,.0f} [{min(v['fps']):,.0f}-{max(v['fps']):,.0f}]"
              f" {fps / base:>7.2f}x {cpu:>16.2f} {statistics.median(v['inline']):>11.0%}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"frames": n, "mean_frame_bytes": mean, "results": table}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
