"""The benchmark harness runs end to end (``--smoke``: tiny workloads, every contender
path once) and writes JSON of the documented shape: every contender is in the report,
issue 14's (pure-Python, native, ``limit``) passed their verified warm-up on every
throughput workload or say why their path cannot run here. No figure is asserted:
this box's speed is not a test result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from framecrypt.workers import native

WORKLOADS = ("size-100B", "size-1KB", "size-10KB", "size-100KB", "conference", "heavy",
             "ratchet-storm")
THROUGHPUT = WORKLOADS[:-1]
# issue 14: the pure-Python baseline, the native paths and bare batch AES-GCM
PYTHON = ("inline-python", "inline-batch-python")
NATIVE = {"inline-native": "auto", "batch-native-evp": "evp",
          "batch-native-ipsec-mb": "ipsec-mb", "limit": "auto"}


def _runs_here(kind: str) -> bool:
    try:
        with native.using(kind):
            pass
    except ValueError:
        return False
    return True


def _contenders(n: int) -> set[str]:
    workers = sorted({1, 2, n} | {k for k in (4, 8, 16, 32, 64, 128) if k < n})
    pools = {f"pool-{t}-{w}w-{p}" for w in workers for t in ("shm", "ipc")
             for p in ("pool", "auto")}
    batches = {f"{api}-shm-{w}w-{p}" for w in workers for p in ("pool", "auto")
               for api in ("batch", "zc")}
    return ({"floor", "inline", "inline-batch", "naive-mp", "livekit-node", *PYTHON, *NATIVE}
            | pools | batches)


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
    cannot = {name for name, kind in NATIVE.items() if not _runs_here(kind)}
    for name in contenders - {"livekit-node"} - cannot:
        assert res["results"]["conference"][name]["status"] == "ok", name
        assert res["results"]["heavy"][name]["status"] == "ok", name
    assert res["results"]["conference"]["livekit-node"]["status"] == "skipped"
    storm = res["results"]["ratchet-storm"]
    assert {n for n, e in storm.items() if e["status"] == "ok"} == (
        {"inline"} | {n for n in contenders if n.startswith("pool-")})
    for name, entry in storm.items():
        if entry["status"] == "ok":
            assert entry["ratchets_done"] >= 1 and not entry["ratchets_failed"], name
    # the new contenders ran every throughput workload, verified (a wrong result in the
    # warm-up is an "error" above), or say why the extension's path cannot run here
    for wl in THROUGHPUT:
        row = res["results"][wl]
        for name in PYTHON:
            assert row[name]["status"] == "ok", (wl, name, row[name].get("reason"))
            assert row[name]["wrong_results"] == 0, (wl, name)
        for name, kind in NATIVE.items():
            if _runs_here(kind):
                assert row[name]["status"] == "ok", (wl, name, row[name].get("reason"))
                assert row[name]["wrong_results"] == 0, (wl, name)
            else:
                assert row[name]["status"] == "skipped" and row[name]["reason"], (wl, name)
        if row["limit"]["status"] == "ok":
            assert row["inline-batch"]["ratio_vs_limit"] > 0, wl
        assert row["inline"]["ratio_vs_inline-python"] > 0, wl
    if native.NATIVE is not None:
        assert res["contenders"]["limit"]["backend"] in ("ipsec-mb", "evp")
    pc = res["percall"]
    assert pc["frame_bytes"] == 1024 and pc["aad_bytes"] == 10
    want = {"AESGCM.encrypt (cryptography)", "livekit.protect (pure Python)"}
    if native.NATIVE is not None:
        want |= {"livekit.protect (native)", "native AesGcm.encrypt (bare)"}
    assert set(pc["cases"]) == want
    for case in pc["cases"].values():
        assert case["us_median"] > 0 and case["ratio_vs_aesgcm"] > 0
    ok = res["results"]["conference"]["pool-shm-1w-auto"]
    for key in ("frames_per_s", "gb_per_s", "broker_cpu_us_per_frame",
                "worker_cpu_us_per_frame", "ratio_vs_inline", "ratio_vs_floor", "latency",
                "peak_rss_mb"):
        assert key in ok, key
    assert set(ok["frames_per_s"]) == {"median", "min", "max"}
    targets = res["targets"]
    assert isinstance(targets, list) and targets
    names = " | ".join(t["name"] for t in targets)
    for part in ("vs the limit contender", "per-call livekit.protect",
                 "pure-Python inline: conference", "pure-Python inline: heavy",
                 "zero-copy API", "livekit-client worker", "latency p99", "lag p99"):
        assert part in names, part
    if native.NATIVE is not None:
        assert next(t for t in targets if "limit contender" in t["name"])["measured"]
        assert next(t for t in targets if "per-call" in t["name"])["measured"]
    for t in targets:
        if "zero-copy" in t["name"]:  # measured on the zero-copy contender
            assert "zc-shm-2w-pool" in t["note"], t
    for wl in THROUGHPUT:  # the zero-copy contenders ran, verified, and released
        for name in ("zc-shm-1w-pool", "zc-shm-1w-auto"):
            assert res["results"][wl][name]["status"] == "ok", (wl, name)
            assert res["results"][wl][name]["wrong_results"] == 0, (wl, name)
    assert res["targets_v1"] and "## Native hot path" in out.with_suffix(".md").read_text()
    for t in targets + res["targets_v1"]:
        assert {"name", "goal", "measured", "pass"} <= set(t)
        assert isinstance(t["name"], str) and isinstance(t["goal"], str)
        assert t["pass"] in (True, False, None)
        assert t["measured"] is None or isinstance(t["measured"], int | float)
