"""Zero-copy results (``encrypt_batch``/``decrypt_batch(..., zero_copy=True)``): outputs
stay in the workers' shared reply ring as views until released; the ring space is
the result's until then (backpressure), and comes back on release, on a cancelled
await, on garbage collection; a worker's death leaves held views readable."""

from __future__ import annotations

import asyncio
import gc
import os
import signal

import pytest
from pool_helpers import frames, key_for, open_sealed, run, until

from framecrypt import Pool
from framecrypt.batch import FrameBatch
from framecrypt.errors import ResultReleased
from framecrypt.transports import wire
from framecrypt.workers.engine import reply_size


def _rep_ring(pool: Pool, index: int = 0):  # type: ignore[no-untyped-def]
    ring = pool.service.ledger.slots[index].rep_ring
    assert ring is not None
    return ring


def test_outputs_are_views_into_the_reply_ring_until_released() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="shm", placement="pool") as pool:
            await pool.set_key("a", key_for("a"))
            fs = frames(50, seed=1, ssrc=7)
            batch = FrameBatch.from_frames(fs)
            res = await pool.encrypt_batch("a", batch, zero_copy=True)
            assert res.zero_copy and res.failed == 0
            seg = pool.service.supervisor.workers[0].rep_seg  # type: ignore[union-attr]
            assert seg is not None
            v = res.view(3)
            assert isinstance(v, memoryview) and v.obj is seg.view.obj  # no copy: the ring
            assert _rep_ring(pool).outstanding == 1
            sealed = res.payloads()
            for f, s in zip(fs, sealed, strict=True):
                assert open_sealed("a", s, f) == f.data
            res.release()
            assert _rep_ring(pool).outstanding == 0
            with pytest.raises(ResultReleased):
                res.view(0)
            with pytest.raises(ResultReleased):
                res.payloads()
            res.release()  # idempotent
            # opening, with a with-block
            async with asyncio.timeout(30):
                opened = await pool.decrypt_batch("a", FrameBatch.of(sealed, "vp8"),
                                                  zero_copy=True)
            with opened:
                assert opened.payloads() == [f.data for f in fs]
            assert _rep_ring(pool).outstanding == 0
            # the default stays a copy: nothing held
            plain = await pool.encrypt_batch("a", batch)
            assert not plain.zero_copy and _rep_ring(pool).outstanding == 0
            assert len(plain.payloads()) == 50
    run(main)


def test_held_results_hold_ring_space_and_release_lets_the_next_batch_in() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="shm", placement="pool",
                        shm__ring_bytes=4 << 20, limits__max_frame_bytes=1 << 20) as pool:
            await pool.set_key("a", key_for("a"))
            big = FrameBatch.of([os.urandom(200_000) for _ in range(5)], "vp8", ssrc=1)
            held = []
            need = reply_size(wire.OP_ENCRYPT, len(big), big.nbytes)
            while _rep_ring(pool).max_alloc >= need:  # fill the reply ring
                held.append(await pool.encrypt_batch("a", big, zero_copy=True))
            assert len(held) >= 2
            full_before = pool.stats()["ring_full"]
            blocked = asyncio.ensure_future(pool.encrypt_batch("a", big, zero_copy=True))
            await until(lambda: pool.stats()["ring_full"] > full_before, 10)
            assert not blocked.done()  # waits for ring space, never fails or drops
            held[0].release()
            got = await asyncio.wait_for(blocked, 10)
            assert got.failed == 0 and got.zero_copy
            # out-of-order releases: the ring empties whichever order they come in
            for r in [*held[1:], got][::-1]:
                r.release()
            assert _rep_ring(pool).outstanding == 0 and _rep_ring(pool).used == 0
    run(main)


def test_cancelled_awaits_and_forgotten_results_give_the_space_back() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="shm", placement="pool") as pool:
            await pool.set_key("a", key_for("a"))
            batch = FrameBatch.from_frames(frames(64, seed=2, ssrc=1))
            # forgotten: collected without release
            res = await pool.encrypt_batch("a", batch, zero_copy=True)
            assert _rep_ring(pool).outstanding == 1
            del res
            gc.collect()
            assert _rep_ring(pool).outstanding == 0
            # cancelled while at the worker (stopped, so the batch stays there): the
            # result has no owner
            (pid,) = pool.worker_pids()
            os.kill(pid, signal.SIGSTOP)
            try:
                task = asyncio.ensure_future(pool.encrypt_batch("a", batch, zero_copy=True))
                await until(lambda: bool(pool.service.ledger.slots[0].inflight), 10)
                assert not task.done()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            finally:
                os.kill(pid, signal.SIGCONT)
            await until(lambda: _rep_ring(pool).outstanding == 0
                        and not pool.service.ledger.slots[0].inflight, 10)
            # and the pool goes on
            again = await pool.encrypt_batch("a", batch, zero_copy=True)
            assert again.failed == 0
            again.release()
    run(main)


def test_a_worker_death_leaves_held_views_readable() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="shm", placement="pool") as pool:
            await pool.set_key("a", key_for("a"))
            fs = frames(20, seed=3, ssrc=1)
            res = await pool.encrypt_batch("a", FrameBatch.from_frames(fs), zero_copy=True)
            before = res.payloads()
            (pid,) = pool.worker_pids()
            os.kill(pid, signal.SIGKILL)
            await until(lambda: pool.stats()["worker_deaths"] >= 1
                        and pool.worker_pids() and pool.worker_pids()[0] != pid, 30)
            assert res.payloads() == before  # the old mapping stays while views live
            res.release()  # the ring it was in is gone: nothing to free, nothing breaks
            after = await pool.encrypt_batch("a", FrameBatch.from_frames(fs), zero_copy=True)
            with after:
                for f, s in zip(fs, after.payloads(), strict=True):
                    assert open_sealed("a", s, f) == f.data
    with pytest.warns(ResourceWarning):  # the dead worker's ring closed with views alive
        run(main)


def test_inline_placement_ignores_zero_copy() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="shm", placement="inline") as pool:
            await pool.set_key("a", key_for("a"))
            fs = frames(10, seed=4, ssrc=1)
            res = await pool.encrypt_batch("a", FrameBatch.from_frames(fs), zero_copy=True)
            assert not res.zero_copy  # sealed here: nothing in a ring to hold
            assert [open_sealed("a", s, f) for f, s in zip(fs, res.payloads(), strict=True)] \
                == [f.data for f in fs]
    run(main)


def test_ring_release_any_frees_in_fifo_turn() -> None:
    from framecrypt.transports.errors import ReleaseOrderError
    from framecrypt.transports.ring import RingAllocator

    r = RingAllocator(1024, align=64)
    a, b, c = r.alloc(100), r.alloc(100), r.alloc(100)
    assert (a, b, c) == (0, 128, 256)
    r.release_any(128, 100)  # younger first: marked, still counted as used
    assert r.outstanding == 3 and r.used == 384
    with pytest.raises(ReleaseOrderError):
        r.release_any(128, 100)  # twice
    with pytest.raises(ReleaseOrderError):
        r.release_any(512, 100)  # never allocated
    r.release(0, 100)  # the oldest goes, and the marked one after it with it
    assert r.outstanding == 1 and r.used == 128 and r.oldest() == (256, 100)
    r.release_any(256, 100)
    assert r.outstanding == 0 and r.used == 0 and r.alloc(1024) == 0


def test_reserved_batches_are_read_where_they_were_written() -> None:
    """Zero-copy ingress: frames written into a reservation in the owner worker's
    request ring are sealed from there (no copy into the ring); the reservation is
    given back after the call; outputs open with the pure core."""
    async def main() -> None:
        async with Pool(workers=1, transport="shm", placement="pool") as pool:
            await pool.set_key("a", key_for("a"))
            fs = frames(40, seed=5, ssrc=9)
            req = pool.service.ledger.slots[0].req_ring
            assert req is not None
            batch = pool.reserve("a", sum(len(f.data) for f in fs) + 100)
            assert batch.home is not None and req.outstanding == 1
            batch.put(fs[0].data, fs[0].codec, keyframe=fs[0].keyframe, ssrc=fs[0].ssrc,
                      timestamp=fs[0].timestamp)
            batch.put_many([f.data for f in fs[1:20]], [f.codec for f in fs[1:20]],
                           keyframes=[f.keyframe for f in fs[1:20]], ssrc=9,
                           timestamps=[f.timestamp for f in fs[1:20]])
            with pytest.raises(ValueError):  # all or nothing
                batch.put_many([bytes(len(batch.tail) + 1)], "vp8")
            assert len(batch) == 20
            for f in fs[20:]:  # as recv_into would: write into the tail, then commit
                batch.tail[: len(f.data)] = f.data
                batch.commit(len(f.data), f.codec, keyframe=f.keyframe, ssrc=f.ssrc,
                             timestamp=f.timestamp)
            real = pool.service.supervisor.workers[0].req_seg  # type: ignore[union-attr]
            assert real is not None
            # the batcher copies payloads into the ring with slice assignment on the
            # segment's view: count the bytes it writes there
            before = bytes(real.view[: req.capacity])
            async with asyncio.timeout(30):
                res = await pool.encrypt_batch("a", batch, zero_copy=True)
            with res:
                for f, s in zip(fs, res.payloads(), strict=True):
                    assert open_sealed("a", s, f) == f.data
            after = bytes(real.view[: req.capacity])
            # the only bytes that changed in the request ring are the ones we wrote
            changed = [i for i in range(0, req.capacity, 4096) if before[i:i + 4096]
                       != after[i:i + 4096]]
            assert changed == []  # the pool copied nothing into the request ring
            assert req.outstanding == 0  # the reservation was given back
            with pytest.raises(ResultReleased):
                batch.tail  # noqa: B018
            # a participant's reservation that does not fit a quarter of the ring, or a
            # pool without rings: private memory, still correct
            big = pool.reserve("a", req.capacity)
            assert big.home is None and pool.stats()["reserve_private"] == 1
            big.put(fs[0].data, ssrc=9)
            async with asyncio.timeout(30):
                r2 = await pool.encrypt_batch("a", big)
            assert open_sealed("a", r2.payloads()[0], fs[0]) == fs[0].data
    run(main)


def test_an_unsubmitted_reservation_is_given_back_when_collected() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="shm", placement="pool") as pool:
            await pool.set_key("a", key_for("a"))
            req = pool.service.ledger.slots[0].req_ring
            assert req is not None
            b = pool.reserve("a", 1000)
            assert req.outstanding == 1
            del b
            gc.collect()
            assert req.outstanding == 0
            b2 = pool.reserve("a", 1000)
            b2.release()
            assert req.outstanding == 0
            with pytest.raises(ResultReleased):
                b2.put(b"x")
    run(main)
