"""The benchmark harness runs end to end (``--smoke``: tiny workloads, every contender
path once) and writes JSON of the documented shape. No figure is asserted: this box's
speed is not a test result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKLOADS = ("size-100B", "size-1KB", "size-10KB", "size-100KB", "conference", "heavy",
             "ratchet-storm")


def _contenders(n: int) -> set[str]:
    workers = sorted({1, 2, n} | {k for k in (4, 8, 16, 32, 64, 128) if k < n})
    pools = {f"pool-{t}-{w}w-{p}" for w in workers for t in ("shm", "ipc")
             for p in ("pool", "auto")}
    batches = {f"batch-shm-{w}w-{p}" for w in workers for p in ("pool", "auto")}
    return {"floor", "inline", "inline-batch", "naive-mp", "livekit-node"} | pools | batches


@pytest.mark.timeout(180)
def test_bench_smoke_writes_every_key(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = dict(os.environ, FRAMECRYPT_BENCH_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run(
        [sys.executable, "-m", "framecrypt.bench", "--smoke", "--json", str(out)],
        capture_output=True, text=True, timeout=150, env=env, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert out.with_suffix(".md").is_file()
    assert res["meta"]["mode"] == "smoke"
    contenders = _contenders(os.cpu_count() or 1)
    assert set(res["contenders"]) == contenders
    assert set(res["results"]) == set(WORKLOADS)
    assert set(res["workloads"]) == set(WORKLOADS)
    for wl, row in res["results"].items():
        assert set(row) == contenders, wl
        for name, entry in row.items():
            assert entry["status"] in ("ok", "skipped", "error"), (wl, name)
            # every path ran: nothing failed, only what cannot apply is skipped
            assert entry["status"] != "error", (wl, name, entry.get("reason"))
            if entry["status"] == "skipped":
                assert entry["reason"], (wl, name)
    for name in contenders - {"livekit-node"}:
        assert res["results"]["conference"][name]["status"] == "ok", name
        assert res["results"]["heavy"][name]["status"] == "ok", name
    assert res["results"]["conference"]["livekit-node"]["status"] == "skipped"
    storm = res["results"]["ratchet-storm"]
    assert {n for n, e in storm.items() if e["status"] == "ok"} == (
        {"inline"} | {n for n in contenders if n.startswith("pool-")})
    for name, entry in storm.items():
        if entry["status"] == "ok":
            assert entry["ratchets_done"] >= 1 and not entry["ratchets_failed"], name
    ok = res["results"]["conference"]["pool-shm-1w-auto"]
    for key in ("frames_per_s", "gb_per_s", "broker_cpu_us_per_frame",
                "worker_cpu_us_per_frame", "ratio_vs_inline", "ratio_vs_floor", "latency",
                "peak_rss_mb"):
        assert key in ok, key
    assert set(ok["frames_per_s"]) == {"median", "min", "max"}
    targets = res["targets"]
    assert isinstance(targets, list) and targets
    for t in targets:
        assert {"name", "goal", "measured", "pass"} <= set(t)
        assert isinstance(t["name"], str) and isinstance(t["goal"], str)
        assert t["pass"] in (True, False, None)
        assert t["measured"] is None or isinstance(t["measured"], int | float)
