"""Remote workers on real separate hosts: network namespaces joined by veth pairs
(created and removed here; root needed — skipped with the reason where not permitted,
never skipped in CI). A broker in one namespace, workers in three others; a link is cut
mid-stream, a third worker joins, an unknown key is refused. Private test addresses
10.77.x.0/24 exist only inside these namespaces."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from framecrypt.cli import main as cli

pytestmark = pytest.mark.timeout(240)
HERE = Path(__file__).parent


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


def _can_netns() -> str | None:
    if os.geteuid() != 0:
        return "needs root for ip netns"
    name = f"fcprobe{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", name)
        _ip("netns", "del", name)
    except (OSError, subprocess.SubprocessError) as e:
        return f"ip netns not permitted here: {e}"
    return None


@pytest.fixture
def netns() -> Iterator[dict[str, str]]:
    reason = _can_netns()
    if reason is not None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"network namespaces unavailable in CI: {reason}", pytrace=False)
        pytest.skip(reason)
    tag = secrets.token_hex(2)
    names = {"b": f"fcb{tag}", "1": f"fcw1{tag}", "2": f"fcw2{tag}", "3": f"fcw3{tag}"}
    made: list[str] = []
    try:
        for ns in names.values():
            _ip("netns", "add", ns)
            made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        for i in ("1", "2", "3"):
            vb, vw = f"vb{i}{tag}", f"vw{i}{tag}"
            _ip("link", "add", vb, "type", "veth", "peer", "name", vw)
            _ip("link", "set", vb, "netns", names["b"])
            _ip("link", "set", vw, "netns", names[i])
            _ip("-n", names["b"], "addr", "add", f"10.77.{i}.1/24", "dev", vb)
            _ip("-n", names[i], "addr", "add", f"10.77.{i}.2/24", "dev", vw)
            _ip("-n", names["b"], "link", "set", vb, "up")
            _ip("-n", names[i], "link", "set", vw, "up")
        names["link1"] = f"vb1{tag}"
        yield names
    finally:
        for ns in made:  # deleting a namespace removes its veth ends too
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


def test_workers_across_namespaces_cut_link_join_and_refuse(netns: dict[str, str],
                                                             tmp_path: Path) -> None:
    for name in ("broker", "w1", "w2", "w3", "stranger"):
        assert cli(["keygen", name, "--dir", str(tmp_path)]) == 0
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    for name in ("w1", "w2", "w3"):
        (allowed / f"{name}.key").write_bytes((tmp_path / f"{name}.key").read_bytes())
    res = subprocess.run(
        ["ip", "netns", "exec", netns["b"], sys.executable, str(HERE / "netns" / "scenario.py"),
         str(tmp_path), "5555", netns["1"], netns["2"], netns["3"], netns["link1"]],
        capture_output=True, text=True, timeout=200)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    print(json.dumps(out, indent=1))
    assert out["bad"] == 0 and out["lost"] == 0
    assert out["submitted"] == out["ok_plus_failed"] == out["frames_total"]
    assert out["counters_in_order"] is True
    assert out["worker_deaths"] >= 1 and out["redispatched"] > 0
    assert out["detect_cut_s"] < 0.1 * 5 + 2.0
    assert out["remote_ready"] == 3  # w2, w3 and w1 back as a new worker; no stranger
    assert not any("stranger" in n for n in out["names"])
    assert sum(1 for n in out["names"] if "-w1-" in n) == 1
    assert out["participants_moved"] > 0
    done = out["frames_done_by_slot"]
    assert sum(v for k, v in done.items() if "w3" in k) > 0
