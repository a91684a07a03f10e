"""``framecrypt demo``: Python participants in one E2EE room through an untrusted relay
process, run as a user runs it (a subprocess), on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

CLI = [sys.executable, "-m", "framecrypt"]


def _run(args: list[str], tmp: Path, timeout: float = 50) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=tmp, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_demo_room_json_summary(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    proc = _run(["demo", "--duration", "3", "--no-churn", "--json", str(out), "--report",
                 "rep"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = json.loads(out.read_text())
    assert [p["name"] for p in s["participants"]] == ["alice", "bob", "carol"]
    for p in s["participants"]:
        assert set(p) >= {"name", "frames_sent", "frames_decoded", "psnr_db"}
        assert p["frames_sent"] >= 45, p
        # two other senders, most of their frames decoded, the picture intact
        assert p["frames_decoded"] >= 1.2 * p["frames_sent"], p
        assert p["psnr_db"] > 30, p
        for src in p["from"].values():
            assert src["tone_hz"] == src["expected_tone_hz"]
    relay = s["relay"]
    assert relay["frames_forwarded"] >= 2 * sum(p["frames_sent"] for p in s["participants"])
    assert relay["frames_decodable"] == 0
    assert s["pool"]["frames_in_workers"] > 0 and s["pool"]["frames_failed"] == 0
    assert s["ok"] is True and s["checks_failed"] == []
    rep = tmp_path / "rep"
    for name in ("summary.json", "README.md", "relay.png", "relay-vs-participant.png"):
        assert (rep / name).is_file(), name
    assert (rep / "relay-vs-participant.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((rep / "summary.json").read_text()) == s
    assert "OK:" in proc.stdout
    # keys came over Olm on the demo's signaling bus; nobody joined or left
    assert s["signaling"]["messages"] > 0 and s["signaling"]["refused"] == 0
    assert s["sas"] == [] and s["rotations"] == [] and s["leaver"] is None


def test_demo_verify_join_leave(tmp_path: Path) -> None:
    """--verify: matching SAS emoji per pair; carol joins late (the others ratchet), bob
    leaves (the others rotate): everyone left decodes the new keys, bob decodes none."""
    out = tmp_path / "s.json"
    proc = _run(["demo", "--verify", "--duration", "10", "--json", str(out), "--report",
                 "rep"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = json.loads(out.read_text())
    assert s["ok"] is True, s["checks_failed"]
    pairs = {tuple(v["pair"]): v for v in s["sas"]}
    assert set(pairs) == {("alice", "bob"), ("alice", "carol"), ("bob", "carol")}
    for v in pairs.values():
        assert len(v["emoji_a"]) == 7 and v["emoji_a"] == v["emoji_b"], v
        assert v["verified"] is True
        assert " ".join(v["emoji_a"]) in proc.stdout
    rot = s["rotations"]
    assert {r["cause"] for r in rot} >= {"join", "leave"}
    assert all(set(r) >= {"cause", "key_index", "switched_at_s"} for r in rot)
    times = [r["switched_at_s"] for r in rot]
    assert times == sorted(times)
    joins = [r for r in rot if r["cause"] == "join"]
    leaves = [r for r in rot if r["cause"] == "leave"]
    assert {r["participant"] for r in joins} == {"alice", "bob"}
    assert {r["participant"] for r in leaves} == {"alice", "carol"}
    assert max(r["switched_at_s"] for r in joins) < min(r["switched_at_s"] for r in leaves)
    assert all(r["key_index"] == 1 for r in leaves)
    people = {p["name"]: p for p in s["participants"]}
    assert people["carol"]["joined_at_s"] < joins[0]["switched_at_s"]
    assert people["bob"]["left_at_s"] < leaves[0]["switched_at_s"]
    # every remaining participant decodes the other one on its new key
    firsts = {(e["participant"], e["from"]) for e in s["timeline"]
              if e["event"] == "first frame on the new key" and e["cause"] == "leave"}
    assert firsts == {("alice", "carol"), ("carol", "alice")}
    # the joiner decodes the others (only ever on their ratcheted keys)
    assert {e["from"] for e in s["timeline"] if e["event"] == "first frame on the new key"
            and e["cause"] == "join"} == {"alice", "bob"}
    lv = s["leaver"]
    assert lv["name"] == "bob" and lv["frames_decoded_after_switch"] == 0
    assert lv["frames_rejected_after_switch"] > 30  # it still got the RTP, and opened none
    assert lv["frames_decoded_before_switch"] > 30
    assert "key timeline" in proc.stdout and "signaling:" in proc.stdout


def test_demo_wrong_key_decodes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    proc = _run(["demo", "--participants", "2", "--wrong-key", "--duration", "3",
                 "--json", str(out), "--report", "rep"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = json.loads(out.read_text())
    people = {p["name"]: p for p in s["participants"]}
    assert set(people) == {"alice", "bob", "mallory"}
    m = people["mallory"]
    assert m["key"] == "wrong" and m["frames_decoded"] == 0 and m["psnr_db"] is None
    assert m["audio_frames_decoded"] == 0 and m["frames_rejected"] >= 60
    for name in ("alice", "bob"):
        assert people[name]["psnr_db"] > 30 and people[name]["frames_decoded"] > 30
    assert s["relay"]["frames_decodable"] == 0


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_demo_ctrl_c_is_clean(tmp_path: Path) -> None:
    proc = subprocess.Popen([*CLI, "demo", "--duration", "60", "--report", "rep"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 40
        for line in proc.stdout:
            if "media flowing" in line or time.monotonic() > deadline:
                break
        else:
            raise AssertionError("demo ended before connecting: " + proc.stderr.read()
                                 if proc.stderr else "")
        kids = _children(proc.pid)
        assert len(kids) >= 3  # 2 pool workers + the relay
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    s = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert s["interrupted"] is True and s["ok"] is False
    assert s["duration_s"] < 30
    assert not [k for k in kids if _alive(k)], "child processes left behind"


def test_formats_table_still_there(tmp_path: Path) -> None:
    proc = _run(["formats", "--reps", "1", "--json", "f.json"], tmp_path, timeout=40)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tmp_path / "f.json").read_text())["rows"]
    assert {r["format"] for r in rows} == {"livekit", "jitsi", "sframe", "dave"}


def test_join_room_example(tmp_path: Path) -> None:
    """examples/join_room.py: two participant processes and the relay, as documented."""
    example = Path(__file__).resolve().parent.parent / "examples" / "join_room.py"
    relay = subprocess.Popen([sys.executable, "-m", "framecrypt.demo.relay", "--senders",
                              "alice,bob"], stdout=subprocess.PIPE, text=True)
    try:
        assert relay.stdout is not None
        port = json.loads(relay.stdout.readline())["port"]
        people = [subprocess.Popen([sys.executable, str(example), name, "--room", "alice,bob",
                                    "--relay", f"127.0.0.1:{port}", "--seconds", "3",
                                    "--passphrase", "test passphrase"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                  for name in ("alice", "bob")]
        outs = [p.communicate(timeout=45) for p in people]
    finally:
        relay.send_signal(signal.SIGINT)
        relay.wait(timeout=15)
    assert relay.returncode == 0
    for (out, err), name, other in zip(outs, ("alice", "bob"), ("bob", "alice"), strict=True):
        assert "Traceback" not in err, err
        last = out.strip().splitlines()[-1]
        assert last.startswith(f"{name}: {other}/video "), out
        video, audio = (int(part.split()[1]) for part in last.split(": ", 1)[1].split(", "))
        assert video >= 30 and audio >= 50, last
        assert " dB)" in last
