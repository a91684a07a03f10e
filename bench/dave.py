"""DAVE: framecrypt against libdave (dave-py) and davey, the same frames, one run.

    python -m framecrypt.bench.dave                      # 1 and 2 pool workers
    python -m framecrypt.bench.dave --frames 500 --rounds 5 --workers 2 --json dave.json

Each round, every contender (in a rotated order) seals each workload's frames (Opus
20 ms packets, VP8 and H.264 video of framecrypt.samples) and opens the frames the
framecrypt member of the call sealed that round (:mod:`.contenders.dave`). Reported:
the median over rounds of µs per frame (wall time of the whole workload ÷ frames) per
contender, workload and direction, and framecrypt's ratios against dave-py and davey;
then issue 17's targets (:func:`framecrypt.bench.targets.dave_targets`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from typing import Any

from framecrypt.bench.contenders import dave as dc
from framecrypt.bench.targets import dave_targets


async def measure(frames: int, rounds: int, workers: list[int]) -> dict[str, Any]:
    from framecrypt import dave
    from framecrypt.workers.native import info

    call = dc.form_call()
    source = dave.Sender(dave.KeyRatchet(call.fc_secret))  # the framecrypt member's stream
    wls = dc.workloads(frames)
    cs = dc.contenders(workers)
    samples: dict[tuple[str, str, str], list[float]] = {}
    for c in cs:
        await c.start(call)
    try:
        for r in range(rounds):
            sealed = {wl.name: [source.seal(wl.codec, f) for f in wl.frames] for wl in wls}
            for c in cs[r % len(cs):] + cs[: r % len(cs)]:
                for wl in wls:
                    t = time.perf_counter()
                    out = await c.seal(wl)
                    t_seal = time.perf_counter() - t
                    t = time.perf_counter()
                    got = await c.open(wl, sealed[wl.name])
                    t_open = time.perf_counter() - t
                    if r == 0:
                        _check(c.name, wl, out, got)
                    n = len(wl.frames)
                    samples.setdefault((c.name, wl.name, "seal"), []).append(t_seal / n * 1e6)
                    samples.setdefault((c.name, wl.name, "open"), []).append(t_open / n * 1e6)
    finally:
        for c in cs:
            await c.close()
    results: dict[str, Any] = {}
    for (name, wl_name, op), v in samples.items():
        results.setdefault(wl_name, {}).setdefault(name, {})[op] = {
            "us_per_frame": statistics.median(v), "rounds": len(v)}
    meta = {"cpus": os.cpu_count(), "frames": {wl.name: len(wl.frames) for wl in wls},
            "mean_bytes": {wl.name: sum(map(len, wl.frames)) // len(wl.frames) for wl in wls},
            "rounds": rounds, "workers": workers, "native": info()}
    res: dict[str, Any] = {"meta": meta, "results": results}
    res["targets"] = dave_targets(res)
    return res


def _check(name: str, wl: dc.Workload, sealed: list[bytes], opened: list[bytes]) -> None:
    from framecrypt import dave

    want = [dave.as_received(f, wl.codec) for f in wl.frames]
    if [bytes(x) for x in opened] != want:
        raise AssertionError(f"{name} opened {wl.name} frames wrong")
    if len(sealed) != len(wl.frames) or not all(dave.is_dave_frame(bytes(s)) for s in sealed):
        raise AssertionError(f"{name} sealed {wl.name} frames wrong")


def table(res: dict[str, Any]) -> str:
    lines = []
    for wl, by in res["results"].items():
        size = res["meta"]["mean_bytes"][wl]
        lines.append(f"\n{wl} (mean {size} B, {res['meta']['frames'][wl]} frames)")
        lines.append(f"  {'contender':32} {'seal µs':>9} {'open µs':>9}"
                     f" {'seal vs dave-py':>16} {'open vs dave-py':>16} {'vs davey':>12}")
        base, davey = by.get("dave-py", {}), by.get("davey", {})
        for name, v in by.items():
            s, o = v["seal"]["us_per_frame"], v["open"]["us_per_frame"]

            def ratio(ref: dict[str, Any], op: str, mine: float) -> str:
                return f"{ref[op]['us_per_frame'] / mine:.2f}x" if ref else "-"

            lines.append(f"  {name:32} {s:9.2f} {o:9.2f} {ratio(base, 'seal', s):>16}"
                         f" {ratio(base, 'open', o):>16}"
                         f" {ratio(davey, 'seal', s) + '/' + ratio(davey, 'open', o):>12}")
    lines.append("\n(ratios: the other's µs per frame ÷ this contender's: above 1x is faster)")
    for t in res["targets"]:
        mark = {True: "PASS", False: "MISS", None: "n/a"}[t["pass"]]
        lines.append(f"{mark:5} {t['name']}: goal {t['goal']}, measured {t['measured']}"
                     f" ({t['note']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m framecrypt.bench.dave",
                                 description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--frames", type=int, default=1000, help="Opus frames (video: ≤ 120)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--workers", default="1,2", help="pool worker counts, comma-separated")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    res = asyncio.run(measure(args.frames, args.rounds, workers))
    print(table(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
