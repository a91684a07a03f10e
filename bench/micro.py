"""Micro-benchmark of the pure core: protect/unprotect per frame size and format,
side by side with bare ``AESGCM.encrypt`` in the same run; and
:func:`protect_vs_aesgcm`, the per-call figure of issue 14 (``framecrypt bench``
runs it and reports it among its targets).

    python -m framecrypt.bench.micro            # quick (~20 s)
    python -m framecrypt.bench.micro --full     # more rounds
    python -m framecrypt.bench.micro --json out.json

Contenders are timed in interleaved rounds (A B C … A B C …) so drift on a noisy
2-core machine hits all of them alike; each figure is the median over rounds, with
min–max, and every ratio is computed within a round, then the median is taken.
Targets (issue 2): ≤ 1.0 µs per 1 KB frame, ≤ 8 µs per 100 KB frame, framing
overhead ratio ≤ 1.3× bare AES-GCM.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from framecrypt import __version__, jitsi, livekit, sframe
from framecrypt.tuning import tune_allocator
from framecrypt.workers import native

SIZES = (100, 1024, 10 * 1024, 100 * 1024)
SEED_PERCALL = 20261206
PERCALL_FLOOR = "AESGCM.encrypt (cryptography)"
PERCALL_NATIVE = "livekit.protect (native)"


@dataclass
class Case:
    name: str
    fn: Callable[[], object]


def cases_for(size: int, rng: random.Random) -> list[Case]:
    frame = rng.randbytes(size)
    lk_key = livekit.derive_key(rng.randbytes(32))
    aes = AESGCM(lk_key)
    iv = rng.randbytes(12)
    header, body = frame[:3], frame[3:]
    lk_sealed = livekit.protect(frame, key=lk_key, codec="vp8", keyframe=False, ssrc=1,
                                timestamp=2, send_count=3)
    jk = jitsi.derive_key(rng.randbytes(32))
    j_sealed = jitsi.protect(frame, key=jk, codec="vp8", keyframe=False, ssrc=1, timestamp=2,
                             send_count=3)
    base = rng.randbytes(16)
    sf_sealed = {s: sframe.protect(s, base, 7, 1000, frame) for s in (1, 4, 5)}
    out = [
        Case("AESGCM.encrypt (floor)", lambda: aes.encrypt(iv, body, header)),
        Case("livekit protect vp8", lambda: livekit.protect(
            frame, key=lk_key, codec="vp8", keyframe=False, ssrc=1, timestamp=2, send_count=3)),
        Case("livekit unprotect vp8", lambda: livekit.unprotect(
            lk_sealed, key=lk_key, codec="vp8", keyframe=False)),
        Case("jitsi protect vp8", lambda: jitsi.protect(
            frame, key=jk, codec="vp8", keyframe=False, ssrc=1, timestamp=2, send_count=3)),
        Case("jitsi unprotect vp8", lambda: jitsi.unprotect(
            j_sealed, key=jk, codec="vp8", keyframe=False)),
    ]
    for s in (4, 5, 1):
        out.append(Case(f"sframe protect 0x{s:04x}",
                        lambda s=s: sframe.protect(s, base, 7, 1000, frame)))  # type: ignore[misc]
        out.append(Case(f"sframe unprotect 0x{s:04x}",
                        lambda s=s: sframe.unprotect(s, base, sf_sealed[s])))  # type: ignore[misc]
    return out


def time_round(fn: Callable[[], object], n: int) -> float:
    """µs per call over n calls (gc off)."""
    gc.disable()
    try:
        t = time.perf_counter_ns()
        for _ in range(n):
            fn()
        return (time.perf_counter_ns() - t) / n / 1000
    finally:
        gc.enable()


def run(rounds: int, budget_s: float, progress: bool) -> dict[str, object]:
    rng = random.Random(20261122)
    results: dict[str, object] = {}
    for size in SIZES:
        cases = cases_for(size, rng)
        # calibrate: calls per round so that one round of one case takes ~budget/…
        per_case = budget_s / (len(SIZES) * len(cases) * rounds)
        n = {c.name: max(50, int(per_case / max(time_round(c.fn, 200) * 1e-6, 1e-7)))
             for c in cases}
        samples: dict[str, list[float]] = {c.name: [] for c in cases}
        ratios: dict[str, list[float]] = {c.name: [] for c in cases}
        for r in range(rounds):
            this = {c.name: time_round(c.fn, n[c.name]) for c in cases}
            floor = this["AESGCM.encrypt (floor)"]
            for k, v in this.items():
                samples[k].append(v)
                ratios[k].append(v / floor)
            if progress:
                print(f"\r  {size:>6} B: round {r + 1}/{rounds}", end="", file=sys.stderr,
                      flush=True)
        if progress:
            print(file=sys.stderr)
        results[str(size)] = {
            k: {"us_median": statistics.median(v), "us_min": min(v), "us_max": max(v),
                "ratio_vs_floor": statistics.median(ratios[k])}
            for k, v in samples.items()
        }
    return results


def protect_vs_aesgcm(rounds: int, calls: int, size: int = 1024) -> dict[str, Any]:
    """Issue 14's per-call figure: ``livekit.protect`` of one ``size``-byte VP8 delta
    frame on the native path (and the pure core, for reference) against a bare
    cryptography ``AESGCM.encrypt`` of the same payload with a 10-byte AAD, in
    interleaved rounds of ``calls`` calls each; ratios within each round, then the
    median. The native cases are absent where the extension does not run."""
    rng = random.Random(SEED_PERCALL)
    frame = rng.randbytes(size)
    key = livekit.derive_key(rng.randbytes(32))
    aes = AESGCM(key)
    iv = rng.randbytes(12)
    aad = frame[:10]

    def protect() -> object:
        return livekit.protect(frame, key=key, codec="vp8", keyframe=False, ssrc=1,
                               timestamp=2, send_count=3)

    cases: list[tuple[str, str | None, Callable[[], object]]] = [
        (PERCALL_FLOOR, None, lambda: aes.encrypt(iv, frame, aad))]
    if native.NATIVE is not None:
        nat = native.NATIVE.AesGcm(key)
        cases += [(PERCALL_NATIVE, "auto", protect),
                  ("native AesGcm.encrypt (bare)", "auto", lambda: nat.encrypt(iv, frame, aad))]
    cases.append(("livekit.protect (pure Python)", "python", protect))
    samples: dict[str, list[float]] = {c[0]: [] for c in cases}
    ratios: dict[str, list[float]] = {c[0]: [] for c in cases}
    for _name, path, fn in cases:  # warm the caches on each path
        with native.using(path) if path else contextlib.nullcontext():
            time_round(fn, 200)
    for r in range(rounds):
        this = {}
        for name, path, fn in cases[r % len(cases):] + cases[:r % len(cases)]:
            with native.using(path) if path else contextlib.nullcontext():
                this[name] = time_round(fn, calls)
        for k, v in this.items():
            samples[k].append(v)
            ratios[k].append(v / this[PERCALL_FLOOR])
    info = native.info()
    return {"frame_bytes": size, "aad_bytes": len(aad), "rounds": rounds, "calls": calls,
            "path": info.get("path"), "backend": info.get("backend_version"),
            "cases": {k: {"us_median": statistics.median(v), "us_min": min(v),
                          "us_max": max(v), "ratio_vs_aesgcm": statistics.median(ratios[k])}
                      for k, v in samples.items()}}


def targets(res: dict[str, object]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for fmt in ("livekit protect vp8", "sframe protect 0x0004"):
        kb = res["1024"][fmt]  # type: ignore[index]
        big = res[str(100 * 1024)][fmt]  # type: ignore[index]
        out.append({"name": f"{fmt}: µs per 1 KB frame", "goal": "<= 1.0",
                    "measured": round(kb["us_median"], 3), "pass": kb["us_median"] <= 1.0})
        out.append({"name": f"{fmt}: µs per 100 KB frame", "goal": "<= 8.0",
                    "measured": round(big["us_median"], 3), "pass": big["us_median"] <= 8.0})
        worst = max(res[str(s)][fmt]["ratio_vs_floor"] for s in SIZES)  # type: ignore[index]
        out.append({"name": f"{fmt}: worst ratio vs bare AES-GCM", "goal": "<= 1.3",
                    "measured": round(worst, 3), "pass": worst <= 1.3})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="more rounds, longer")
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)
    rounds, budget = (15, 90.0) if args.full else (7, 15.0)
    tuned = tune_allocator()
    print(f"framecrypt {__version__} micro-bench: Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, {rounds} interleaved rounds, allocator tuned: {tuned}",
          file=sys.stderr)
    res = run(rounds, budget, progress=True)
    for size in SIZES:
        print(f"\n{size} B frames            µs median [min–max]   ×floor")
        for name, v in res[str(size)].items():  # type: ignore[attr-defined]
            print(f"  {name:26s} {v['us_median']:8.3f} [{v['us_min']:.3f}–{v['us_max']:.3f}]"
                  f"  {v['ratio_vs_floor']:5.2f}×")
    tg = targets(res)
    print("\ntargets")
    for t in tg:
        verdict = "PASS" if t["pass"] else "MISS"
        print(f"  {verdict}  {t['name']}: {t['measured']} (goal {t['goal']})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": res, "targets": tg, "python": platform.python_version(),
                       "framecrypt": __version__, "allocator_tuned": tuned}, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
