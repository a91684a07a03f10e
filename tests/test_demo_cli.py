"""The demo's rough edges (issue 15, item 6): the bare ``framecrypt`` takes the demo's
options, and the report's README describes the pictures it really holds (each one
captioned, the side-by-side picture panel by panel)."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from framecrypt.cli import default_command
from framecrypt.demo import media

pytestmark = pytest.mark.timeout(90)

CLI = [sys.executable, "-m", "framecrypt"]
COMMANDS = ("demo", "formats", "keygen", "worker", "bench", "record")


def test_default_command() -> None:
    assert default_command([], COMMANDS) == ["demo"]
    assert default_command(["--participants", "4"], COMMANDS) == ["demo", "--participants",
                                                                   "4"]
    assert default_command(["--wrong-key", "--duration", "3"], COMMANDS)[0] == "demo"
    for argv in (["formats", "--reps", "3"], ["demo", "--verify"], ["-h"], ["--help"],
                 ["--version"], ["record", "--help"]):
        assert default_command(argv, COMMANDS) == argv


def test_bare_command_help_is_the_demos() -> None:
    proc = subprocess.run([*CLI, "--participants", "4", "--help"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: framecrypt demo") and "--wrong-key" in proc.stdout
    top = subprocess.run([*CLI, "--help"], capture_output=True, text=True, timeout=60,
                         check=False)
    assert top.returncode == 0 and "framecrypt --participants 4" in top.stdout
    bad = subprocess.run([*CLI, "--participants", "many"], capture_output=True, text=True,
                         timeout=60, check=False)
    assert bad.returncode == 2 and "invalid int value" in bad.stderr


def _png_width(path: Path) -> int:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width: int = struct.unpack(">I", data[16:20])[0]
    return width


def _panels(path: Path) -> int:
    gap = 8  # media.side_by_side
    w = _png_width(path)
    n = (w + gap) // (media.WIDTH + gap)
    assert n * media.WIDTH + (n - 1) * gap + (n * media.WIDTH + (n - 1) * gap) % 2 == w
    return n


def _report(tmp: Path, args: list[str]) -> tuple[dict[str, Any], str, Path]:
    out = tmp / "s.json"
    proc = subprocess.run([*CLI, *args, "--duration", "2", "--no-live", "--json", str(out),
                           "--report", "rep"], cwd=tmp, capture_output=True, text=True,
                          timeout=80, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep = tmp / "rep"
    return json.loads(out.read_text()), (rep / "README.md").read_text(), rep


def _check_captions(s: dict[str, Any], readme: str, rep: Path) -> None:
    """Every picture in the folder is shown in the README with its caption."""
    pngs = sorted(p.name for p in rep.glob("*.png"))
    assert pngs and sorted(s["captions"]) == pngs
    for name in pngs:
        assert f"]({name})" in readme, name
        assert s["captions"][name] in readme, name
    for who, name in s["pictures"].items():
        assert name.startswith(f"{who}-sees-") and who in s["captions"][name]


def test_bare_command_runs_the_demo_and_the_report_matches_its_picture(tmp_path: Path
                                                                       ) -> None:
    """``framecrypt --participants 2`` (no command): the demo with two participants.
    Its picture has two panels, the relay's view and a participant's; the README says
    left and right, nothing about a middle panel."""
    s, readme, rep = _report(tmp_path, ["--participants", "2"])
    assert [p["name"] for p in s["participants"]] == ["alice", "bob"]
    assert s["ok"] is True, s["checks_failed"]
    fig = s["figure"]
    assert fig["file"] == "relay-vs-participant.png"
    assert _panels(rep / fig["file"]) == 2
    assert [p["position"] for p in fig["panels"]] == ["left", "right"]
    assert "relay" in fig["panels"][0]["shows"]
    assert re.match(r"(alice|bob) \(room key\) decodes (alice|bob)'s video",
                    fig["panels"][1]["shows"])
    assert "Middle" not in readme and "middle" not in readme
    assert f"Left: {fig['panels'][0]['shows']}." in readme
    assert f"Right: {fig['panels'][1]['shows']}." in readme
    _check_captions(s, readme, rep)


def test_wrong_key_report_has_three_panels(tmp_path: Path) -> None:
    s, readme, rep = _report(tmp_path, ["demo", "--participants", "2", "--wrong-key",
                                        "--no-churn"])
    fig = s["figure"]
    assert _panels(rep / fig["file"]) == 3
    assert [p["position"] for p in fig["panels"]] == ["left", "middle", "right"]
    middle, right = fig["panels"][1]["shows"], fig["panels"][2]["shows"]
    assert "(room key) decodes" in middle and "mallory" not in middle.split(" decodes")[0]
    assert "mallory" in right and "nothing" in right
    assert f"Middle: {middle}." in readme and f"Right: {right}." in readme
    assert "mallory" not in s["pictures"]  # it decoded nothing to show
    _check_captions(s, readme, rep)
