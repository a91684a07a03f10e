"""The benchmark harness: every contender on every workload, side by side in one run.

See ``bench/README.md`` for the method. Entry points: ``framecrypt bench`` and
``python -m framecrypt.bench`` (both end in :func:`run`).
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
import time
from pathlib import Path
from typing import Any

from framecrypt.bench import browser, report
from framecrypt.bench.contenders import (
    BatchPoolContender,
    Contender,
    Floor,
    Inline,
    InlineBatch,
    Naive,
    PoolContender,
)
from framecrypt.bench.measure import (
    LagTicker,
    cpu_delta,
    cpu_of,
    hardware_line,
    jsonable,
    peak_rss_mb,
    percentile,
    reset_peak_rss,
    rss_mb,
    summary,
)
from framecrypt.bench.traces import load as load_traces
from framecrypt.bench.workloads import (
    SCALES,
    STORM_FRAMES_PER_S,
    STORM_RATCHETS_PER_S,
    WORKLOADS,
    Scale,
    Workload,
    build,
)

T0 = time.perf_counter()


def say(msg: str, *, end: str = "\n") -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", file=sys.stderr, end=end, flush=True)


def worker_counts(n: int, override: str | None) -> list[int]:
    if override:
        return sorted({int(x) for x in override.split(",") if x.strip()})
    out = {1, 2, n}
    k = 4
    while k < n:
        out.add(k)
        k *= 2
    return sorted(out)


def make_contenders(scale: Scale, args: argparse.Namespace) -> list[Contender]:
    n = os.cpu_count() or 1
    cs: list[Contender] = [Floor(), Inline(), InlineBatch(args.chunk)]
    for w in worker_counts(n, args.workers):
        for tr in ("shm", "ipc"):
            for pl in ("pool", "auto"):
                cs.append(PoolContender(w, tr, pl, args.chunk))
        for pl in ("pool", "auto"):
            cs.append(BatchPoolContender(w, "shm", pl, args.chunk))
    cs.append(Naive(n, scale.naive_cap))
    return cs


def _selected(name: str, patterns: list[str] | None) -> bool:
    return patterns is None or any(fnmatch.fnmatchcase(name, p) for p in patterns)


# --- one throughput run ----------------------------------------------------------------------


async def measure_run(c: Contender, wl: Workload, *, verify: bool = False) -> dict[str, Any]:
    await c.before_run(wl)
    try:
        gc.collect()
        pids = c.worker_pids()
        rss0 = rss_mb()
        reset_peak_rss()
        for pid in pids:
            reset_peak_rss(pid)
        inl0 = c.inline_counts()
        w0 = cpu_of(pids)
        c0 = time.process_time()
        t0 = time.perf_counter()
        bad = await c.drive(wl, verify)
        wall = time.perf_counter() - t0
        broker = time.process_time() - c0
        worker = cpu_delta(w0, cpu_of(pids))
        rss_w = [peak_rss_mb(p) for p in pids]
        inl1 = c.inline_counts()
    finally:
        await c.after_run(wl)
    share = None
    if inl0 is not None and inl1 is not None and inl1[1] > inl0[1]:
        share = (inl1[0] - inl0[0]) / (inl1[1] - inl0[1])
    return {"wall": wall, "broker": broker, "worker": worker, "ops": wl.ops,
            "bytes": wl.nbytes, "bad": bad, "rss_main": peak_rss_mb(),
            "rss_added": (peak_rss_mb() or 0) - (rss0 or 0),
            "rss_workers": sum(x for x in rss_w if x is not None) if pids else None,
            "inline_share": share}


def compile_runs(runs: list[dict[str, Any]], ops: int) -> dict[str, Any]:
    fps = [r["ops"] / r["wall"] for r in runs]
    out: dict[str, Any] = {
        "status": "ok", "ops_per_run": ops, "runs": len(runs),
        "frames_per_s": summary(fps),
        "gb_per_s": summary([r["bytes"] / r["wall"] / 1e9 for r in runs]),
        "us_per_frame": summary([r["wall"] / r["ops"] * 1e6 for r in runs]),
        "broker_cpu_us_per_frame": summary([r["broker"] / r["ops"] * 1e6 for r in runs]),
        "worker_cpu_us_per_frame": summary([r["worker"] / r["ops"] * 1e6 for r in runs]),
        "cpu_frames_per_s": statistics.median(
            r["ops"] / max(1e-9, r["broker"] + r["worker"]) for r in runs),
        "peak_rss_mb": {"main": max((r["rss_main"] or 0) for r in runs) or None,
                        "main_added": max(r["rss_added"] for r in runs),
                        "workers": max((r["rss_workers"] or 0) for r in runs) or None},
        "wrong_results": sum(r["bad"] for r in runs),
    }
    shares = [r["inline_share"] for r in runs if r["inline_share"] is not None]
    out["inline_share"] = statistics.median(shares) if shares else None
    return out


# --- paced runs: latency and the ratchet storm ------------------------------------------------


class _PacedState:
    def __init__(self) -> None:
        self.done = self.errors = self.i = self.n = 0
        self.last = 0.0
        self.aborted = False
        self.r_out = self.r_done = self.r_fail = self.r_skip = self.r_slots = 0


async def paced(c: Contender, wl: Workload, rate: float, duration: float,
                ratchets_per_s: float = 0.0) -> dict[str, Any]:
    """Submit the ops of ``wl`` one by one at ``rate``/s (``loop.call_at`` pacing) for
    ``duration`` s; latency of a frame = its result time − its scheduled send time.
    With ``ratchets_per_s``, also ratchet participants round-robin at that rate."""
    loop = asyncio.get_running_loop()
    items = wl.interleaved()
    n = max(1, min(len(items), int(rate * duration)))
    lat: list[float] = []
    st = _PacedState()
    st.n = n
    all_done: asyncio.Future[None] = loop.create_future()

    # an overloaded path is not driven further than 20 ms of offered frames in flight
    # (that is already p50 > 20 ms, "overloaded"): a deeper queue only measures its own
    # length, and its bursts block the loop long enough to starve the pools' heartbeats
    max_backlog = max(500, int(rate * 0.02))

    def record(sched: float, t_done: float | None = None, err: bool = False) -> None:
        t = time.monotonic() if t_done is None else t_done
        lat.append(t - sched)
        st.done += 1
        st.errors += bool(err)
        st.last = max(st.last, t)
        if st.done >= st.n and not all_done.done():
            all_done.set_result(None)

    t0 = time.monotonic() + 0.005

    def tick() -> None:
        now = time.monotonic()
        i = st.i
        while i < st.n:
            sched = t0 + i / rate
            if sched > now:
                break
            if i - st.done > max_backlog:
                st.n = i  # give up: the rest is never submitted
                st.aborted = True
                if st.done >= st.n and not all_done.done():
                    all_done.set_result(None)
                break
            si, op = items[i]
            c.start_op(si, op, sched, record)
            i += 1
        st.i = i
        if i < st.n:
            loop.call_at(t0 + i / rate, tick)

    cap = c.ratchet_cap()

    def ratchet_done(ok: bool) -> None:
        st.r_out -= 1
        if ok:
            st.r_done += 1
        else:
            st.r_fail += 1

    def rtick() -> None:
        now = time.monotonic()
        due = int((now - t0) * ratchets_per_s) + 1 - st.r_slots
        started = 0
        for _ in range(max(0, due)):
            if st.r_out < cap and started < cap:
                st.r_out += 1
                started += 1
                try:
                    c.start_ratchet(st.r_slots % wl.participants, ratchet_done)
                except Exception:
                    ratchet_done(False)
            else:
                st.r_skip += 1
            st.r_slots += 1
        if st.i < st.n:
            loop.call_at(t0 + st.r_slots / ratchets_per_s, rtick)

    pids = c.worker_pids()
    w0 = cpu_of(pids)
    c0 = time.process_time()
    ticker = LagTicker()
    ticker.start()
    loop.call_at(t0, tick)
    if ratchets_per_s:
        loop.call_at(t0, rtick)
    incomplete = False
    try:
        await asyncio.wait_for(asyncio.shield(all_done), timeout=duration + 20)
    except TimeoutError:
        incomplete = True
    lag = ticker.stop()
    broker = time.process_time() - c0
    worker = cpu_delta(w0, cpu_of(pids))
    end = max(st.last, t0 + 1e-6)
    deadline = time.monotonic() + 20
    while st.r_out > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    done = st.done
    out: dict[str, Any] = {
        "offered_per_s": rate, "frames": st.n, "completed": done,
        "aborted_backlog": st.aborted,
        "achieved_per_s": done / (end - t0), "errors": st.errors,
        "incomplete": incomplete,
        "p50_us": percentile(lat, 50) * 1e6, "p99_us": percentile(lat, 99) * 1e6,
        "max_us": (max(lat) if lat else float("nan")) * 1e6,
        "loop_lag_p50_ms": lag["p50_ms"], "loop_lag_p99_ms": lag["p99_ms"],
        "loop_lag_max_ms": lag["max_ms"],
        "broker_cpu_us_per_frame": broker / max(1, done) * 1e6,
        "worker_cpu_us_per_frame": worker / max(1, done) * 1e6,
    }
    if ratchets_per_s:
        out.update(ratchets_offered=st.r_slots, ratchets_done=st.r_done,
                   ratchets_failed=st.r_fail, ratchets_skipped=st.r_skip,
                   ratchets_per_s=st.r_done / (end - t0))
    return out


# --- the whole run ----------------------------------------------------------------------------


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
    for base in ("inline", "floor"):
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
    global T0
    T0 = time.perf_counter()
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
    run_node(args, scale, wls, res)
    res["meta"]["loadavg_after"] = _loadavg()
    res["meta"]["wall_s"] = time.perf_counter() - T0
    res["targets"] = report.targets(res)
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
    say(f"done in {time.perf_counter() - T0:.0f} s")
    return 0
