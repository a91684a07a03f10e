"""Runs inside the broker's network namespace (started by tests/test_netns.py).

A pool listening on tcp (CURVE) for workers in other namespaces: two join, frames flow,
the link of one is cut mid-stream (``ip link set ... down`` here, on the broker's side),
a third joins, a stranger is refused. Prints one JSON object with what it measured.
Usage: scenario.py KEYDIR PORT NS_W1 NS_W2 NS_W3 LINK_W1
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

from framecrypt import Frame, Pool, livekit


def key_for(p: str) -> bytes:
    return p.encode().ljust(32, b"#")


def make_frames(n: int, seed: int, ssrc: int) -> list[Frame]:
    import random

    rng = random.Random(seed)
    return [Frame(rng.randbytes(rng.randint(100, 4000)), "vp8", i % 30 == 0, ssrc, i * 3000)
            for i in range(n)]


def worker(keydir: str, ns: str, name: str, addr: str, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "framecrypt", "worker",
         "--connect", f"tcp://{addr}:{port}", "--server-key", f"{keydir}/broker.key",
         "--secret-key", f"{keydir}/{name}.key_secret", "--name", name,
         "--interval", "0.1", "--liveness", "5"], stdin=subprocess.DEVNULL)


def remote_ready(pool: Pool) -> int:
    return sum(1 for w in pool.stats()["workers"] if w["remote"] and w["state"] == "ready")


async def until(cond, timeout: float) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.01)


async def main() -> dict[str, object]:
    keydir, port = sys.argv[1], int(sys.argv[2])
    ns1, ns2, ns3, link1 = sys.argv[3:7]
    out: dict[str, object] = {}
    procs: list[subprocess.Popen[bytes]] = []
    people = [f"user{i}" for i in range(30)]
    sealed_all: dict[str, list[bytes]] = {p: [] for p in people}
    plain_all: dict[str, list[Frame]] = {p: [] for p in people}

    async def stream(pool: Pool, rounds: int, tag: int) -> float:
        t0 = time.perf_counter()
        n = 0
        for r in range(rounds):
            batch = {p: make_frames(40, seed=tag * 1000 + r * 100 + i, ssrc=i)
                     for i, p in enumerate(people)}
            res = await asyncio.gather(*(pool.encrypt_many(p, fs, return_exceptions=True)
                                         for p, fs in batch.items()))
            for (p, fs), r2 in zip(batch.items(), res, strict=True):
                plain_all[p] += fs
                sealed_all[p] += r2
                n += len(fs)
        return n / (time.perf_counter() - t0)

    try:
        async with Pool(workers=1, transport="shm", placement="pool", heartbeat_interval_s=0.1,
                        heartbeat_liveness=5, listen=f"tcp://*:{port}",
                        secret_key_file=f"{keydir}/broker.key_secret",
                        allowed_keys_dir=f"{keydir}/allowed") as pool:
            for p in people:
                await pool.set_key(p, key_for(p))
            out["fps_local_only"] = await stream(pool, 3, 1)
            procs.append(worker(keydir, ns1, "w1", "10.77.1.1", port))
            await until(lambda: remote_ready(pool) == 1, 30)
            await until(lambda: pool.stats()["participants_moving"] == 0, 10)
            out["fps_1_remote"] = await stream(pool, 3, 2)
            procs.append(worker(keydir, ns2, "w2", "10.77.2.1", port))
            await until(lambda: remote_ready(pool) == 2, 30)
            await until(lambda: pool.stats()["participants_moving"] == 0, 10)
            out["fps_2_remote"] = await stream(pool, 3, 3)
            # cut w1's link in the middle of a stream
            task = asyncio.ensure_future(stream(pool, 6, 4))
            await until(lambda: any(w["frames_in_flight"] for w in pool.stats()["workers"]
                                    if w["remote"]), 10)
            deaths = pool.stats()["worker_deaths"]
            t_cut = time.monotonic()
            subprocess.run(["ip", "link", "set", link1, "down"], check=True)
            await until(lambda: pool.stats()["worker_deaths"] > deaths, 20)
            out["detect_cut_s"] = time.monotonic() - t_cut
            await task
            # a third worker joins; a stranger is refused
            procs.append(worker(keydir, ns3, "w3", "10.77.3.1", port))
            procs.append(worker(keydir, ns3, "stranger", "10.77.3.1", port))
            await until(lambda: remote_ready(pool) == 2, 30)
            await until(lambda: pool.stats()["participants_moving"] == 0, 10)
            out["fps_w2_w3_remote"] = await stream(pool, 3, 5)
            # w1's link comes back: it reconnects (back-off) and joins as a new worker
            subprocess.run(["ip", "link", "set", link1, "up"], check=True)
            t_up = time.monotonic()
            await until(lambda: remote_ready(pool) == 3, 60)
            out["rejoin_s"] = time.monotonic() - t_up
            await until(lambda: pool.stats()["participants_moving"] == 0, 10)
            out["fps_3_remote"] = await stream(pool, 3, 6)
            st = pool.stats()
            out["remote_ready"] = remote_ready(pool)
            out["names"] = [w["name"] for w in st["workers"] if w["state"] == "ready"]
            out["worker_deaths"] = st["worker_deaths"]
            out["redispatched"] = st["redispatched"]
            out["participants_moved"] = st["participants_moved"]
            out["frames_done_by_slot"] = {w["name"]: w["frames_done"] for w in st["workers"]}
            out["submitted"] = st["frames_submitted"]
            out["ok_plus_failed"] = st["frames_ok"] + st["frames_failed"]
        # checks: every frame one outcome, opens to its input, counters unique and in order
        bad = lost = 0
        for p in people:
            key = livekit.derive_key(key_for(p))
            counters = []
            assert len(sealed_all[p]) == len(plain_all[p])
            for f, s in zip(plain_all[p], sealed_all[p], strict=True):
                if not isinstance(s, bytes):
                    lost += 1
                    continue
                if livekit.unprotect(s, key=key, codec="vp8", keyframe=f.keyframe) != f.data:
                    bad += 1
                counters.append(int.from_bytes(s[-6:-2], "big"))
            out.setdefault("counters_in_order", True)
            if counters != sorted(set(counters)):
                out["counters_in_order"] = False
        out["bad"] = bad
        out["lost"] = lost
        out["frames_total"] = sum(len(v) for v in plain_all.values())
    finally:
        for pr in procs:
            if pr.poll() is None:
                pr.terminate()
        for pr in procs:
            try:
                pr.wait(10)
            except subprocess.TimeoutExpired:
                pr.kill()
                pr.wait()
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(asyncio.wait_for(main(), 150))))
