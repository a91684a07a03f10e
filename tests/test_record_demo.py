"""``framecrypt demo --sfu janus --record DIR --json PATH`` as a user runs it: the demo
room through a private Janus, recorded by framecrypt record (a member of the demo's
key room: a participant joins late and one leaves, so keys ratchet and rotate while
recording), and by Janus itself. Per participant the JSON carries ``frames_written``,
``recording_psnr_db`` of framecrypt's recording against the source and
``janus_decodable_frames`` of Janus's own recording (0)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from record_helpers import ROOT, decode_file

from framecrypt.record.manifest import validate

pytestmark = pytest.mark.timeout(150)


def test_demo_janus_record(tmp_path: Path) -> None:
    from framecrypt.webrtc.janus_server import janus_unavailable

    why = janus_unavailable()
    if why is not None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"Janus unavailable in CI: {why}", pytrace=False)
        pytest.skip(f"Janus unavailable: {why}")
    out = tmp_path / "s.json"
    proc = subprocess.run(
        [sys.executable, "-m", "framecrypt", "demo", "--sfu", "janus", "--record", "rec",
         "--json", str(out), "--report", "rep", "--no-live"],
        cwd=tmp_path, capture_output=True, text=True, timeout=140, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = json.loads(out.read_text())
    assert s["ok"] is True, s["checks_failed"]
    rec = tmp_path / "rec"
    manifest = json.loads((rec / "manifest.json").read_text())
    assert validate(manifest) == [] and manifest["room"]["source"] == "janus"
    for p in s["participants"]:
        name = p["name"]
        assert p["frames_written"] > 0.8 * p["frames_sent"], p  # video + audio written
        assert p["recording_psnr_db"] >= 35.0, p
        assert p["janus_decodable_frames"] == 0, p
        m = manifest["participants"][name]
        assert m["frames_written"] == p["frames_written"]
        for f in m["files"]:
            d = decode_file(rec / f["path"])
            assert len(d["video"]) == f["tracks"]["video"]["frames"]
            assert min(d["video"]) >= 35.0, (name, min(d["video"]))
    # the recorder followed the key room: alice's rotation after bob left
    kinds = {(k["kind"]) for k in manifest["participants"]["alice"]["key_rotations"]}
    assert "key index" in kinds, manifest["participants"]["alice"]["key_rotations"]
    assert "recording: rec/" in proc.stdout
