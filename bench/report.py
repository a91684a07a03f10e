"""Targets, the Markdown report and the plot, from the harness's result dict."""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any

from framecrypt.bench.workloads import SIZE_NAMES, SIZES

THROUGHPUT = (*SIZE_NAMES.values(), "conference", "heavy")
Res = dict[str, Any]


def _get(res: Res, wl: str, c: str, *path: str) -> Any:
    v: Any = res["results"].get(wl, {}).get(c)
    if not v or v.get("status") != "ok":
        return None
    for p in path:
        if not isinstance(v, dict):
            return None
        v = v.get(p)
    return v


def _target(name: str, goal: str, measured: float | None, ok: bool | None,
            note: str = "") -> dict[str, Any]:
    m = None if measured is None or math.isnan(measured) else round(measured, 3)
    return {"name": name, "goal": goal, "measured": m,
            "pass": None if m is None else ok, "note": note}


def _best(res: Res, wl: str, names: tuple[str, ...]) -> tuple[str | None, float | None]:
    """The contender among ``names`` with the most frames/s on ``wl`` (median)."""
    got = [(v, n) for n in names
           if (v := _get(res, wl, n, "frames_per_s", "median")) is not None]
    if not got:
        return None, None
    v, n = max(got)
    return n, v


def targets(res: Res) -> list[dict[str, Any]]:
    """The issue's targets. Where framecrypt offers two APIs for the same placement
    (frames: ``pool-…``; columnar FrameBatch: ``batch-…``, ``inline-batch``) the
    better one on that workload stands for it; the note says which."""
    n = res["meta"]["cpus"]
    inl = ("inline", "inline-batch")
    pool2 = ("pool-shm-2w-pool", "batch-shm-2w-pool")
    pooln = (f"pool-shm-{n}w-pool", f"batch-shm-{n}w-pool")
    auto = (f"pool-shm-{n}w-auto", f"batch-shm-{n}w-auto")
    out: list[dict[str, Any]] = []

    best_kb, kb = None, None
    for c in inl:
        v = _get(res, "size-1KB", c, "us_per_frame", "median")
        if v is not None and (kb is None or v < kb):
            best_kb, kb = c, v
    out.append(_target("inline: µs per 1 KB frame (seal, LiveKit VP8)", "<= 1.0", kb,
                       kb is not None and kb <= 1.0, best_kb or ""))
    worst = None
    note = ""
    for size in SIZES:
        wl = SIZE_NAMES[size]
        ci, i = _best(res, wl, inl)
        f = _get(res, wl, "floor", "frames_per_s", "median")
        if i and f:
            over = f / i  # floor frames/s ÷ inline frames/s = inline time ÷ floor time
            if worst is None or over > worst:
                worst, note = over, f"{wl}, {ci}"
    out.append(_target("inline: framing overhead vs bare AES-GCM (time ratio, worst size)",
                       "<= 1.3", worst, worst is not None and worst <= 1.3, note))

    def vs_inline(wl: str, names: tuple[str, ...]) -> tuple[float | None, str]:
        c, p = _best(res, wl, names)
        ci, i = _best(res, wl, inl)
        if not p or not i:
            return None, ""
        return p / i, f"{c} vs {ci}"

    r, note = vs_inline("conference", pool2)
    out.append(_target("pool, 2 workers: conference frames/s vs inline", ">= 1.2x", r,
                       r is not None and r >= 1.2, note))
    cb, _ = _best(res, "conference", pool2)
    b = _get(res, "conference", cb, "broker_cpu_us_per_frame", "median") if cb else None
    out.append(_target("pool, 2 workers: conference broker CPU µs/frame", "<= 1.0", b,
                       b is not None and b <= 1.0, cb or ""))
    r, note = vs_inline("heavy", pooln)
    out.append(_target(f"pool, {n} workers: heavy mix frames/s vs inline", ">= 1.7x", r,
                       r is not None and r >= 1.7, note))
    for wl in THROUGHPUT:
        ca, a = _best(res, wl, auto)
        cb, best = _best(res, wl, inl + pooln)
        v = a / best if a and best else None
        out.append(_target(f"auto, {n} workers: {wl} frames/s vs the better of inline and pool",
                           ">= 0.95x", v, v is not None and v >= 0.95,
                           f"{ca} vs {cb}" if ca else ""))
    ca, a = _best(res, "conference", auto)
    nv = _get(res, "conference", "naive-mp", "frames_per_s", "median")
    v = a / nv if a and nv else None
    out.append(_target("auto: conference frames/s vs naive multiprocessing", ">= 5x", v,
                       v is not None and v >= 5, ca or ""))
    ci = max((x for c in inl if (x := _get(res, "conference", c, "cpu_frames_per_s"))),
             default=None)
    lk = _get(res, "conference", "livekit-node", "cpu_frames_per_s")
    v = ci / lk if ci and lk else None
    note = "" if lk else "livekit-client worker not run"
    out.append(_target("inline: conference frames per CPU-second vs the livekit-client worker",
                       ">= 30x", v, v is not None and v >= 30, note))
    lat_of = f"pool-shm-{n}w-auto"  # the per-frame path: one await per frame
    lat = _get(res, "conference", lat_of, "latency") or {}
    p99 = lat.get("p99_us")
    v = p99 / 1000 if p99 is not None else None
    note = lat_of
    su = lat.get("sustained")
    if su:
        note = (f"{lat_of}: overloaded at {lat['offered_per_s']:,.0f}/s; p99 "
                f"{su['p99_us'] / 1000:.2f} ms at {su['offered_per_s']:,.0f}/s")
    out.append(_target("auto: conference added latency p99 at 50 % load (ms)", "<= 1.0", v,
                       v is not None and v <= 1.0, note))
    lag = _get(res, "ratchet-storm", lat_of, "loop_lag", "p99_ms")
    out.append(_target("auto: event-loop lag p99 in the ratchet storm (ms)", "<= 2.0", lag,
                       lag is not None and lag <= 2.0, lat_of))
    return out


# --- Markdown ---------------------------------------------------------------------------------


def _fmt_rate(x: float | None) -> str:
    if x is None:
        return "–"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e4:
        return f"{x / 1e3:.0f}k"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def _fmt(x: float | None, digits: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _cell(res: Res, wl: str, c: str) -> dict[str, Any] | None:
    v: dict[str, Any] | None = res["results"].get(wl, {}).get(c)
    return v


def markdown(res: Res) -> str:
    meta = res["meta"]
    cs = list(res["contenders"])
    wls = [w for w in THROUGHPUT if w in res["results"]]
    lines = [f"# framecrypt bench — {meta['mode']} run, {meta['date']}", "",
             f"- machine: {meta['hardware']}",
             f"- Python {meta['python']}, framecrypt {meta['framecrypt']}, cryptography "
             f"{meta['cryptography']}, pyzmq {meta['pyzmq']} (libzmq {meta['libzmq']}), "
             f"PyAV {meta['av']}; Node {meta.get('node') or '–'}, livekit-client "
             f"{meta.get('livekit_client') or '–'}",
             f"- {meta['runs']} interleaved runs per contender and workload after a verified "
             f"warm-up; figures are medians [min–max]; load average before/after: "
             f"{meta['loadavg_before']} / {meta['loadavg_after']}; wall {meta['wall_s']:.0f} s",
             ]
    if meta.get("note"):
        lines.append(f"- note: {meta['note']}")
    lines += ["", "## Throughput, frames/s (× inline)", ""]
    rows = []
    for c in cs:
        row = [c]
        for w in wls:
            v = _cell(res, w, c)
            if not v or v.get("status") != "ok":
                row.append("–" if not v or v.get("status") == "skipped" else "error")
                continue
            f = v["frames_per_s"]
            r = v.get("ratio_vs_inline")
            row.append(f"{_fmt_rate(f['median'])} [{_fmt_rate(f['min'])}–{_fmt_rate(f['max'])}]"
                       + (f" ({r:.2f}×)" if r is not None else ""))
        rows.append(row)
    lines += _table(["contender", *wls], rows)
    lines += ["", "## CPU µs per frame: broker (main process) / workers; GB/s", ""]
    rows = []
    for c in cs:
        row = [c]
        for w in wls:
            v = _cell(res, w, c)
            if not v or v.get("status") != "ok":
                row.append("–")
                continue
            b = (v.get("broker_cpu_us_per_frame") or {}).get("median")
            k = (v.get("worker_cpu_us_per_frame") or {}).get("median")
            g = (v.get("gb_per_s") or {}).get("median")
            row.append(f"{_fmt(b)} / {_fmt(k)}; {_fmt(g)}")
        rows.append(row)
    lines += _table(["contender", *wls], rows)
    lat_wls = [w for w in wls if any((_cell(res, w, c) or {}).get("latency") for c in cs)]
    if lat_wls:
        lines += ["", "## Added latency at 50 % of each contender's max (paced, one "
                  "`encrypt`/`decrypt` per frame): p50 / p99 µs; loop lag p99 ms "
                  "(achieved of offered frames/s)", "",
                  "Overloaded = the one-call-per-frame path did not keep up (< 90 % of "
                  "the offered rate, or p50 > 20 ms); then also shown at a rate it "
                  "sustains (50 % of its closed-loop capacity, halved until it keeps up).",
                  ""]
        rows = []
        for c in cs:
            row = [c]
            for w in lat_wls:
                lat = (_cell(res, w, c) or {}).get("latency")
                if not lat or "p99_us" not in lat:
                    row.append("–")
                    continue
                cell = (f"{_fmt(lat.get('p50_us'), 0)} / {_fmt(lat.get('p99_us'), 0)}; "
                        f"{_fmt(lat.get('loop_lag_p99_ms'))} ms "
                        f"({_fmt_rate(lat.get('achieved_per_s'))}/s of "
                        f"{_fmt_rate(lat.get('offered_per_s'))}/s)")
                su = lat.get("sustained")
                if su:
                    cell += (f" **overloaded**; at {_fmt_rate(su.get('offered_per_s'))}/s: "
                             f"{_fmt(su.get('p50_us'), 0)} / {_fmt(su.get('p99_us'), 0)}; "
                             f"{_fmt(su.get('loop_lag_p99_ms'))} ms"
                             + (" (still overloaded)" if su.get("overloaded") else ""))
                row.append(cell)
            rows.append(row)
        lines += _table(["contender", *lat_wls], rows)
    storm = res["results"].get("ratchet-storm", {})
    srows = []
    for c in cs:
        v = storm.get(c)
        if not v or v.get("status") != "ok":
            continue
        lag = v["loop_lag"]
        lat = v["latency"]
        srows.append([c, f"{_fmt_rate(v['frames_per_s']['median'])} of "
                      f"{_fmt_rate(v['offered_frames_per_s'])}",
                      f"{_fmt(v['ratchets_per_s']['median'], 1)} of 100",
                      f"{_fmt(lag['p50_ms'])} / {_fmt(lag['p99_ms'])} / {_fmt(lag['max_ms'])}",
                      f"{_fmt(lat['p50_us'], 0)} / {_fmt(lat['p99_us'], 0)}",
                      _fmt(v["broker_cpu_us_per_frame"]["median"])])
    if srows:
        lines += ["", "## Ratchet storm (PBKDF2 ratchets offered at 100/s while frames flow)", ""]
        lines += _table(["contender", "frames/s achieved", "ratchets/s done",
                         "loop lag p50/p99/max ms", "frame latency p50/p99 µs",
                         "broker µs/frame"], srows)
    rows = []
    for c in cs:
        mains = [((_cell(res, w, c) or {}).get("peak_rss_mb") or {}).get("main")
                 for w in res["results"]]
        work = [((_cell(res, w, c) or {}).get("peak_rss_mb") or {}).get("workers")
                for w in res["results"]]
        m = max((x for x in mains if x is not None), default=None)
        k = max((x for x in work if x is not None), default=None)
        if m is not None or k is not None:
            rows.append([c, _fmt(m, 0), _fmt(k, 0)])
    if rows:
        lines += ["", "## Peak RSS, MB (VmHWM, max over workloads; main includes the "
                  "harness and its traces)", ""]
        lines += _table(["contender", "main", "workers (sum)"], rows)
    lines += ["", "## Targets", ""]
    lines += _table(["", "target", "goal", "measured"], [
        ["–" if t["pass"] is None else ("PASS" if t["pass"] else "MISS"), t["name"], t["goal"],
         "–" if t["measured"] is None else str(t["measured"])
         + (f" ({t['note']})" if t.get("note") else "")]
        for t in res["targets"]])
    events = [f"- {w} / {c}: " + ", ".join(f"{k} {n}" for k, n in v["pool_events"].items())
              for w, row in res["results"].items() for c, v in row.items()
              if isinstance(v, dict) and v.get("pool_events")]
    if events:
        lines += ["", "Pool trouble counters during a workload (`pool.stats()`):", "", *events]
    why: dict[tuple[str, str], list[str]] = {}
    for w, row in res["results"].items():
        for c, v in row.items():
            if v.get("status") in ("skipped", "error") and v.get("reason"):
                why.setdefault((c, f"{v['status']}: {v['reason']}"), []).append(w)
    if why:
        lines += ["", "Skipped / failed:", ""]
        lines += [f"- {c} ({', '.join(ws) if len(ws) < len(res['results']) else 'all'}): "
                  f"{r}" for (c, r), ws in sorted(why.items())]
    return "\n".join(lines) + "\n"


# --- plot -------------------------------------------------------------------------------------


def plot(res: Res, path: Path) -> str | None:
    """Write the PNG; returns None, or why no plot was made."""
    try:
        mpl = importlib.import_module("matplotlib")
    except ImportError:
        return "matplotlib not installed (pip install 'framecrypt[bench]'): no plot"
    mpl.use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")
    cs = list(res["contenders"])
    wls = [w for w in (*THROUGHPUT, "ratchet-storm") if w in res["results"]]
    fig, axes = plt.subplots(len(wls), 2, figsize=(15, 2.0 + 0.24 * len(cs) * len(wls)),
                             squeeze=False)
    colors = {"floor": "#888888", "inline": "#1f77b4", "naive": "#d62728", "node": "#9467bd",
              "pool": "#2ca02c"}
    def shade(c: str) -> str:
        kind = res["contenders"][c]["kind"]
        if kind == "pool" and c.endswith("-auto"):
            return "#98df8a"
        return colors.get(kind, "#333333")

    pos = list(range(len(cs)))
    for row, w in enumerate(wls):
        for col, (key, label) in enumerate((("frames_per_s", "frames/s"),
                                            ("broker_cpu_us_per_frame",
                                             "broker CPU µs/frame"))):
            ax = axes[row][col]
            med, lo, hi = [], [], []
            for c in cs:
                v = _cell(res, w, c)
                s = v.get(key) if v and v.get("status") == "ok" else None
                if not s:  # keep the row, draw nothing: rows line up across panels
                    med.append(0.0)
                    lo.append(0.0)
                    hi.append(0.0)
                    continue
                med.append(s["median"])
                lo.append(s["median"] - s["min"])
                hi.append(s["max"] - s["median"])
            ax.barh(pos, med, xerr=[lo, hi], color=[shade(c) for c in cs], capsize=2)
            for y, m in zip(pos, med, strict=True):
                if m:
                    ax.text(m, y, " " + (_fmt_rate(m) if key == "frames_per_s" else _fmt(m, 1)),
                            va="center", fontsize=6)
            ax.set_yticks(pos)
            ax.set_yticklabels(cs, fontsize=7)
            ax.invert_yaxis()
            if key == "frames_per_s" and any(med) and w != "ratchet-storm":
                ax.set_xscale("log")
            title = w + (" (paced, fixed offered load: achieved)" if w == "ratchet-storm"
                         else "")
            ax.set_title(f"{title} — {label}", fontsize=9)
            ax.tick_params(axis="x", labelsize=7)
            ax.grid(axis="x", alpha=0.3)
    patches = importlib.import_module("matplotlib.patches")
    legend = [patches.Patch(color=v, label=k) for k, v in (
        ("bare AES-GCM (floor)", colors["floor"]), ("inline (pure core)", colors["inline"]),
        ("Pool placement=pool", colors["pool"]), ("Pool placement=auto", "#98df8a"),
        ("naive multiprocessing", colors["naive"]), ("livekit-client worker (Node)",
                                                     colors["node"]))]
    fig.legend(handles=legend, loc="upper center", ncol=6, fontsize=8,
               bbox_to_anchor=(0.5, 0.975))
    meta = res["meta"]
    fig.suptitle(f"framecrypt bench ({meta['mode']}, {meta['date']}): {meta['hardware']}; "
                 "medians, whiskers min–max", fontsize=10, y=0.995)
    fig.tight_layout(rect=(0, 0, 1, 0.955))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
