"""Remote workers over ZeroMQ tcp + CurveZMQ on loopback: join at run time, participants
move by rendezvous hashing with their keys, a killed remote worker's frames are
re-dispatched, an unknown worker key is refused. (The same over separate network
namespaces, with a cut link, is in test_netns.py.)"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pool_helpers import frames, iv_of, key_for, open_sealed, run, until

from framecrypt import Frame, Pool
from framecrypt.cli import main as cli

pytestmark = pytest.mark.timeout(120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    for name in ("broker", "w1", "w2", "w3", "stranger"):
        assert cli(["keygen", name, "--dir", str(tmp_path)]) == 0
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    for name in ("w1", "w2", "w3"):
        (allowed / f"{name}.key").write_bytes((tmp_path / f"{name}.key").read_bytes())
    return tmp_path


def start_worker(keys: Path, name: str, endpoint: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "framecrypt", "worker", "--connect", endpoint,
         "--server-key", str(keys / "broker.key"), "--secret-key", str(keys / f"{name}.key_secret"),
         "--name", name, "--interval", "0.1", "--liveness", "5"],
        stdin=subprocess.DEVNULL)


def remote_ready(pool: Pool) -> list[dict[str, object]]:
    return [w for w in pool.stats()["workers"] if w["remote"] and w["state"] == "ready"]


def test_keygen_writes_private_secret_key(keys: Path) -> None:
    assert (keys / "w1.key_secret").stat().st_mode & 0o077 == 0
    assert b"secret-key" in (keys / "w1.key_secret").read_bytes()
    assert b"secret-key" not in (keys / "w1.key").read_bytes()


def test_remote_workers_join_move_participants_and_survive_a_kill(keys: Path) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"

    async def main() -> None:
        procs: list[subprocess.Popen[bytes]] = []
        try:
            async with Pool(workers=1, transport="shm", placement="pool",
                            heartbeat_interval_s=0.1, heartbeat_liveness=5,
                            listen=endpoint, secret_key_file=str(keys / "broker.key_secret"),
                            allowed_keys_dir=str(keys / "allowed")) as pool:
                people = [f"user{i}" for i in range(24)]
                for p in people:
                    await pool.set_key(p, key_for(p))
                # some traffic on the local worker alone
                first = {p: await pool.encrypt_many(p, frames(20, seed=i, ssrc=i))
                         for i, p in enumerate(people)}
                procs += [start_worker(keys, "w1", endpoint), start_worker(keys, "w2", endpoint)]
                await until(lambda: len(remote_ready(pool)) == 2, 30)
                await until(lambda: pool.stats()["participants_moved"] > 0, 10)
                # the stranger's key is not allowed: it never joins
                procs.append(start_worker(keys, "stranger", endpoint))
                # a stream through everyone; kill one remote worker in the middle: hold
                # both (SIGSTOP) so frames are surely in flight there, kill one, resume
                for pr in procs[:2]:
                    pr.send_signal(signal.SIGSTOP)
                fs = {p: frames(300, seed=100 + i, ssrc=i) for i, p in enumerate(people)}
                tasks = {p: asyncio.ensure_future(
                    pool.encrypt_many(p, fs[p], return_exceptions=True)) for p in people}
                await until(lambda: any(w["frames_in_flight"] for w in remote_ready(pool)), 10)
                busy = next(str(w["name"]) for w in remote_ready(pool) if w["frames_in_flight"])
                victim, other = (procs[0], procs[1]) if "-w1-" in busy else (procs[1], procs[0])
                victim.send_signal(signal.SIGKILL)
                other.send_signal(signal.SIGCONT)
                results = {p: await t for p, t in tasks.items()}
                await until(lambda: pool.stats()["worker_deaths"] >= 1, 10)
                st = pool.stats()
                assert st["redispatched"] > 0
                assert len(remote_ready(pool)) == 1, st["workers"]  # the stranger never got in
                remote_done = sum(int(w["frames_done"]) for w in st["workers"] if w["remote"])
                assert remote_done > 0
                for i, p in enumerate(people):
                    sealed = first[p] + [r for r in results[p]]
                    assert all(isinstance(r, bytes) for r in sealed)
                    plain = frames(20, seed=i, ssrc=i) + fs[p]
                    for f, s in zip(plain, sealed, strict=True):
                        assert open_sealed(p, s, f) == f.data
                    counters = [int.from_bytes(iv_of(s)[8:], "big") for s in sealed]
                    assert counters == list(range(len(sealed)))  # unique, in order
                # after all that, decrypt works wherever the participants now live
                p = people[0]
                back = await pool.decrypt_many(p, [Frame(s, "vp8") for s in results[p]])
                assert back == [f.data for f in fs[p]]
        finally:
            for pr in procs:
                if pr.poll() is None:
                    pr.send_signal(signal.SIGTERM)
            for pr in procs:
                try:
                    pr.wait(10)
                except subprocess.TimeoutExpired:
                    pr.kill()
                    pr.wait()

    run(main, timeout=100)


def test_worker_refuses_plain_tcp_endpoint(keys: Path) -> None:
    assert cli(["worker", "--connect", "ipc:///tmp/x", "--server-key", str(keys / "broker.key"),
                "--secret-key", str(keys / "w1.key_secret")]) == 2


def test_pool_refuses_tcp_without_curve_keys() -> None:
    from framecrypt.conf import ConfigError

    with pytest.raises(ConfigError):
        Pool(workers=1, transport="inline", listen="tcp://127.0.0.1:5999")
    assert os.environ.get("FRAMECRYPT_REMOTE__LISTEN") is None
