"""The phases of one workload, each over the contenders active on it, each filling
``res["results"][workload]``: throughput (a verified warm-up, timed rounds in rotating
order, ratios within each round), latency (paced at 50 % of the batch max, judged
overloaded or not, then at a rate the path sustains) and the ratchet storm."""

from __future__ import annotations

import asyncio
import os
import statistics
from typing import Any

from framecrypt.bench.contenders import Contender, PoolContender
from framecrypt.bench.measure import summary
from framecrypt.bench.progress import say
from framecrypt.bench.runs import compile_runs, measure_run, paced
from framecrypt.bench.workloads import (
    STORM_FRAMES_PER_S,
    STORM_RATCHETS_PER_S,
    Scale,
    Workload,
)


async def throughput_phase(active: list[Contender], eff: dict[str, Workload], scale: Scale,
                           res: dict[str, Any], wname: str) -> None:
    table = res["results"][wname]
    runs: dict[str, list[dict[str, Any]]] = {c.name: [] for c in active}
    failed: dict[str, str] = {}
    for c in active:  # warm-up, verifying every result
        try:
            r = await measure_run(c, eff[c.name], verify=True)
            if r["bad"]:
                failed[c.name] = f"{r['bad']} wrong results in the verified warm-up"
        except Exception as e:
            failed[c.name] = f"warm-up failed: {e!r}"
    say(f"{wname}: warmed up" + (f" ({len(failed)} failed)" if failed else ""))
    live = [c for c in active if c.name not in failed]
    for rnd in range(scale.runs):
        k = rnd % max(1, len(live))
        for c in live[k:] + live[:k]:  # rotate who goes first
            if c.name in failed:
                continue
            try:
                r = await measure_run(c, eff[c.name])
            except Exception as e:
                failed[c.name] = f"run failed: {e!r}"
                continue
            runs[c.name].append(r)
        say(f"{wname}: run {rnd + 1}/{scale.runs} "
            + ", ".join(f"{c.name} {runs[c.name][-1]['ops'] / runs[c.name][-1]['wall']:,.0f}"
                        for c in live if runs[c.name])[:300] + " fr/s")
    for c in active:
        if c.name in failed:
            table[c.name] = {"status": "error", "reason": failed[c.name]}
            say(f"  {c.name}: {failed[c.name]}")
            continue
        entry = compile_runs(runs[c.name], eff[c.name].ops)
        if eff[c.name].info.get("subsampled_every"):
            entry["subsampled_every"] = eff[c.name].info["subsampled_every"]
        table[c.name] = entry
    # ratios within each round (drift hits both sides alike), then the median
    for base in ("inline", "floor", "limit", "inline-python", "inline-batch-python"):
        if base not in runs or base in failed or not runs[base]:
            continue
        for c in active:
            ent = table[c.name]
            if ent.get("status") != "ok":
                continue
            mine = runs[c.name]
            per = [(m["ops"] / m["wall"]) / (b["ops"] / b["wall"])
                   for m, b in zip(mine, runs[base], strict=False)]
            ent[f"ratio_vs_{base}"] = statistics.median(per) if per else None


def _overloaded(g: dict[str, Any]) -> bool:
    """The path did not keep up: its backlog passed 20 ms of offered frames (the run
    was cut short), it completed < 90 % of the offered rate, or frames queued (median
    latency over 20 ms, more than half a video frame interval)."""
    return bool(g["aborted_backlog"] or g["achieved_per_s"] < 0.9 * g["offered_per_s"]
                or g["p50_us"] > 20_000)


def _lat_summary(got: list[dict[str, Any]]) -> dict[str, Any]:
    lat: dict[str, Any] = {k: statistics.median(g[k] for g in got) for k in (
        "offered_per_s", "achieved_per_s", "p50_us", "p99_us", "max_us",
        "loop_lag_p50_ms", "loop_lag_p99_ms", "loop_lag_max_ms")}
    lat.update(frames=got[0]["frames"], runs=len(got), errors=sum(g["errors"] for g in got),
               incomplete=any(g["incomplete"] for g in got),
               p99_us_min=min(g["p99_us"] for g in got),
               p99_us_max=max(g["p99_us"] for g in got),
               overloaded=any(_overloaded(g) for g in got))
    return lat


async def settle_all(cs: list[Contender]) -> None:
    """Every pool shares this event loop: an overloaded run can starve the heartbeats
    of all of them, so wait until every contender has its workers back."""
    await asyncio.gather(*(c.settle() for c in cs))


async def _paced_runs(c: Contender, wl: Workload, rate: float, duration: float,
                      runs: int, active: list[Contender]) -> list[dict[str, Any]]:
    got = []
    for _ in range(runs):
        await c.before_run(wl)
        try:
            c.set_paced_workload(wl)
            got.append(await paced(c, wl, rate, duration))
        finally:
            await c.after_run(wl)
            await settle_all(active)
    return got


async def latency_phase(active: list[Contender], eff: dict[str, Workload], scale: Scale,
                        res: dict[str, Any], wname: str) -> None:
    """Added latency at 50 % of each contender's max (the target's definition). When
    the one-call-per-frame path cannot carry that, also at a rate it sustains: 50 % of
    its closed-loop capacity, halved until it keeps up (at most 3 tries)."""
    table = res["results"][wname]
    n_cpu = os.cpu_count() or 1
    for c in active:
        e = table.get(c.name, {})
        if e.get("status") != "ok" or c.kind == "floor":
            continue
        if not c.paced:
            e["latency"] = {"skipped": "batches only: the one-frame-per-call path is "
                                       "measured on the frame API's contender"}
            continue
        if (isinstance(c, PoolContender) and not scale.all_pools_paced
                and c.workers != n_cpu):
            e["latency"] = {"skipped": f"latency runs {n_cpu}-worker pools only in this mode "
                                       "(--full runs all)"}
            continue
        wl = eff[c.name]
        batch_max = e["frames_per_s"]["median"]
        try:
            await settle_all(active)
            await c.before_run(wl)
            try:
                probe = await c.per_frame_probe(wl, scale.probe_s)
            finally:
                await c.after_run(wl)
            lat = _lat_summary(await _paced_runs(c, wl, 0.5 * batch_max, scale.latency_s,
                                                 scale.latency_runs, active))
            lat["basis"] = "50 % of the batch max"
            lat["max_batch_per_s"] = batch_max
            if probe:
                lat["per_frame_probe"] = probe
            if lat["overloaded"]:
                rate = 0.5 * min(batch_max, probe["per_s"] if probe else batch_max)
                for _ in range(3):
                    g = (await _paced_runs(c, wl, rate, scale.latency_s, 1, active))[0]
                    if not _overloaded(g):
                        break
                    rate *= 0.5
                lat["sustained"] = _lat_summary([g])
        except Exception as ex:
            e["latency"] = {"error": repr(ex)}
            say(f"{wname}: {c.name} latency failed: {ex!r}")
            continue
        e["latency"] = lat
        msg = (f"{wname}: {c.name} latency at {lat['offered_per_s']:,.0f}/s: p50 "
               f"{lat['p50_us']:.0f} µs, p99 {lat['p99_us']:.0f} µs, loop lag p99 "
               f"{lat['loop_lag_p99_ms']:.2f} ms")
        if "sustained" in lat:
            su = lat["sustained"]
            msg += (f" (overloaded; at {su['offered_per_s']:,.0f}/s: p99 {su['p99_us']:.0f} µs"
                    + (", still overloaded" if su["overloaded"] else "") + ")")
        say(msg)


async def storm_phase(active: list[Contender], eff: dict[str, Workload], scale: Scale,
                      res: dict[str, Any]) -> None:
    table = res["results"]["ratchet-storm"]
    conf = res["results"].get("conference", {})
    got: dict[str, list[dict[str, Any]]] = {c.name: [] for c in active}
    rates: dict[str, float] = {}
    for c in active:
        ce = conf.get(c.name, {})
        cap = float("inf")
        if ce.get("status") == "ok":
            lat = ce.get("latency") or {}
            cap = 0.5 * ce["frames_per_s"]["median"]
            if lat.get("sustained"):
                cap = lat["sustained"]["offered_per_s"]
        rates[c.name] = min(STORM_FRAMES_PER_S, cap)
    for rnd in range(scale.storm_runs):
        for c in active:
            wl = eff[c.name]
            try:
                c.set_paced_workload(wl)
                await settle_all(active)
                got[c.name].append(await paced(c, wl, rates[c.name], scale.storm_s,
                                               ratchets_per_s=STORM_RATCHETS_PER_S))
                g = got[c.name][-1]
                say(f"ratchet-storm {rnd + 1}/{scale.storm_runs}: {c.name}: "
                    f"{g['achieved_per_s']:,.0f} fr/s, {g['ratchets_per_s']:.0f} ratchets/s, "
                    f"loop lag p99 {g['loop_lag_p99_ms']:.2f} ms")
            except Exception as ex:
                table[c.name] = {"status": "error", "reason": f"storm failed: {ex!r}"}
    for c in active:
        runs = got[c.name]
        if not runs or table.get(c.name, {}).get("status") == "error":
            continue
        table[c.name] = {
            "status": "ok", "runs": len(runs), "duration_s": scale.storm_s,
            "offered_frames_per_s": rates[c.name],
            "frames_per_s": summary([g["achieved_per_s"] for g in runs]),
            "ratchets_offered_per_s": STORM_RATCHETS_PER_S,
            "ratchets_per_s": summary([g["ratchets_per_s"] for g in runs]),
            "ratchets_done": sum(g["ratchets_done"] for g in runs),
            "ratchets_skipped": sum(g["ratchets_skipped"] for g in runs),
            "ratchets_failed": sum(g["ratchets_failed"] for g in runs),
            "loop_lag": {k: statistics.median(g[f"loop_lag_{k}"] for g in runs)
                         for k in ("p50_ms", "p99_ms", "max_ms")},
            "latency": {k: statistics.median(g[k] for g in runs)
                        for k in ("p50_us", "p99_us", "max_us")},
            "broker_cpu_us_per_frame": summary([g["broker_cpu_us_per_frame"] for g in runs]),
            "worker_cpu_us_per_frame": summary([g["worker_cpu_us_per_frame"] for g in runs]),
            "errors": sum(g["errors"] for g in runs),
            "incomplete": any(g["incomplete"] for g in runs),
            "aborted_backlog": any(g["aborted_backlog"] for g in runs),
        }
