"""The browser stack as a contender: the published livekit-client E2EE worker
(``dist/livekit-client.e2ee.worker.mjs``, unmodified) under Node.js, driven by
``bench/node/lkbench.mjs`` on the same frames as every other contender.

It is looked for in ``$FRAMECRYPT_LK_DIST`` (a ``livekit-client/dist`` folder) or in the
interop harness's ``tests/interop/node_modules`` (``make node``); the Node binary is
``$NODE`` or ``node`` on PATH (>= 20). Missing either skips this contender with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from framecrypt.bench.workloads import Workload, material

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "node" / "lkbench.mjs"
PINNED = "2.23.0"
NAME = "livekit-node"
DESCRIPTION = ("the published livekit-client E2EE worker (unmodified bundle) under Node.js, "
               "one worker thread, frames through its own encode/decode streams")


def dist_dir() -> Path:
    env = os.environ.get("FRAMECRYPT_LK_DIST")
    if env:
        return Path(env)
    return HERE.parent / "tests" / "interop" / "node_modules" / "livekit-client" / "dist"


def node_binary() -> str | None:
    return os.environ.get("NODE") or shutil.which("node")


def unavailable() -> str | None:
    """None when the contender can run, else why not."""
    node = node_binary()
    if node is None:
        return "node (Node.js >= 20) not found"
    try:
        v = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10,
                           check=False).stdout.strip().lstrip("v")
        if int(v.split(".")[0]) < 20:
            return f"node {v} is too old (need >= 20)"
    except (OSError, subprocess.TimeoutExpired, ValueError) as e:
        return f"cannot run node: {e}"
    d = dist_dir()
    if not (d / "livekit-client.e2ee.worker.mjs").is_file() or not (
            d / "livekit-client.esm.mjs").is_file():
        return f"livekit-client not installed at {d} (run `make node`)"
    if not SCRIPT.is_file():
        return f"{SCRIPT} missing"
    return None


def version() -> str | None:
    try:
        return str(json.loads((dist_dir().parent / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def _job(workloads: list[Workload], blob: Path) -> tuple[dict[str, Any], bytes]:
    data = bytearray()
    wls = []
    for wl in workloads:
        pipes: dict[tuple[str, int, str], dict[str, Any]] = {}
        for seg in wl.segments:
            if seg.fmt != "livekit":
                continue  # livekit-client has no SFrame
            for op in seg.ops:
                track = "audio" if op.codec == "opus" else "video"
                direction = "encode" if op.enc else "decode"
                key = (direction, op.pidx, track)
                pipe = pipes.get(key)
                if pipe is None:
                    pipe = pipes[key] = {"dir": direction, "participant": f"p{op.pidx}",
                                         "track": track, "codec": op.codec, "frames": []}
                pipe["frames"].append([len(data), len(op.data), op.keyframe, op.ts & 0xFFFFFFFF,
                                       op.ssrc])
                data += op.data
        pidx = sorted({k[1] for k in pipes})
        wls.append({"name": wl.name,
                    "participants": [{"name": f"p{i}", "raw_hex": material(i).hex()}
                                     for i in pidx],
                    "pipes": list(pipes.values())})
    d = dist_dir()
    return ({"worker_bundle": str(d / "livekit-client.e2ee.worker.mjs"),
             "esm": str(d / "livekit-client.esm.mjs"), "blob": str(blob),
             "workloads": wls}, bytes(data))


def run(workloads: list[Workload], *, warmup: int, runs: int, timeout_s: float
        ) -> dict[str, Any]:
    """Run the workloads in one Node process; raises RuntimeError on failure."""
    node = node_binary()
    assert node is not None
    with tempfile.TemporaryDirectory(prefix="framecrypt-bench-") as tmp:
        blob = Path(tmp) / "frames.bin"
        job, data = _job(workloads, blob)
        blob.write_bytes(data)
        job.update(warmup=warmup, runs=runs, timeout_ms=int(timeout_s * 1000) - 2000)
        jpath = Path(tmp) / "job.json"
        jpath.write_text(json.dumps(job))
        try:
            proc = subprocess.run([node, str(SCRIPT), str(jpath)], capture_output=True,
                                  text=True, timeout=timeout_s, cwd=tmp, check=False)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"livekit-client bench did not finish in {timeout_s:.0f} s") from e
    if proc.stderr:
        for line in proc.stderr.splitlines():
            if line.startswith("  "):
                print(line, file=sys.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"lkbench.mjs exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result
