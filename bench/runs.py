"""One timed run of one contender on one workload: a throughput run (``drive``, as
fast as it can; wall, CPU of the broker and of the workers, peak RSS) and a paced run
(one frame at a time at a fixed rate: added latency, event-loop lag, the ratchet
storm's ratchets)."""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from typing import Any

from framecrypt.bench.contenders import Contender
from framecrypt.bench.measure import (
    LagTicker,
    cpu_delta,
    cpu_of,
    peak_rss_mb,
    percentile,
    reset_peak_rss,
    rss_mb,
    summary,
)
from framecrypt.bench.workloads import Workload

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
