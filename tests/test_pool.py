"""Pool semantics: round trips on every transport, interop of pool output with the pure
core, key operations ordered with frames, per-stream order, credits, try_*, events,
exactly one outcome, close."""

from __future__ import annotations

import asyncio
import os

import pytest
from pool_helpers import frames, iv_of, key_for, open_sealed, run, until

from framecrypt import Frame, Pool, livekit, sframe
from framecrypt.errors import (
    AuthenticationFailed,
    FrameExpired,
    Overloaded,
    PoolClosed,
    UnknownKey,
)
from framecrypt.workers.livekit.codecs import clear_prefix
from framecrypt.workers.livekit.h26x import normalize_start_codes

TRANSPORTS = ["inline", "ipc", "shm"]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("placement", ["pool", "auto"])
def test_round_trip_and_pure_core_interop(transport: str, placement: str) -> None:
    async def main() -> None:
        async with Pool(workers=2, transport=transport, placement=placement) as pool:
            people = ["alice", "bob", "carol"]
            for p in people:
                await pool.set_key(p, key_for(p))
            for n, p in enumerate(people):
                fs = frames(300, seed=n, ssrc=100 + n, keyframe_every=30)
                fs += frames(20, seed=50 + n, ssrc=100 + n, sizes=(40_000, 120_000))
                sealed = await pool.encrypt_many(p, fs)
                for f, s in zip(fs, sealed, strict=True):
                    assert open_sealed(p, s, f) == f.data
                assert len({iv_of(s) for s in sealed}) == len(sealed)
                opened = await pool.decrypt_many(
                    p, [Frame(s, f.codec, f.keyframe) for s, f in zip(sealed, fs, strict=True)])
                assert opened == [f.data for f in fs]
            st = pool.stats()
            assert st["frames_failed"] == 0 and st["protocol_errors"] == 0
            assert st["frames_ok"] == st["frames_submitted"]
            if placement == "pool":
                assert st["frames_inline"] == 0
    run(main)


def test_passphrase_keys_match_livekit_derivation() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="inline", placement="pool") as pool:
            await pool.set_key("p", "a passphrase", index=3)
            f = Frame(bytes(range(200)), "opus")
            s = await pool.encrypt("p", f)
            assert s[-1] == 3
            key = livekit.derive_key("a passphrase")
            assert livekit.unprotect(s, key=key, codec="opus", keyframe=False) == f.data
    run(main)


def test_h264_frames_through_the_pool() -> None:
    from framecrypt.samples import video

    async def main() -> None:
        async with Pool(workers=2, transport="shm") as pool:
            await pool.set_key("h", key_for("h"))
            enc = video("h264", 20)
            fs = [Frame(e.data, "h264", e.keyframe, ssrc=9, timestamp=e.pts) for e in enc]
            sealed = await pool.encrypt_many("h", fs)
            for f, s in zip(fs, sealed, strict=True):
                # the clear header's 3-byte start codes come back as 4-byte ones
                n, _ = clear_prefix("h264", f.keyframe, f.data)
                assert open_sealed("h", s, f) == normalize_start_codes(f.data[:n]) + f.data[n:]
    run(main)


def test_sframe_format_through_the_pool() -> None:
    async def main() -> None:
        async with Pool(workers=2, transport="shm", format="sframe", sframe__suite=5) as pool:
            base = bytes(range(32))
            await pool.set_key("s", base, index=7)
            fs = frames(200, seed=3, ssrc=1)
            sealed = await pool.encrypt_many("s", fs)
            ctrs = []
            for f, s in zip(fs, sealed, strict=True):
                kid, ctr, pt = sframe.unprotect(5, base, s)
                assert (kid, pt) == (7, f.data)
                ctrs.append(ctr)
            # broker-owned counters, consecutive from a random 48-bit start (so a restarted
            # broker does not repeat them under the same key)
            assert ctrs == list(range(ctrs[0], ctrs[0] + 200)) and ctrs[0] < 2**48
            assert await pool.decrypt_many("s", [Frame(s, "vp8") for s in sealed]) == \
                [f.data for f in fs]
            with pytest.raises(Exception) as e:  # replayed: the receiver's window refuses
                await pool.decrypt("s", Frame(sealed[0], "vp8"))
            assert type(e.value).__name__ == "ReplayedFrame"
    run(main)


@pytest.mark.parametrize("placement", ["pool", "auto"])
def test_key_change_is_ordered_with_frames(placement: str) -> None:
    """Frames submitted before set_key are sealed with the old key, after with the new,
    even when nothing is awaited in between."""

    async def main() -> None:
        async with Pool(workers=2, transport="shm", placement=placement) as pool:
            await pool.set_key("a", b"old key material, thirty-two b.")
            before = frames(200, seed=1, ssrc=5)
            after = frames(200, seed=2, ssrc=5)
            t1 = asyncio.ensure_future(pool.encrypt_many("a", before))
            t2 = asyncio.ensure_future(pool.set_key("a", b"new key material, thirty-two b."))
            t3 = asyncio.ensure_future(pool.encrypt_many("a", after))
            s1, _, s3 = await asyncio.gather(t1, t2, t3)
            old = livekit.derive_key(b"old key material, thirty-two b.")
            new = livekit.derive_key(b"new key material, thirty-two b.")
            for f, s in zip(before, s1, strict=True):
                assert livekit.unprotect(s, key=old, codec="vp8", keyframe=False) == f.data
            for f, s in zip(after, s3, strict=True):
                assert livekit.unprotect(s, key=new, codec="vp8", keyframe=False) == f.data
    run(main)


def test_per_stream_order_with_callbacks() -> None:
    async def main() -> None:
        async with Pool(workers=2, transport="ipc") as pool:
            seen: dict[str, list[int]] = {}
            done = asyncio.get_running_loop().create_future()
            total = 0
            people = [f"p{i}" for i in range(6)]
            for p in people:
                await pool.set_key(p, key_for(p))
            per = 400

            def cb_for(p: str, i: int):  # type: ignore[no-untyped-def]
                def cb(_: int, result: bytes | None, err: BaseException | None) -> None:
                    nonlocal total
                    assert err is None and result is not None
                    seen.setdefault(p, []).append(i)
                    total += 1
                    if total == per * len(people) and not done.done():
                        done.set_result(None)
                return cb

            fs = {p: frames(per, seed=n, ssrc=n) for n, p in enumerate(people)}
            for i in range(per):  # interleave participants frame by frame
                for p in people:
                    while True:
                        try:
                            pool.submit(p, fs[p][i], cb_for(p, i))
                            break
                        except Overloaded:
                            await asyncio.sleep(0)
            await done
            for p in people:
                assert seen[p] == list(range(per))
    run(main)


def test_try_encrypt_raises_overloaded_at_once_and_counts() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="inline", placement="pool",
                        max_frames_in_flight=64, worker_frames_in_flight=64,
                        batch__max_frames=64) as pool:
            await pool.set_key("a", key_for("a"))
            big = frames(64, seed=1, ssrc=1)
            task = asyncio.ensure_future(pool.encrypt_many("a", big))
            await asyncio.sleep(0)  # let it take all the credit
            with pytest.raises(Overloaded):
                await pool.try_encrypt("a", big[0])
            assert pool.stats()["overloaded"] >= 1
            assert len(await task) == 64
            assert len(await pool.try_encrypt("a", big[0])) > 0
    run(main)


def test_failures_are_typed_and_reported_as_events() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="inline", failure_tolerance=1,
                        ratchet_window=0) as pool:
            events = []
            pool.on_event(events.append)
            await pool.set_key("a", key_for("a"))
            s = await pool.encrypt("a", Frame(bytes(100), "vp8"))
            bad = s[:20] + bytes([s[20] ^ 1]) + s[21:]
            with pytest.raises(AuthenticationFailed):
                await pool.decrypt("a", Frame(bad, "vp8"))
            with pytest.raises(UnknownKey):
                await pool.decrypt("a", Frame(s[:-1] + b"\x05", "vp8"))
            with pytest.raises(UnknownKey):
                await pool.encrypt("nobody", Frame(bytes(10), "vp8"))
            kinds = [e.kind for e in events]
            assert "decryption_failed" in kinds and "missing_key" in kinds
            st = pool.stats()
            assert st["errors_by_reason"]["AuthenticationFailed"] == 1
            assert st["frames_ok"] + st["frames_failed"] == st["frames_submitted"]
    run(main)


def test_receiver_ratchet_is_reported_back_and_replayed_to_a_new_worker() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="shm", ratchet_window=4,
                        heartbeat_interval_s=0.05) as pool:
            events = []
            pool.on_event(events.append)
            base = key_for("r")
            await pool.set_key("r", base)
            m2 = livekit.ratchet(livekit.ratchet(base, kdf="hkdf"), kdf="hkdf")
            k2 = livekit.derive_key(m2, kdf="hkdf")
            f = Frame(bytes(range(100)), "vp8")
            s2 = livekit.protect(f.data, key=k2, codec="vp8", keyframe=False, ssrc=1,
                                 timestamp=1, send_count=1)
            assert await pool.decrypt("r", Frame(s2, "vp8")) == f.data
            assert [e.kind for e in events] == ["key_ratcheted"]
            # the broker now holds generation 2: a fresh worker gets it without ratcheting
            old_pid = pool.worker_pids()[0]
            import os
            import signal

            os.kill(old_pid, signal.SIGKILL)
            await until(lambda: pool.worker_pids() and pool.worker_pids()[0] != old_pid, 10)
            s2b = livekit.protect(f.data, key=k2, codec="vp8", keyframe=False, ssrc=1,
                                  timestamp=2, send_count=2)
            assert await pool.decrypt("r", Frame(s2b, "vp8")) == f.data
            assert [e.kind for e in events] == ["key_ratcheted"]  # no second ratchet
            # and our own sealing uses the ratcheted key too (current index moved)
            s = await pool.encrypt("r", f)
            assert livekit.unprotect(s, key=k2, codec="vp8", keyframe=False) == f.data
    run(main)


def test_realtime_budget_drops_old_deltas_never_keyframes() -> None:
    import signal

    async def main() -> None:
        async with Pool(workers=1, transport="shm", placement="pool",
                        latency_budget_ms=20, worker_frames_in_flight=4,
                        batch__max_frames=4) as pool:
            await pool.set_key("a", key_for("a"))
            (pid,) = pool.worker_pids()
            os.kill(pid, signal.SIGSTOP)  # the worker holds 4 frames, the rest queue
            try:
                fs = frames(40, seed=1, ssrc=1, keyframe_every=10)
                task = asyncio.ensure_future(pool.encrypt_many("a", fs,
                                                               return_exceptions=True))
                # the queued frames age past the 20 ms budget; the pool's timer expires them
                await until(lambda: pool.stats()["expired"] > 0, 5)
            finally:
                os.kill(pid, signal.SIGCONT)
            results = await task
            for f, r in zip(fs, results, strict=True):
                if f.keyframe:
                    assert isinstance(r, bytes)
                elif isinstance(r, BaseException):
                    assert isinstance(r, FrameExpired)
            expired = sum(isinstance(r, FrameExpired) for r in results)
            assert expired > 0 and pool.stats()["expired"] == expired
    run(main)


def test_close_gives_pending_frames_an_outcome() -> None:
    async def main() -> None:
        pool = Pool(workers=1, transport="ipc", placement="pool", max_frames_in_flight=1024,
                    worker_frames_in_flight=512)
        await pool.start()
        await pool.set_key("a", key_for("a"))
        fs = frames(3000, seed=1, ssrc=1)
        task = asyncio.ensure_future(pool.encrypt_many("a", fs, return_exceptions=True))
        await asyncio.sleep(0)
        await pool.close(timeout=0)
        results = await task
        assert len(results) == len(fs)
        assert all(isinstance(r, bytes | PoolClosed) for r in results)
        with pytest.raises(PoolClosed):
            await pool.encrypt("a", fs[0])
        st = pool.stats()
        assert st["frames_ok"] + st["frames_failed"] == st["frames_submitted"]
        assert st["frames_in_flight"] == 0 and st["bytes_in_flight"] == 0
        assert st["waiters"] == 0
    run(main)


def test_thread_safe_submit() -> None:
    import concurrent.futures

    async def main() -> None:
        async with Pool(workers=2, transport="shm") as pool:
            await pool.set_key("t", key_for("t"))
            fs = frames(200, seed=9, ssrc=3)
            loop = asyncio.get_running_loop()

            def from_thread() -> list[bytes]:
                futs = [pool.submit_threadsafe("t", f) for f in fs]
                return [f.result(timeout=30) for f in futs]

            with concurrent.futures.ThreadPoolExecutor(2) as ex:
                sealed = await loop.run_in_executor(ex, from_thread)
            for f, s in zip(fs, sealed, strict=True):
                assert open_sealed("t", s, f) == f.data
    run(main)


def test_rendezvous_moves_only_the_lost_slots_participants() -> None:
    from framecrypt.broker.rendezvous import owner

    people = [f"user{i}" for i in range(500)]
    four = [f"w{i}" for i in range(4)]
    before = {p: owner(p, four) for p in people}
    after = {p: owner(p, four[:3]) for p in people}
    moved = {p for p in people if before[p] != after[p]}
    assert moved == {p for p in people if before[p] == "w3"}
    assert 80 < len(moved) < 170  # about a quarter


def test_small_rings_apply_backpressure_and_lose_nothing() -> None:
    """Rings much smaller than the work: dispatch waits for ring space (both request and
    reply rings), every frame still gets its result, in order."""

    async def main() -> None:
        async with Pool(workers=2, transport="shm", placement="pool", ring_bytes=256 << 10,
                        batch__max_bytes=64 << 10, max_frame_bytes=128 << 10,
                        worker_bytes_in_flight=4 << 20) as pool:
            await pool.set_key("big", key_for("big"))
            fs = frames(400, seed=4, ssrc=1, sizes=(20_000, 120_000))
            sealed = await pool.encrypt_many("big", fs)
            for f, s in zip(fs, sealed, strict=True):
                assert open_sealed("big", s, f) == f.data
            opened = await pool.decrypt_many("big", [Frame(s, "vp8") for s in sealed])
            assert opened == [f.data for f in fs]
            assert pool.stats()["ring_full"] > 0  # the backpressure path was taken
    run(main)


def test_runs_under_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        async with Pool(workers=1, transport="shm") as pool:
            await pool.set_key("u", key_for("u"))
            fs = frames(100, seed=8, ssrc=2)
            sealed = await pool.encrypt_many("u", fs)
            assert await pool.decrypt_many("u", [Frame(s, "vp8") for s in sealed]) == \
                [f.data for f in fs]

    uvloop.run(asyncio.wait_for(main(), 60))


def test_sframe_replay_floor_survives_a_worker_restart() -> None:
    """The broker tracks the highest counter opened per KID and hands it to a new
    worker with the keys: a replayed frame stays refused after a restart."""
    import os
    import signal

    async def main() -> None:
        async with Pool(workers=1, transport="shm", format="sframe",
                        heartbeat_interval_s=0.05) as pool:
            base = bytes(range(16))
            await pool.set_key("s", base, index=2)
            sealed = [sframe.protect(4, base, 2, ctr, b"frame %d" % ctr) for ctr in range(50)]
            opened = await pool.decrypt_many("s", [Frame(s, "vp8") for s in sealed[:40]])
            assert opened[-1] == b"frame 39"
            old = pool.worker_pids()[0]
            os.kill(old, signal.SIGKILL)
            await until(lambda: pool.worker_pids() and pool.worker_pids()[0] != old, 10)
            with pytest.raises(Exception) as e:
                await pool.decrypt("s", Frame(sealed[39], "vp8"))
            assert type(e.value).__name__ == "ReplayedFrame"
            assert await pool.decrypt("s", Frame(sealed[45], "vp8")) == b"frame 45"
    run(main)


def test_sframe_counters_never_repeat_under_a_key_across_a_kid_switch() -> None:
    """Frames queued behind a set_key that switches the KID are sealed under the new
    KID; their counters must still never repeat under it."""

    async def main() -> None:
        async with Pool(workers=1, transport="shm", format="sframe", placement="pool") as pool:
            k1, k2 = bytes(range(16)), bytes(range(16, 32))
            await pool.set_key("s", k1, index=1)
            a = asyncio.ensure_future(pool.encrypt_many("s", frames(100, seed=1, ssrc=1)))
            b = asyncio.ensure_future(pool.set_key("s", k2, index=2))
            c = asyncio.ensure_future(pool.encrypt_many("s", frames(100, seed=2, ssrc=1)))
            d = asyncio.ensure_future(pool.encrypt_many("s", frames(100, seed=3, ssrc=1)))
            sealed = (await a) + [*(await asyncio.gather(b, c, d))[1], *(await d)]
            sealed += await pool.encrypt_many("s", frames(300, seed=4, ssrc=1))  # after
            seen: set[tuple[int, int]] = set()
            for s in sealed:
                kid, _, _ = sframe.decode_header(s)
                base = k1 if kid == 1 else k2
                got_kid, ctr, _ = sframe.unprotect(4, base, s)
                assert (got_kid, ctr) not in seen
                seen.add((got_kid, ctr))
    run(main)


@pytest.mark.parametrize("fmt", ["livekit", "sframe"])
def test_nonces_do_not_repeat_across_broker_restarts(fmt: str) -> None:
    """Keys outlive processes: a new pool with the same key must not reuse IVs/CTRs."""
    def nonces(sealed: list[bytes]) -> set[bytes]:
        if fmt == "sframe":
            return {sframe.decode_header(s)[1].to_bytes(8, "big") for s in sealed}
        return {iv_of(s) for s in sealed}

    async def one() -> set[bytes]:
        async with Pool(workers=1, transport="inline", format=fmt) as pool:
            await pool.set_key("k", key_for("k"))
            return nonces(await pool.encrypt_many("k", frames(200, seed=1, ssrc=5)))

    first, second = run(one), run(one)
    assert len(first) == len(second) == 200
    assert not first & second


@pytest.mark.parametrize(("sched", "policy"), [("normal", "SCHED_OTHER"), ("batch", "SCHED_BATCH"),
                                               ("idle", "SCHED_IDLE")])
def test_local_workers_run_under_the_configured_scheduling_policy(sched: str, policy: str
                                                                   ) -> None:
    import os

    async def main() -> None:
        async with Pool(workers=1, transport="shm", pool__worker_sched=sched) as pool:
            await pool.set_key("a", b"k")
            assert await pool.encrypt("a", Frame(b"\x90" * 40, "vp8"))
            pid = pool.worker_pids()[0]
            assert os.sched_getscheduler(pid) == getattr(os, policy)
    run(main)
