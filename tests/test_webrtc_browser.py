"""A real browser in the room: headless Chromium runs the PUBLISHED livekit-client E2EE
worker (npm 2.23.0, tests/interop/node_modules) through RTCRtpScriptTransform or
createEncodedStreams, and exchanges VP8 + Opus with an aiortc peer that uses framecrypt
(tests/browser/harness.py). Same key: both directions decode the y4m pattern
(PSNR > 30 dB) and hear the other's tone. Wrong key: nothing decodes, either way.

Each case runs in a private network namespace (``unshare -n``, only ``lo``): no packet
can leave the machine. Missing Chromium, livekit-client or namespaces skip the tests with
the reason; under CI (env ``CI`` set) they fail instead. ``.ci/install-chromium``
installs Chromium.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import lk_oracle
import pytest

HARNESS = Path(__file__).resolve().parent / "browser" / "harness.py"
UMD_BUNDLE = lk_oracle.WORKER_BUNDLE.parent / "livekit-client.umd.js"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def chromium_binary() -> str | None:
    env = os.environ.get("CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def namespace_prefix() -> list[str] | str:
    """The command prefix that runs a process in a fresh network namespace, or why not."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return "unshare (util-linux) not found"
    errors = []
    for prefix in ([unshare, "-n"], [unshare, "-rn"]):  # root, then a user namespace
        try:
            subprocess.run([*prefix, "true"], check=True, capture_output=True, timeout=10)
            return prefix
        except (OSError, subprocess.SubprocessError) as exc:
            stderr = getattr(exc, "stderr", b"") or b""
            errors.append(f"{' '.join(prefix[1:])}: {stderr.decode(errors='replace').strip()}")
    return "cannot create a network namespace (" + "; ".join(errors) + ")"


@pytest.fixture(scope="session")
def browser_env() -> tuple[str, list[str]]:
    reasons = []
    chromium = chromium_binary()
    if chromium is None:
        reasons.append("chromium not found (run .ci/install-chromium or set CHROMIUM)")
    if not lk_oracle.WORKER_BUNDLE.is_file() or not UMD_BUNDLE.is_file():
        reasons.append("livekit-client not installed: run `cd tests/interop && npm ci`")
    elif hashlib.sha256(lk_oracle.WORKER_BUNDLE.read_bytes()).hexdigest() \
            != lk_oracle.WORKER_SHA256:
        reasons.append("the livekit-client E2EE worker bundle is not the pinned published one")
    ns = namespace_prefix()
    if isinstance(ns, str):
        reasons.append(ns)
    if reasons:
        msg = "browser interop unavailable: " + "; ".join(reasons)
        if _in_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    assert chromium is not None and not isinstance(ns, str)
    return chromium, ns


def run_case(env: tuple[str, list[str]], transform: str, wrong_key: bool) -> dict:
    chromium, prefix = env
    cmd = [*prefix, sys.executable, str(HARNESS), "--netns", "--transform", transform,
           "--chromium", chromium, "--timeout", "40"]
    if wrong_key:
        cmd.append("--wrong-key")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=55, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not result["timed_out"], json.dumps(result, indent=1)
    assert not result["page_logs"], result["page_logs"]
    return result


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transform", ["script", "insertable"])
def test_browser_and_aiortc_decode_each_other(browser_env: tuple[str, list[str]],
                                               transform: str) -> None:
    r = run_case(browser_env, transform, wrong_key=False)
    if transform == "script":
        assert r["offer"]["script_transform"] is True
    a, b = r["aiortc"], r["browser"]
    # browser -> aiortc: livekit-client sealed, framecrypt opened, the y4m pattern intact
    assert a["rejected_video"] == 0 and a["rejected_audio"] == 0
    assert a["psnr_db"] > 30 and a["psnr_min_db"] > 25, a
    assert a["tone_hz"] == 440.0, a
    # aiortc -> browser: framecrypt sealed, livekit-client opened, Chromium decoded
    assert b["worker_error_count"] == 0, b["worker_errors"]
    assert b["frames_scored"] >= 20 and b["video_frames_decoded"] >= 20
    assert b["psnr_db"] > 30 and b["psnr_min_db"] > 25, b
    assert abs(b["tone_hz"] - 660.0) < 15, b
    assert b["sent_width"] == 320 and b["frame_width"] == 320


@pytest.mark.timeout(60)
def test_wrong_key_decodes_nothing_either_way(browser_env: tuple[str, list[str]]) -> None:
    r = run_case(browser_env, "script", wrong_key=True)
    a, b = r["aiortc"], r["browser"]
    assert a["video_frames_decoded"] == 0 and a["audio_frames_decoded"] == 0
    assert a["rejected_video"] >= 60 and a["rejected_audio"] >= 100
    assert a["keyframe_requests"] >= 1  # Chromium asked for keyframes it could not decode
    assert b["video_packets_received"] >= 150 and b["video_frames_decoded"] == 0
    assert b["frames_scored"] == 0 and b["audio_samples_received"] == 0
    assert b["worker_error_count"] >= 1  # livekit-client reported the failed decryption
