"""Faults with real processes (bounded, loopback ipc only): kill -9 with >= 10k frames
in flight, a hung (SIGSTOPped) worker, 10x overload, garbage on the sockets, and
shm/ipc files after close and after a SIGKILLed broker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import msgpack
import pytest
import zmq
from pool_helpers import frames, iv_of, key_for, open_sealed, rss_bytes, run, tagged_files, until

from framecrypt import Frame, Pool
from framecrypt.errors import FramecryptError, Overloaded, WorkerLost
from framecrypt.transports import hygiene, wire
from framecrypt.transports.shm import memfd_supported

pytestmark = pytest.mark.timeout(180)


def _alive(pid: int) -> bool:
    """True while any thread of ``pid`` still runs. A killed multi-threaded process
    (ZeroMQ has an I/O thread) shows its leader as a zombie while other threads are
    still exiting, and its files (and flocks) are released only after the last one."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return False
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                if f.read().split(")")[-1].split()[0] not in ("Z", "X"):
                    return True
        except FileNotFoundError:
            continue
    return False


def test_kill9_with_10k_frames_in_flight_every_frame_one_outcome_no_iv_reuse() -> None:
    async def main() -> None:
        async with Pool(workers=2, transport="shm", placement="pool",
                        max_frames_in_flight=20000, heartbeat_interval_s=0.1) as pool:
            people = [f"p{i}" for i in range(6)]
            for p in people:
                await pool.set_key(p, key_for(p))
            batches = {p: frames(2000, seed=i, ssrc=1000 + i, sizes=(40, 2500),
                                 keyframe_every=60) for i, p in enumerate(people)}
            victim, other = pool.worker_pids()
            for pid in (victim, other):  # hold the frames in the pool until the kill
                os.kill(pid, signal.SIGSTOP)
            tasks = {p: asyncio.ensure_future(pool.encrypt_many(p, fs, return_exceptions=True))
                     for p, fs in batches.items()}
            await until(lambda: all(w["frames_in_flight"] > 0 for w in pool.stats()["workers"]),
                        10)
            assert pool.stats()["frames_in_flight"] == 12_000
            os.kill(victim, signal.SIGKILL)
            os.kill(other, signal.SIGCONT)
            results = {p: await t for p, t in tasks.items()}
            st = pool.stats()
            assert st["worker_deaths"] == 1 and st["redispatched"] > 0
            assert victim not in pool.worker_pids() and len(pool.worker_pids()) == 2
            seen_ivs: set[tuple[str, bytes]] = set()
            total = 0
            for p, fs in batches.items():
                res = results[p]
                assert len(res) == len(fs)  # exactly one outcome each
                for f, r in zip(fs, res, strict=True):
                    if isinstance(r, WorkerLost):
                        continue
                    assert isinstance(r, bytes), r
                    assert open_sealed(p, r, f) == f.data
                    iv = (p, iv_of(r))
                    assert iv not in seen_ivs  # no (key, IV) pair twice
                    seen_ivs.add(iv)
                    total += 1
            assert total + st["worker_lost"] == 12_000
            assert st["frames_ok"] + st["frames_failed"] == st["frames_submitted"]
            # the pool still works after the crash
            s = await pool.encrypt("p0", Frame(b"after", "opus"))
            assert open_sealed("p0", s, Frame(b"after", "opus")) == b"after"
        # and a fresh pool (new processes, keys set anew) opens every sealed frame
        async with Pool(workers=2, transport="ipc", placement="pool") as fresh:
            for p in people:
                await fresh.set_key(p, key_for(p))
            for p, fs in batches.items():
                ok = [(f, r) for f, r in zip(fs, results[p], strict=True)
                      if isinstance(r, bytes)]
                opened = await fresh.decrypt_many(
                    p, [Frame(r, f.codec, f.keyframe) for f, r in ok])
                assert opened == [f.data for f, _ in ok]
    run(main, timeout=120)


def test_resent_frame_seals_to_the_same_bytes() -> None:
    """A frame re-dispatched after a crash keeps its counter: same IV, same bytes."""

    async def main() -> None:
        async with Pool(workers=1, transport="shm", placement="pool",
                        heartbeat_interval_s=0.1) as pool:
            await pool.set_key("a", key_for("a"))
            fs = frames(3000, seed=5, ssrc=7)
            first = await pool.encrypt_many("a", fs[:10])
            victim = pool.worker_pids()[0]
            os.kill(victim, signal.SIGSTOP)
            task = asyncio.ensure_future(pool.encrypt_many("a", fs[10:]))
            await until(lambda: pool.stats()["workers"][0]["frames_in_flight"] > 0, 10)
            os.kill(victim, signal.SIGKILL)
            rest = await task
            assert pool.stats()["redispatched"] > 0
            ivs = [iv_of(s) for s in first + rest]
            counters = [int.from_bytes(iv[8:], "big") for iv in ivs]
            assert counters == list(range(3000))  # counters assigned once, in order
    run(main, timeout=60)


def test_hung_worker_is_detected_and_replaced() -> None:
    async def main() -> None:
        interval, liveness = 0.1, 3
        async with Pool(workers=2, transport="shm", placement="pool",
                        heartbeat_interval_s=interval, heartbeat_liveness=liveness) as pool:
            for p in ("a", "b", "c", "d"):
                await pool.set_key(p, key_for(p))
            victim = pool.worker_pids()[0]
            os.kill(victim, signal.SIGSTOP)
            t0 = time.monotonic()
            try:
                tasks = [asyncio.ensure_future(pool.encrypt_many(p, frames(500, seed=i, ssrc=i)))
                         for i, p in enumerate("abcd")]
                await until(lambda: pool.stats()["worker_deaths"] >= 1, 10)
                detect = time.monotonic() - t0
                results = await asyncio.gather(*tasks)
            finally:
                if _alive(victim):
                    os.kill(victim, signal.SIGKILL)
            assert detect < interval * liveness + 2.0
            assert all(len(r) == 500 for r in results)
            assert victim not in pool.worker_pids() and len(pool.worker_pids()) == 2
            await until(lambda: not _alive(victim), 5)
    run(main, timeout=60)


def test_worker_lost_after_dispatch_attempts() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="ipc", placement="pool", dispatch_attempts=1,
                        heartbeat_interval_s=0.1) as pool:
            await pool.set_key("a", key_for("a"))
            victim = pool.worker_pids()[0]
            os.kill(victim, signal.SIGSTOP)
            task = asyncio.ensure_future(pool.encrypt_many("a", frames(2000, seed=1, ssrc=1),
                                                           return_exceptions=True))
            await until(lambda: pool.stats()["workers"][0]["frames_in_flight"] > 0, 10)
            os.kill(victim, signal.SIGKILL)
            res = await task
            lost = [r for r in res if isinstance(r, WorkerLost)]
            assert lost and all(isinstance(r, bytes | WorkerLost) for r in res)
            assert pool.stats()["worker_lost"] == len(lost)
    run(main, timeout=60)


def test_10x_overload_keeps_memory_bounded_and_counts_rejections() -> None:
    async def main() -> None:
        limit = 512
        async with Pool(workers=2, transport="shm", placement="pool",
                        max_frames_in_flight=limit, worker_frames_in_flight=256,
                        max_bytes_in_flight=8 << 20, worker_bytes_in_flight=4 << 20,
                        on_overload="reject") as pool:
            await pool.set_key("a", key_for("a"))
            payload = frames(limit * 10, seed=3, ssrc=1, sizes=(1000, 1000))
            rss0 = rss_bytes()
            peak_in_flight = 0
            rejected = accepted = 0
            for _ in range(8):
                tasks = []
                for f in payload:
                    try:
                        tasks.append(asyncio.ensure_future(pool.try_encrypt("a", f)))
                    except Overloaded:
                        rejected += 1
                await asyncio.sleep(0)
                peak_in_flight = max(peak_in_flight, pool.stats()["frames_in_flight"])
                for r in await asyncio.gather(*tasks, return_exceptions=True):
                    if isinstance(r, Overloaded):
                        rejected += 1
                    else:
                        assert isinstance(r, bytes)
                        accepted += 1
            grown = rss_bytes() - rss0
            assert peak_in_flight <= limit
            assert rejected > 0 and accepted + rejected == 8 * len(payload)
            assert pool.stats()["overloaded"] == rejected
            assert grown < 64 << 20, grown
            for pid in pool.worker_pids():
                assert rss_bytes(pid) < 400 << 20
    run(main, timeout=120)


def test_waiting_submissions_never_exceed_the_limit() -> None:
    async def main() -> None:
        limit = 256
        async with Pool(workers=2, transport="ipc", placement="pool",
                        max_frames_in_flight=limit, worker_frames_in_flight=128) as pool:
            await pool.set_key("a", key_for("a"))
            peak = 0

            def probe() -> None:
                nonlocal peak
                peak = max(peak, pool.stats()["frames_in_flight"])

            tasks = [asyncio.ensure_future(pool.encrypt_many("a", frames(100, seed=i, ssrc=1)))
                     for i in range(30)]
            while not all(t.done() for t in tasks):
                probe()
                await asyncio.sleep(0)
            assert all(len(t.result()) == 100 for t in tasks)
            assert peak <= limit
    run(main, timeout=60)


def test_garbage_on_the_sockets_changes_a_counter_and_nothing_else() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="shm", placement="pool") as pool:
            await pool.set_key("a", key_for("a"))
            pid = pool.worker_pids()[0]
            ctx = zmq.Context()
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(pool.service.endpoint)
            garbage = [
                [b"\xff\xfe"], [b""], [msgpack.packb([99, wire.RESULT, 1, 1])],
                [msgpack.packb([wire.VERSION, 77])], [msgpack.packb({"a": 1})],
                [wire.pack(wire.RESULT, 1, 5), b"short"], [os.urandom(300)],
                # the answer to the retired BATCH, well formed as old workers sent it
                [wire.pack(wire.RESULT, 1, 1), wire.RES.pack(wire.ST_OK, 0, 0)],
            ]
            before = pool.stats()["protocol_errors"]
            for g in garbage:
                s.send_multipart(g)
            await until(lambda: pool.stats()["protocol_errors"] >= before + len(garbage), 10)
            # garbage to the worker, through the broker's socket, must not kill it (kind
            # BATCH is retired: refused like any unknown kind)
            svc = pool.service
            sl = svc.ledger.slots[0]
            for g in ([b"\x00"], [wire.pack(wire.BATCH, 1, 3), b"xx"],
                      [wire.pack(wire.CONTROL, 1, "nope")], [wire.pack(wire.CONFIG, "x", None)]):
                svc.send(sl, g)
            # an in-flight key operation the worker cannot apply fails typed, nothing hangs
            failed: asyncio.Future[BaseException | None] = \
                asyncio.get_running_loop().create_future()
            svc.ledger.control(0, "no-such-op", (0,),
                               lambda _c, _r, err: failed.set_result(err))
            svc.schedule_flush()
            assert isinstance(await failed, FramecryptError)
            f = Frame(b"still works", "opus")
            sealed = await pool.encrypt("a", f)
            assert open_sealed("a", sealed, f) == f.data
            assert pool.worker_pids() == [pid]
            assert pool.stats()["worker_deaths"] == 0
            s.close(0)
            ctx.term()
    run(main, timeout=60)


# rings are anonymous memory (memfd) where the kernel has it: only the broker's socket
# has a name; elsewhere 2 named segments per worker too
NAMED_RINGS = 0 if memfd_supported() else 2


def _memfds(pid: int) -> list[str]:
    fds = f"/proc/{pid}/fd"
    links = []
    for fd in os.listdir(fds):
        with contextlib.suppress(OSError):
            links.append(os.readlink(f"{fds}/{fd}"))
    return sorted({x for x in links if x.startswith("/memfd:fc-")})


def test_files_are_private_and_removed_on_close() -> None:
    async def main() -> None:
        pool = Pool(workers=2, transport="shm")
        await pool.start()
        tag = pool.service.tag
        rdir = hygiene.runtime_dir()
        files = tagged_files(tag, "/dev/shm", rdir)
        assert len(files) == 1 + 2 * NAMED_RINGS  # the broker socket (+ named rings)
        if not NAMED_RINGS:
            for pid in pool.worker_pids():  # each worker holds its two rings, unnamed
                assert len(_memfds(pid)) == 2, _memfds(pid)
            assert len(_memfds(os.getpid())) == 4  # and the broker all of them
        for path in files:
            assert os.stat(path).st_mode & 0o077 == 0
        await pool.close()
        assert tagged_files(tag, "/dev/shm", rdir) == []
    run(main)


BROKER = textwrap.dedent("""
    import asyncio, sys
    from framecrypt import Pool, Frame
    async def main():
        pool = Pool(workers=2, transport="shm")
        await pool.start()
        await pool.set_key("a", b"k" * 32)
        await pool.encrypt("a", Frame(b"x" * 100, "vp8"))
        print(pool.service.tag, *pool.worker_pids(), flush=True)
        await asyncio.sleep(60)
    asyncio.run(main())
""")


def test_sigkilled_broker_leaves_no_orphans_and_next_start_sweeps() -> None:
    proc = subprocess.Popen([sys.executable, "-c", BROKER], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        tag, pids = line[0], [int(p) for p in line[1:]]
        rdir = hygiene.runtime_dir()
        assert len(tagged_files(tag, "/dev/shm", rdir)) == 1 + 2 * NAMED_RINGS
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not any(_alive(p) for p in pids), "workers outlived their broker"
        # left behind by SIGKILL: the socket's name only (no ring, no plaintext)
        assert len(tagged_files(tag, "/dev/shm", rdir)) == 1 + 2 * NAMED_RINGS

        async def restart() -> None:
            async with Pool(workers=1, transport="shm") as pool:
                assert len([p for p in pool.swept if tag in p]) == 1 + 2 * NAMED_RINGS
        run(restart)
        assert tagged_files(tag, "/dev/shm", rdir) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_workers_never_dump_core() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="shm") as pool:
            pid = pool.worker_pids()[0]
            with open(f"/proc/{pid}/limits") as f:
                line = next(x for x in f if x.startswith("Max core file size"))
            assert line.split()[4:6] == ["0", "0"], line
    run(main)


def test_a_stalled_broker_loop_does_not_kill_healthy_workers() -> None:
    """A frozen event loop (here blocked on purpose for 10 liveness bounds) is the
    broker's lateness, not the workers': no worker is declared dead or exits."""

    async def main() -> None:
        async with Pool(workers=2, transport="shm", heartbeat_interval_s=0.05,
                        heartbeat_liveness=4) as pool:
            await pool.set_key("a", key_for("a"))
            pids = pool.worker_pids()
            time.sleep(2.0)  # the stall under test: the loop cannot run
            await until(lambda: pool.stats()["loop_stalls"] >= 1, 5)
            f = Frame(b"after the stall", "opus")
            assert open_sealed("a", await pool.encrypt("a", f), f) == f.data
            st = pool.stats()
            assert st["worker_deaths"] == 0 and pool.worker_pids() == pids
    run(main)
