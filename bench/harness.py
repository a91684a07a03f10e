"""The benchmark harness: every contender on every workload, side by side in one run.

See ``bench/README.md`` for the method. Entry points: ``framecrypt bench`` and
``python -m framecrypt.bench`` (both end in :func:`run`).

This module runs the whole: which contenders and workloads (``make_contenders`` in
:mod:`.contenders`), the Python contenders on one event loop (workload by workload,
the phases in :mod:`.phases`, one timed run in :mod:`.runs`), the livekit-client
worker under Node (:mod:`.browser`), the run's metadata, the report.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import fnmatch
import gc
import json
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

from framecrypt.bench import browser, micro, progress, report
from framecrypt.bench.contenders import Contender, PoolContender, make_contenders
from framecrypt.bench.measure import hardware_line, jsonable, summary
from framecrypt.bench.phases import latency_phase, storm_phase, throughput_phase
from framecrypt.bench.progress import say
from framecrypt.bench.traces import load as load_traces
from framecrypt.bench.workloads import SCALES, WORKLOADS, Scale, Workload, build

# the per-call figure (issue 14): interleaved rounds × calls per round and case
PERCALL = {"smoke": (3, 500), "quick": (15, 10_000), "full": (31, 20_000)}


def _selected(name: str, patterns: list[str] | None) -> bool:
    return patterns is None or any(fnmatch.fnmatchcase(name, p) for p in patterns)


def skipped(reason: str) -> dict[str, Any]:
    return {"status": "skipped", "reason": reason}


async def run_python(args: argparse.Namespace, scale: Scale, wls: dict[str, Workload],
                     res: dict[str, Any]) -> None:
    cs = make_contenders(scale, args)
    res["contenders"] = {c.name: c.config() for c in cs}
    res["contenders"][browser.NAME] = {"kind": "node", "description": browser.DESCRIPTION}
    chosen = [c for c in cs if _selected(c.name, args.contenders)]
    for wname in WORKLOADS:
        res["results"][wname] = {c.name: skipped("not selected") for c in cs}
        res["results"][wname][browser.NAME] = skipped("not selected")
    n_cpu = os.cpu_count() or 1
    say(f"starting {len(chosen)} contenders "
        f"({sum(isinstance(c, PoolContender) for c in chosen)} pools)")
    try:
        await asyncio.gather(*(c.start() for c in chosen))
        for wname, wl in wls.items():
            table = res["results"][wname]
            active: list[Contender] = []
            eff: dict[str, Workload] = {}
            for c in chosen:
                why = c.skip_reason(wl)
                if why:
                    table[c.name] = skipped(why)
                    continue
                if (wl.kind == "storm" and isinstance(c, PoolContender)
                        and not scale.all_pools_paced and c.workers != n_cpu):
                    table[c.name] = skipped(f"storm runs {n_cpu}-worker pools only "
                                            "in this mode (--full runs all)")
                    continue
                cap = c.op_cap()
                eff[c.name] = wl.subsample(cap) if cap else wl
                active.append(c)
            say(f"{wname}: {wl.ops} ops, {wl.nbytes / 1e6:.1f} MB; preparing "
                f"{len(active)} contenders")
            await asyncio.gather(*(c.prepare(eff[c.name]) for c in active))
            health0 = {c.name: c.health() for c in active}
            # the harness's own long-lived data (traces, prepared frames of every
            # contender: millions of objects) out of the cyclic GC, whose full passes
            # over it would otherwise stall the loop for tens of ms and be measured as
            # framecrypt's latency; what the contenders allocate while running is not
            gc.collect()
            gc.freeze()
            try:
                if wl.kind == "storm":
                    await storm_phase(active, eff, scale, res)
                else:
                    await throughput_phase(active, eff, scale, res, wname)
                    if wname in scale.latency_workloads:
                        await latency_phase(active, eff, scale, res, wname)
            finally:
                for c in active:
                    h0, h1 = health0[c.name], c.health()
                    trouble = {k: v - h0.get(k, 0) for k, v in h1.items() if v != h0.get(k, 0)}
                    if trouble and isinstance(table.get(c.name), dict):
                        table[c.name]["pool_events"] = trouble
                        say(f"{wname}: {c.name} pool events: {trouble}")
                    await c.unprepare(eff[c.name])
                gc.unfreeze()
    finally:
        for c in chosen:
            try:
                await c.close()
            except Exception as e:  # keep closing the others
                say(f"closing {c.name}: {e!r}")

def run_node(args: argparse.Namespace, scale: Scale, wls: dict[str, Workload],
             res: dict[str, Any]) -> None:
    table = {w: res["results"][w] for w in res["results"]}
    name = browser.NAME
    if scale.name == "smoke":
        why = "not run in --smoke (CI)"
    elif args.no_node:
        why = "--no-node"
    elif not _selected(name, args.contenders):
        why = "not selected"
    else:
        why = browser.unavailable() or ""
    targets_wl = [w for w in wls.values() if w.kind == "throughput"]
    for wn in WORKLOADS:
        if wn in wls and wls[wn].kind == "storm":
            table[wn][name] = skipped("no PBKDF2 ratchet path driven here")
        elif why:
            table[wn][name] = skipped(why)
    if why or not targets_wl:
        if why:
            say(f"{name}: skipped ({why})")
        return
    subs = [w.subsample(scale.node_cap) for w in targets_wl]
    say(f"{name}: running {len(subs)} workloads under Node (≤ {scale.node_cap} ops each)")
    try:
        out = browser.run(subs, warmup=1, runs=scale.node_runs, timeout_s=scale.node_timeout_s)
    except (RuntimeError, OSError, ValueError) as exc:
        for sw in subs:
            table[sw.name][name] = {"status": "error", "reason": str(exc)[:500]}
        say(f"{name}: failed: {exc}")
        return
    res["meta"]["node"] = out.get("node")
    res["meta"]["livekit_client"] = out.get("livekit_client_version")
    res["contenders"][name]["worker_sha256"] = out.get("worker_sha256")
    for w in subs:
        runs = [r for r in out["results"].get(w.name, []) if not r.get("warm")]
        if not runs:
            table[w.name][name] = {"status": "error", "reason": "no runs reported"}
            continue
        e: dict[str, Any] = {
            "status": "ok", "runs": len(runs), "ops_per_run": runs[0]["frames_in"],
            "frames_per_s": summary([r["frames_in"] / r["wall_s"] for r in runs]),
            "gb_per_s": summary([r["bytes_in"] / r["wall_s"] / 1e9 for r in runs]),
            "us_per_frame": summary([r["wall_s"] / r["frames_in"] * 1e6 for r in runs]),
            "broker_cpu_us_per_frame": None,
            "worker_cpu_us_per_frame": summary([r["cpu_s"] / r["frames_in"] * 1e6
                                                for r in runs]),
            "cpu_frames_per_s": statistics.median(r["frames_in"] / r["cpu_s"] for r in runs),
            "peak_rss_mb": {"main": None, "workers": out.get("max_rss_mb")},
            "frames_dropped": sum(r["frames_in"] - r["frames_out"] for r in runs),
            "pipe_errors": sum(r["pipe_errors"] for r in runs),
            "subsampled_every": w.info.get("subsampled_every"),
        }
        if "sframe" in {s.fmt for s in wls[w.name].segments}:
            e["partial"] = "LiveKit H.264 part only (livekit-client has no SFrame)"
        for base in ("inline", "floor"):
            b = res["results"][w.name].get(base, {})
            if b.get("status") == "ok" and e["frames_per_s"]:
                e[f"ratio_vs_{base}"] = e["frames_per_s"]["median"] / b["frames_per_s"]["median"]
        table[w.name][name] = e
        say(f"{name}: {w.name}: {e['frames_per_s']['median']:,.0f} fr/s, "
            f"{e['worker_cpu_us_per_frame']['median']:.0f} CPU µs/frame")


def _versions() -> dict[str, Any]:
    import cryptography
    import zmq

    from framecrypt import __version__

    try:
        import av

        av_v = av.__version__
    except ImportError:
        av_v = None
    return {"python": platform.python_version(), "framecrypt": __version__,
            "cryptography": cryptography.__version__, "pyzmq": zmq.__version__,
            "libzmq": zmq.zmq_version(), "av": av_v}


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def run(args: argparse.Namespace) -> int:
    progress.restart()
    mode = "smoke" if args.smoke else "full" if args.full else "quick"
    scale = SCALES[mode]
    if args.runs:
        scale = dataclasses.replace(scale, runs=args.runs)
    from framecrypt.tuning import tune_allocator

    tuned = tune_allocator()
    say(f"framecrypt bench, {mode} mode: {hardware_line()}")
    traces = load_traces(scale.traces)
    only = None
    if args.workloads:
        only = {w for w in WORKLOADS if _selected(w, args.workloads.split(","))}
    wls = build(traces, scale, only)
    started = datetime.datetime.now(datetime.UTC)
    res: dict[str, Any] = {
        "meta": {"mode": mode, "date": started.strftime("%Y-%m-%d %H:%M UTC"),
                 "hardware": hardware_line(), "cpus": os.cpu_count() or 1,
                 "runs": scale.runs, "chunk": args.chunk, "allocator_tuned": tuned,
                 "loadavg_before": _loadavg(), "note": args.note or "",
                 "argv": sys.argv[1:], **_versions(), "node": None, "livekit_client": None,
                 "traces": {**traces.meta, "pools": traces.describe()}},
        "workloads": {name: wl.describe() for name, wl in wls.items()},
        "contenders": {},
        "results": {},
    }
    asyncio.run(run_python(args, scale, wls, res))
    rounds, calls = PERCALL[mode]
    say(f"per call: livekit.protect vs AESGCM.encrypt, {rounds} rounds of {calls:,} calls")
    res["percall"] = micro.protect_vs_aesgcm(rounds, calls)
    run_node(args, scale, wls, res)
    res["meta"]["loadavg_after"] = _loadavg()
    res["meta"]["wall_s"] = progress.elapsed()
    res["targets"] = report.targets(res)
    res["targets_v1"] = report.targets_v1(res)
    res = jsonable(res)
    md = report.markdown(res)
    print(md)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(res, indent=1))
        path.with_suffix(".md").write_text(md)
        say(f"wrote {path} and {path.with_suffix('.md')}")
        if not args.no_plot:
            why = report.plot(res, path.with_suffix(".png"))
            say(why or f"wrote {path.with_suffix('.png')}")
    say(f"done in {progress.elapsed():.0f} s")
    return 0
