"""``framecrypt demo --sfu janus``: the demo room through a private Janus VideoRoom, run
as a user runs it (a subprocess): with the late joiner, the leaver and mallory (wrong
key). Everyone with the key decodes everyone; Janus's own recording decodes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from janus_helpers import require_janus

pytestmark = pytest.mark.timeout(90)


def test_demo_through_janus_with_churn_and_wrong_key(tmp_path: Path) -> None:
    require_janus()
    out = tmp_path / "s.json"
    proc = subprocess.run(
        [sys.executable, "-m", "framecrypt", "demo", "--sfu", "janus", "--duration", "5",
         "--wrong-key", "--json", str(out), "--report", "rep", "--no-live"],
        cwd=tmp_path, capture_output=True, text=True, timeout=80, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "through Janus's VideoRoom" in proc.stdout
    s = json.loads(out.read_text())
    assert s["ok"] is True and s["checks_failed"] == []
    sfu = s["sfu"]
    assert sfu["name"] == "janus" and sfu["version"] == "1.1.2"
    senders = {"alice", "bob", "carol"}
    assert set(sfu["participants"]) == senders
    for name, rec in sfu["participants"].items():
        # Janus recorded this sender's sealed video, and none of it is the picture
        assert rec["janus_recorded_frames"] >= 20, (name, rec)
        assert rec["janus_decodable_frames"] == 0, (name, rec)
    assert s["relay"]["frames_decodable"] == 0 and s["relay"]["frames_forwarded"] > 500
    by = {p["name"]: p for p in s["participants"]}
    for name in ("alice", "carol"):  # present from start to end, with the key
        assert by[name]["frames_decoded"] >= 20 and by[name]["psnr_db"] > 30, by[name]
    assert by["mallory"]["frames_decoded"] == 0 and by["mallory"]["frames_rejected"] > 0
    assert s["leaver"]["name"] == "bob" and s["leaver"]["frames_decoded_after_switch"] == 0
    assert s["rotations"] and (tmp_path / "rep" / "relay-vs-participant.png").is_file()


def test_demo_without_janus_says_why(tmp_path: Path) -> None:
    env = {"PATH": "/nonexistent", "JANUS": str(tmp_path / "no-janus")}
    proc = subprocess.run([sys.executable, "-m", "framecrypt", "demo", "--sfu", "janus",
                           "--duration", "1", "--no-live"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--sfu janus: janus not found" in proc.stderr


def test_janus_room_example(tmp_path: Path) -> None:
    """examples/janus_room.py (docs/janus.md): two members, a private Janus."""
    require_janus()
    example = Path(__file__).resolve().parent.parent / "examples" / "janus_room.py"
    proc = subprocess.run([sys.executable, str(example), "--seconds", "6"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, other in (("alice", "bob"), ("bob", "alice")):
        assert r[name]["from"] == other
        # a fixed window of real time: a loaded machine decodes fewer frames in it
        assert r[name]["frames_decoded"] >= 15 and r[name]["psnr_db"] > 30, r
