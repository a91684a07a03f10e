"""The Markdown report and the plot, from the harness's result dict (the targets are
judged in :mod:`.targets`; re-exported here)."""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any

from framecrypt.bench.targets import ALL_INLINE, PYTHON_INLINE, THROUGHPUT, targets, targets_v1

__all__ = ["THROUGHPUT", "markdown", "plot", "targets", "targets_v1"]

Res = dict[str, Any]


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


def _target_table(ts: list[dict[str, Any]]) -> list[str]:
    return _table(["", "target", "goal", "measured"], [
        ["–" if t["pass"] is None else ("PASS" if t["pass"] else "MISS"), t["name"], t["goal"],
         "–" if t["measured"] is None else str(t["measured"])
         + (f" ({t['note']})" if t.get("note") else "")]
        for t in ts])


NATIVE_ROWS = ("limit", "floor", *ALL_INLINE, "batch-shm-2w-pool", "batch-shm-2w-auto")


def _native_section(res: Res, wls: list[str]) -> list[str]:
    """Issue 14's view: µs per frame of the in-process paths and the bare AES-GCM
    contenders, × the limit and × the better pure-Python inline (ratios within rounds),
    then the per-call figure."""
    rows = []
    for c in NATIVE_ROWS:
        if c not in res["contenders"]:
            continue
        row = [c]
        for w in wls:
            v = _cell(res, w, c)
            if not v or v.get("status") != "ok":
                row.append("–")
                continue
            lim = v.get("ratio_vs_limit")
            py = max((r for b in PYTHON_INLINE
                      if (r := v.get(f"ratio_vs_{b}")) is not None), default=None)
            row.append(f"{_fmt(v['us_per_frame']['median'], 3)}"
                       + (f"; {1 / lim:.2f}× limit" if lim else "")
                       + (f"; {py:.1f}× py" if py else ""))
        if any(x != "–" for x in row[1:]):
            rows.append(row)
    out = ["", "## Native hot path (issue 14): µs per frame (wall); time × the limit; "
           "speed × the better pure-Python inline", "",
           "Ratios within each round, then the median. `limit` = bare batch AES-GCM in "
           "the extension (no framing); `py` = `inline-python` / `inline-batch-python`.",
           ""]
    out += _table(["contender", *wls], rows)
    pc = res.get("percall")
    if pc:
        out += ["", f"Per call, one {pc['frame_bytes']} B VP8 delta frame "
                f"({pc['rounds']} interleaved rounds of {pc['calls']:,} calls; AAD of the "
                f"bare calls {pc['aad_bytes']} B; native path: {pc.get('backend') or '–'}):",
                ""]
        out += _table(["call", "µs median [min–max]", "× AESGCM.encrypt (within rounds)"], [
            [k, f"{v['us_median']:.3f} [{v['us_min']:.3f}–{v['us_max']:.3f}]",
             f"{v['ratio_vs_aesgcm']:.2f}"] for k, v in pc["cases"].items()])
    return out


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
    lines += _native_section(res, wls)
    lines += ["", "## Targets (issue 14; baseline: the best inline contender)", ""]
    lines += _target_table(res["targets"])
    if res.get("targets_v1"):
        lines += ["", "### Version one (issue 6)", ""]
        lines += _target_table(res["targets_v1"])
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
        if kind == "inline" and c.endswith("-python"):
            return "#aec7e8"
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
        ("bare AES-GCM (floor, limit)", colors["floor"]), ("inline", colors["inline"]),
        ("inline, pure Python", "#aec7e8"),
        ("Pool placement=pool", colors["pool"]), ("Pool placement=auto", "#98df8a"),
        ("naive multiprocessing", colors["naive"]), ("livekit-client worker (Node)",
                                                     colors["node"]))]
    fig.legend(handles=legend, loc="upper center", ncol=7, fontsize=8,
               bbox_to_anchor=(0.5, 0.975))
    meta = res["meta"]
    fig.suptitle(f"framecrypt bench ({meta['mode']}, {meta['date']}): {meta['hardware']}; "
                 "medians, whiskers min–max", fontsize=10, y=0.995)
    fig.tight_layout(rect=(0, 0, 1, 0.955))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
