"""Columnar batches (FrameBatch → Pool.encrypt_batch/decrypt_batch): the same outcomes
as the frame-by-frame API, checked with the pure core, through real worker processes."""

from __future__ import annotations

import asyncio
import os
import random
import signal

import pytest
from pool_helpers import frames, iv_of, key_for, open_sealed, run, until

from framecrypt import Frame, Pool, livekit, sframe
from framecrypt.batch import BatchResult, FrameBatch
from framecrypt.errors import (
    AuthenticationFailed,
    KeyInvalidated,
    MalformedFrame,
    ReplayedFrame,
    UnknownKey,
    UnsupportedCodec,
)
from framecrypt.transports import wire
from framecrypt.workers.service import WorkerService


def mixed(n: int, seed: int) -> list[Frame]:
    """VP8 (keyframe every 10th) on ssrc 1 and Opus on ssrc 2, interleaved."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 3 == 0:
            out.append(Frame(rng.randbytes(rng.randint(1, 160)), "opus", ssrc=2,
                             timestamp=i * 960))
        else:
            out.append(Frame(rng.randbytes(rng.randint(12, 6000)), "vp8",
                             keyframe=i % 10 == 1, ssrc=1, timestamp=i * 3000))
    return out


def as_batch(fs: list[Frame], data: list[bytes] | None = None) -> FrameBatch:
    return FrameBatch.of(data if data is not None else [f.data for f in fs],
                         [f.codec for f in fs], keyframes=[f.keyframe for f in fs],
                         ssrc=[f.ssrc for f in fs], timestamps=[f.timestamp for f in fs])


@pytest.mark.parametrize("transport", ["shm", "ipc", "inline"])
@pytest.mark.parametrize("placement", ["pool", "inline", "auto"])
def test_batch_seals_what_the_pure_core_opens(transport: str, placement: str) -> None:
    async def main() -> None:
        async with Pool(workers=2, transport=transport, placement=placement) as pool:
            await pool.set_key("a", key_for("a"))
            fs = mixed(600, seed=1)
            res = await pool.encrypt_batch("a", as_batch(fs))
            assert isinstance(res, BatchResult) and len(res) == 600 and res.failed == 0
            sealed = res.payloads()
            for f, s in zip(fs, sealed, strict=True):
                assert open_sealed("a", s, f) == f.data
            assert len({iv_of(s) for s in sealed}) == 600
            back = await pool.decrypt_batch("a", as_batch(fs, sealed))
            assert back.payloads() == [f.data for f in fs]
            st = pool.stats()
            assert st["frames_ok"] == 1200 and st["frames_failed"] == 0
            assert st["bytes_out"] == sum(map(len, sealed)) + sum(len(f.data) for f in fs)
            if placement == "pool":
                assert st["frames_inline"] == 0
            if placement == "inline":
                assert st["frames_pool"] == 0
    run(main)


def test_batch_and_frame_calls_share_one_counter_sequence() -> None:
    """IV = ssrc ‖ epoch ‖ counter: counters are per participant, so mixing the two
    APIs and several ssrcs never repeats an IV under the key."""

    async def main() -> None:
        async with Pool(workers=2, transport="shm", placement="auto") as pool:
            await pool.set_key("a", key_for("a"))
            ivs: list[bytes] = []
            for k in range(6):
                fs = mixed(200, seed=10 + k)
                if k % 2:
                    ivs += [iv_of(s) for s in await pool.encrypt_many("a", fs)]
                else:
                    ivs += [iv_of(s) for s in (await pool.encrypt_batch("a", as_batch(fs)))]
            assert len(ivs) == len(set(ivs)) == 1200
            counters = sorted(int.from_bytes(iv[8:], "big") for iv in ivs)
            assert counters == list(range(1200))
    run(main)


def test_failed_frames_get_typed_errors_in_place_and_the_rest_open() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="shm", placement="auto") as pool:
            await pool.set_key("a", key_for("a"))
            fs = mixed(100, seed=3)
            sealed = (await pool.encrypt_batch("a", as_batch(fs))).payloads()
            bad = {5, 17, 60}
            tampered = [s[:-20] + bytes([s[-20] ^ 1]) + s[-19:] if i in bad else s
                        for i, s in enumerate(sealed)]
            res = await pool.decrypt_batch("a", as_batch(fs, tampered))
            assert res.failed == 3 and res.ok == 97
            assert [i for i, _ in res.errors()] == sorted(bad)
            for i, f in enumerate(fs):
                if i in bad:
                    assert isinstance(res[i], AuthenticationFailed)
                    with pytest.raises(AuthenticationFailed):
                        res.view(i)
                else:
                    assert res[i] == f.data
            with pytest.raises(AuthenticationFailed):
                res.payloads()
            st = pool.stats()
            assert st["frames_failed"] == 3
    run(main)


def test_an_unusable_batch_is_refused_before_anything_is_admitted() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="shm", max_frame_bytes=1000) as pool:
            await pool.set_key("a", key_for("a"))
            b = as_batch(mixed(5, seed=4))
            b.codecs[2] = 42
            with pytest.raises(UnsupportedCodec):
                await pool.encrypt_batch("a", b)
            with pytest.raises(MalformedFrame):
                await pool.encrypt_batch("a", FrameBatch.of([b"x" * 1001]))
            b2 = FrameBatch.of([b"abc", b"def"])
            b2.lengths.append(5)
            with pytest.raises(MalformedFrame):
                await pool.encrypt_batch("a", b2)
            with pytest.raises(UnsupportedCodec):
                FrameBatch.of([b"abc"], codec="mpeg2")
            assert pool.stats()["frames_submitted"] == 0
            empty = await pool.encrypt_batch("a", FrameBatch())
            assert len(empty) == 0
    run(main)


def test_big_batches_split_over_credit_and_ring_and_keep_order() -> None:
    """More frames than the in-flight limit and more bytes than a quarter of a small
    ring: the batch travels in pieces, outcomes come back in order."""

    async def main() -> None:
        async with Pool(workers=1, transport="shm", placement="pool",
                        max_frames_in_flight=256, worker_frames_in_flight=128,
                        max_frame_bytes=65536, shm__ring_bytes=1 << 20) as pool:
            await pool.set_key("a", key_for("a"))
            fs = frames(3000, seed=6, ssrc=9, sizes=(100, 9000))
            res = await pool.encrypt_batch("a", as_batch(fs))
            sealed = res.payloads()
            for f, s in zip(fs, sealed, strict=True):
                assert open_sealed("a", s, f) == f.data
            counters = [int.from_bytes(iv_of(s)[8:], "big") for s in sealed]
            assert counters == list(range(3000))
            assert pool.stats()["batches_sent"] > 10
    run(main, timeout=120)


def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="shm", placement="pool",
                        heartbeat_interval_s=0.1) as pool:
            await pool.set_key("a", key_for("a"))
            fs = frames(4000, seed=7, ssrc=3, sizes=(50, 4000))
            victim = pool.worker_pids()[0]
            os.kill(victim, signal.SIGSTOP)
            task = asyncio.ensure_future(pool.encrypt_batch("a", as_batch(fs)))
            await until(lambda: pool.stats()["workers"][0]["frames_in_flight"] > 0, 10)
            os.kill(victim, signal.SIGKILL)
            res = await task
            assert pool.stats()["redispatched"] > 0 and res.failed == 0
            sealed = res.payloads()
            for f, s in zip(fs, sealed, strict=True):
                assert open_sealed("a", s, f) == f.data
            counters = [int.from_bytes(iv_of(s)[8:], "big") for s in sealed]
            assert counters == list(range(4000))  # a re-sent frame keeps its counter
    run(main, timeout=90)


def test_inline_opening_hands_what_it_cannot_open_to_a_worker() -> None:
    """The broker's inline pass never ratchets: a frame sealed with a ratcheted key
    goes to a worker, which ratchets and opens it (and reports the ratchet)."""

    async def main() -> None:
        async with Pool(workers=1, transport="shm", placement="inline") as pool:
            await pool.set_key("a", key_for("a"))
            ratcheted = livekit.ratchet(key_for("a"))
            fs = frames(20, seed=8, ssrc=4)
            key1 = livekit.derive_key(ratcheted)
            sealed = [livekit.protect(f.data, key=key1, codec="vp8", keyframe=False, ssrc=4,
                                      timestamp=0, send_count=i) for i, f in enumerate(fs)]
            res = await pool.decrypt_batch("a", as_batch(fs, sealed))
            assert res.payloads() == [f.data for f in fs]
            st = pool.stats()
            assert st["frames_pool"] >= 1
    run(main)


def test_sframe_batches_and_replay_protection() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="shm", format="sframe", placement="auto") as pool:
            base = bytes(range(16))
            await pool.set_key("s", base, index=3)
            fs = frames(300, seed=9, ssrc=1)
            res = await pool.encrypt_batch("s", as_batch(fs))
            sealed = res.payloads()
            for f, s in zip(fs, sealed, strict=True):
                assert sframe.unprotect(4, base, s)[2] == f.data
            opened = await pool.decrypt_batch("s", as_batch(fs, sealed))
            assert opened.payloads() == [f.data for f in fs]
            again = await pool.decrypt_batch("s", as_batch(fs[:5], sealed[:5]))
            assert again.failed == 5 and all(isinstance(e, ReplayedFrame) for _, e in
                                             again.errors())
    run(main)


def test_a_malformed_packed_message_is_counted_and_answered_with_nothing() -> None:
    svc = WorkerService(0)
    svc.handle([wire.pack(wire.CONFIG, {"format": "livekit"}, None)])
    head = [wire.OP_ENCRYPT, 0, 0, 2, 0, 0]
    cols = (3).to_bytes(4, "little") * 2 + b"\0" * 16 + b"\x00\x00" + b"\x00\x00"
    good = [wire.pack(wire.PACKED, 1, 2, -1, [head]), cols, b"abcdef"]
    replies = svc.handle(good)  # no key for participant 0: typed status, not a crash
    status = wire.RES.unpack_from(replies[-1][1], 0)[0]
    assert status == wire.ST_UNKNOWN_KEY and svc.protocol_errors == 0
    for broken in ([good[0]],  # missing columns
                   [good[0], cols[:-1], good[2]],  # columns of the wrong size
                   [good[0], cols, b"abcde"],  # payload shorter than the lengths say
                   [wire.pack(wire.PACKED, 1, 2, -1, [["x", 0, 0, 2, 0, 0]]), *good[1:]],
                   [wire.pack(wire.PACKED, 1, 2, -1, [[1, 0, 0, 1, 0, 0]]), *good[1:]],
                   [wire.pack(wire.PACKED, 1, 0, -1, []), *good[1:]]):
        assert svc.handle(broken) == []
    assert svc.protocol_errors == 6
    # a later segment out of its buffer: refused before any segment is processed
    assert svc.engine is not None
    done = svc.engine.counts["frames"]
    two = [wire.pack(wire.PACKED, 2, 2, -1, [[1, 0, 0, 1, 0, 0], [1, 0, 0, 1, 4, 0]]),
           cols, b"abcdef"]
    assert svc.handle(two) == []
    assert svc.protocol_errors == 7 and svc.engine.counts["frames"] == done


def test_sframe_replay_floor_of_packed_batches_survives_a_worker_restart() -> None:
    """Packed SFrame openings report the highest counter per KID with their result:
    the broker hands it to the replacement worker, so replays stay refused."""

    async def main() -> None:
        async with Pool(workers=1, transport="shm", format="sframe", placement="pool",
                        heartbeat_interval_s=0.05) as pool:
            base = bytes(range(16))
            await pool.set_key("s", base, index=2)
            sealed = [sframe.protect(4, base, 2, ctr, b"frame %d" % ctr) for ctr in range(50)]
            opened = await pool.decrypt_batch("s", FrameBatch.of(sealed[:40]))
            assert opened.payloads()[-1] == b"frame 39"
            old = pool.worker_pids()[0]
            os.kill(old, signal.SIGKILL)
            await until(lambda: pool.worker_pids() and pool.worker_pids()[0] != old, 10)
            again = await pool.decrypt_batch("s", FrameBatch.of([sealed[39], sealed[45]]))
            assert isinstance(again[0], ReplayedFrame)
            assert again[1] == b"frame 45"
    run(main)


@pytest.mark.parametrize("transport", ["shm", "ipc"])
def test_concurrent_batches_share_messages_and_survive_a_kill(transport: str) -> None:
    """Batches of several participants queued at one worker travel together (one
    PACKED message, one segment each); a SIGKILL mid-stream re-sends them with their
    counters; every output opens with the pure core, nothing lost or duplicated."""

    async def main() -> None:
        async with Pool(workers=1, transport=transport, placement="pool",
                        heartbeat_interval_s=0.1) as pool:
            names = [f"p{i}" for i in range(6)]
            for n in names:
                await pool.set_key(n, key_for(n))
            inputs = {n: [mixed(150, seed=100 * i + c) for c in range(4)]
                      for i, n in enumerate(names)}

            async def calls(n: str) -> list[list[bytes]]:
                return [(await pool.encrypt_batch(n, as_batch(fs))).payloads()
                        for fs in inputs[n]]

            first = await asyncio.gather(*(calls(n) for n in names))
            calls_made = len(names) * 4
            if transport == "shm":  # (ipc messages stop at batch.max_bytes, 100 KB)
                assert pool.stats()["batches_sent"] < calls_made  # segments shared messages
            victim = pool.worker_pids()[0]
            os.kill(victim, signal.SIGSTOP)
            task = asyncio.ensure_future(asyncio.gather(*(calls(n) for n in names)))
            await until(lambda: pool.stats()["workers"][0]["frames_in_flight"] > 0, 10)
            os.kill(victim, signal.SIGKILL)
            second = await task
            assert pool.stats()["redispatched"] > 0
            for n, out1, out2 in zip(names, first, second, strict=True):
                ivs = []
                for fs, sealed in zip(inputs[n] * 2, out1 + out2, strict=True):
                    for f, s in zip(fs, sealed, strict=True):
                        assert open_sealed(n, s, f) == f.data
                        ivs.append(iv_of(s))
                counters = sorted(int.from_bytes(iv[8:], "big") for iv in ivs)
                assert counters == list(range(1200))
    run(main, timeout=90)


@pytest.mark.parametrize("placement", ["pool", "inline"])
def test_garbage_and_edge_frames_get_typed_outcomes_and_nothing_dies(placement: str) -> None:
    """Empty frames pass through (as livekit-client's DTX frames do), frames shorter
    than the trailer, random bytes and random bytes dressed as a trailer all come back
    as typed errors in place (after enough failures the key index is marked invalid,
    as livekit-client does); the workers stay up and nothing is counted as a protocol
    error."""

    async def main() -> None:
        async with Pool(workers=1, transport="shm", placement=placement) as pool:
            await pool.set_key("a", key_for("a"))
            rng = random.Random(11)
            edge = [b"", b"\x90", b"\x90" * 29, b"\x90" * 30]
            noise = [rng.randbytes(rng.randint(31, 5000)) for _ in range(100)]
            dressed = [rng.randbytes(rng.randint(31, 5000)) + b"\x0c\x00" for _ in range(100)]
            sealed = await pool.encrypt_batch("a", FrameBatch.of(edge, codec="vp8"))
            assert sealed[0] == b""  # an empty frame stays empty
            frames_in = edge + noise + dressed
            res = await pool.decrypt_batch("a", FrameBatch.of(frames_in, codec="vp8"))
            assert len(res) == len(frames_in)
            assert res[0] == b""
            for i in range(1, len(frames_in)):
                assert isinstance(res[i], (MalformedFrame, AuthenticationFailed, UnknownKey,
                                           KeyInvalidated)), i
            assert res.failed == len(frames_in) - 1
            ok = await pool.encrypt_batch("a", FrameBatch.of([b"\x90" * 50] * 5))
            assert ok.failed == 0  # still serving
            st = pool.stats()
            assert st["protocol_errors"] == 0 and st["worker_deaths"] == 0
    run(main)
