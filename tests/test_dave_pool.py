"""DAVE in the worker pool, through real worker processes: sealing and opening, epochs,
nonces owned by the broker's counters (kill -9 mid-stream: no nonce reused, no frame
lost), hostile frames (typed errors and counters, the worker survives), and the sans-I/O
hand-over of start-code retry skews and receiver windows (engine to engine)."""

from __future__ import annotations

import asyncio
import os
import random
import signal

import pytest
from pool_helpers import run, until

from framecrypt import Frame, Pool, dave
from framecrypt.broker.keydir import DaveEpoch, KeyDirectory
from framecrypt.errors import (
    AuthenticationFailed,
    DroppedFrame,
    InvalidKeyMaterial,
    InvalidParameter,
    MalformedFrame,
    ReplayedFrame,
    UnknownKey,
    WorkerLost,
)
from framecrypt.transports import wire
from framecrypt.workers import native
from framecrypt.workers.dave import contexts, footer, h26x
from framecrypt.workers.engine import Engine, EngineConfig

pytestmark = pytest.mark.timeout(180)

SECRET_1 = bytes(range(16))
SECRET_2 = bytes(range(100, 116))


def media(n: int, seed: int) -> list[Frame]:
    """Opus, VP8 (key and delta), VP9 and AV1 frames of random content."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = i % 5
        if kind == 0:
            out.append(Frame(rng.randbytes(rng.randint(20, 160)), "opus", ssrc=1))
        elif kind == 1:
            out.append(Frame(bytes([0x10]) + rng.randbytes(rng.randint(20, 3000)), "vp8",
                             keyframe=True, ssrc=2))
        elif kind == 2:
            out.append(Frame(bytes([0x31]) + rng.randbytes(rng.randint(20, 3000)), "vp8", ssrc=2))
        elif kind == 3:
            out.append(Frame(rng.randbytes(rng.randint(1, 3000)), "vp9", ssrc=3))
        else:  # one OBU frame with a size field: header clear, payload encrypted
            payload = rng.randbytes(rng.randint(1, 100))
            out.append(Frame(bytes([0x32, len(payload)]) + payload, "av1", ssrc=4))
    return out


def expected_plain(f: Frame) -> bytes:
    if f.codec == "av1":  # the last OBU loses its size field (what libdave sends)
        return bytes([f.data[0] & ~0x02]) + f.data[2:]
    return f.data


def test_pool_seals_what_the_pure_core_opens_and_opens_it_back() -> None:
    async def main() -> None:
        async with Pool(workers=2, transport="shm", format="dave") as pool:
            assert pool.placement == "pool"
            await pool.set_dave_key("alice", 7, SECRET_1)
            fs = media(300, seed=1)
            sealed = await pool.encrypt_many("alice", fs)
            # nonces are the broker's counters: 1, 2, 3, … in submission order
            assert [dave.nonce_of(s) for s in sealed] == list(range(1, 301))
            for f, s in zip(fs, sealed, strict=True):
                assert s[-2:] == footer.MAGIC
                assert dave.open(s, base_secret=SECRET_1) == expected_plain(f)
                # byte-identical with the per-call API at the same nonce
                assert dave.seal(f.data, base_secret=SECRET_1, codec=f.codec,
                                 nonce=dave.nonce_of(s)) == s
            opened = await pool.decrypt_many("alice", [Frame(s, f.codec) for f, s in
                                                       zip(fs, sealed, strict=True)])
            assert opened == [expected_plain(f) for f in fs]
            # a frame opens once: the receiver's nonce window
            again = await pool.decrypt_many("alice", [Frame(sealed[0], "opus")],
                                            return_exceptions=True)
            assert isinstance(again[0], ReplayedFrame)
            # a participant without a key: typed
            with pytest.raises(UnknownKey):
                await pool.encrypt("bob", Frame(b"x" * 10, "opus"))
    run(main)


def test_epoch_rotation_restarts_nonces_and_old_frames_still_open() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="shm", format="dave") as pool:
            await pool.set_dave_key("u", 1, SECRET_1)
            first = await pool.encrypt_many("u", media(10, seed=2))
            await pool.set_dave_key("u", 2, SECRET_2)
            fs = media(10, seed=3)
            second = await pool.encrypt_many("u", fs)
            assert [dave.nonce_of(s) for s in second] == list(range(1, 11))
            assert [dave.open(s, base_secret=SECRET_2) for s in second] == \
                [expected_plain(f) for f in fs]
            with pytest.raises(AuthenticationFailed):
                dave.open(second[0], base_secret=SECRET_1)
            # the previous epoch's frames still open (libdave's transition expiry)
            got = await pool.decrypt_many("u", [Frame(s, "vp9") for s in first + second])
            assert len(got) == 20
            # the same epoch again with another secret is refused, at once
            with pytest.raises(InvalidParameter):
                await pool.set_dave_key("u", 2, SECRET_1)
            with pytest.raises(InvalidKeyMaterial):
                await pool.set_dave_key("u", 3, b"short")
            with pytest.raises(InvalidParameter):
                await pool.set_key("u", b"\x01" * 32)
    run(main)


def test_passthrough_both_ways() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="shm", format="dave") as pool:
            await pool.set_dave_passthrough("legacy", True)
            clear = Frame(b"\x80" + bytes(50), "opus")
            assert await pool.encrypt("legacy", clear) == clear.data  # sent unencrypted
            assert await pool.decrypt("legacy", clear) == clear.data  # accepted
            # without passthrough an unencrypted frame is refused (typed)
            await pool.set_dave_key("e2ee", 1, SECRET_1)
            with pytest.raises(MalformedFrame):
                await pool.decrypt("e2ee", clear)
            # the SFU's Opus silence frame always passes
            assert await pool.decrypt("e2ee", Frame(dave.OPUS_SILENCE, "opus")) == \
                dave.OPUS_SILENCE
    run(main)


def test_kill9_mid_stream_no_nonce_reused_no_frame_lost() -> None:
    async def main() -> None:
        async with Pool(workers=2, transport="shm", format="dave",
                        max_frames_in_flight=20000, heartbeat_interval_s=0.1) as pool:
            people = [f"user{i}" for i in range(4)]
            secrets = {p: bytes([i + 1]) * 16 for i, p in enumerate(people)}
            for p in people:
                await pool.set_dave_key(p, 5, secrets[p])
            warm = {p: await pool.encrypt_many(p, media(50, seed=10 + i))
                    for i, p in enumerate(people)}
            batches = {p: media(1500, seed=20 + i) for i, p in enumerate(people)}
            victim, other = pool.worker_pids()
            for pid in (victim, other):
                os.kill(pid, signal.SIGSTOP)
            tasks = {p: asyncio.ensure_future(pool.encrypt_many(p, fs, return_exceptions=True))
                     for p, fs in batches.items()}
            await until(lambda: pool.stats()["frames_in_flight"] == 6000, 10)
            os.kill(victim, signal.SIGKILL)
            os.kill(other, signal.SIGCONT)
            results = {p: await t for p, t in tasks.items()}
            st = pool.stats()
            assert st["worker_deaths"] == 1 and st["redispatched"] > 0
            for p, fs in batches.items():
                res = results[p]
                assert len(res) == len(fs)  # one outcome each
                lost = sum(isinstance(r, WorkerLost) for r in res)
                assert lost == 0  # re-dispatched, not lost
                nonces = [dave.nonce_of(s) for s in warm[p]] + [dave.nonce_of(r) for r in res]
                assert nonces == list(range(1, 1551))  # none twice, none skipped
                for f, r in zip(fs, res, strict=True):
                    assert dave.open(r, base_secret=secrets[p]) == expected_plain(f)
            # and the sealed stream opens in a pool's receiver, in order, every frame
            p = people[0]
            opened = await pool.decrypt_many(p, [Frame(s, "vp9") for s in warm[p] + results[p]])
            assert len(opened) == 1550
    run(main, timeout=150)


def test_hostile_frames_get_typed_errors_and_the_worker_survives() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="shm", format="dave") as pool:
            await pool.set_dave_key("h", 1, SECRET_1)
            pid = pool.worker_pids()
            good = await pool.encrypt_many("h", media(20, seed=4))
            rng = random.Random(9)
            hostile: list[bytes] = [b"", b"\xfa\xfa", bytes(11) + b"\x0b\xfa\xfa",
                                    good[0][:-1], good[1][:5] + good[1][-3:]]
            for s in good:
                b = bytearray(s)
                b[rng.randrange(len(b) - 3)] ^= 1 << rng.randrange(8)
                hostile.append(bytes(b))
                hostile.append(s[: -3] + bytes([rng.randrange(256)]) + s[-2:])  # supp. size
            hostile += [rng.randbytes(rng.randint(1, 300)) + b"\xfa\xfa" for _ in range(200)]
            # generation jump: a nonce of generation 200 with a valid-looking footer
            key = dave.KeyRatchet(SECRET_1)
            hostile.append(dave.seal(b"\x00" * 30, ratchet=key, codec="opus", nonce=200 << 24))
            res = await pool.decrypt_many("h", [Frame(b, "vp8") for b in hostile],
                                          return_exceptions=True)
            for r in res:
                assert isinstance(r, MalformedFrame | AuthenticationFailed | DroppedFrame |
                                  ReplayedFrame), r
            assert isinstance(res[-1], DroppedFrame)
            errors = pool.stats()["errors_by_reason"]
            assert sum(errors.values()) == len(hostile)
            assert pool.worker_pids() == pid  # no crash, no respawn
            # the genuine frames still open after all that
            ok = await pool.decrypt_many("h", [Frame(s, "vp8") for s in good])
            assert len(ok) == 20
    run(main)


# --- sans-I/O: what travels with the key directory ------------------------------------


def _engine() -> Engine:
    e = Engine(EngineConfig(format="dave"))
    e.clock = lambda: 1000.0
    return e


def _seal(engine: Engine, counter: int, data: bytes, codec: str = "h264") -> bytes:
    return engine.seal(0, data, codec, False, 0, 0, counter)


H264 = b"\x00\x00\x00\x01\x65\x88\x80" + bytes(range(256)) * 2


def test_retry_skew_travels_so_a_new_worker_uses_the_same_nonces(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Start-code retries take extra nonces; a worker that takes the sender over (from the
    key directory's snapshot and the floors the old worker reported) seals every later
    counter with exactly the nonce the old worker would have used."""
    leaks = {3, 4, 9}  # these first-attempt nonces "hold a start code"
    real = h26x.has_start_code_leak

    def leak(sealed: bytes, ranges: list[tuple[int, int]]) -> bool:
        return footer.parse(sealed).nonce in leaks or real(sealed, ranges)

    monkeypatch.setattr(h26x, "has_start_code_leak", leak)
    # the reference path (the C framing has its own leak test: test_dave_native_h26x.py)
    with native.using("python"):
        _retry_skew_travels()


def _retry_skew_travels() -> None:
    keys = KeyDirectory(sframe=False)
    old = _engine()
    old.control("dave_key", [0, "u", 1, SECRET_1, 0])
    keys.set_dave_epoch(0, "u", DaveEpoch(1, SECRET_1, 0))
    used = [dave.nonce_of(_seal(old, c, H264)) for c in range(5)]
    assert used == [1, 2, 5, 6, 7]  # counter 2 retried twice (3, 4 leaked)
    keys.raise_floors(0, [(k, v) for k, v in old.replay_floors(0)])
    # the old worker dies; a new one gets the snapshot and seals counters 5.. onwards
    new = _engine()
    for op in keys.snapshot(0):
        new.control(op.op, list(op.args))
    after_old = [dave.nonce_of(_seal(old, c, H264)) for c in range(5, 9)]
    after_new = [dave.nonce_of(_seal(new, c, H264)) for c in range(5, 9)]
    assert after_old == after_new == [8, 10, 11, 12]  # 9 leaked: both skip it
    # a frame that fits no output region keeps its nonce (spilled, never sealed twice)
    res, spill, _ = new.run_packed(wire.OP_ENCRYPT, 0, 9, -1, [len(H264)], [3], [0], [0], [0],
                                   memoryview(H264), memoryview(bytearray(4)))
    assert wire.RES.unpack_from(res, 0)[0] == wire.ST_INLINE
    assert dave.nonce_of(b"".join(spill)) == 13


def test_receiver_window_travels_and_replays_are_refused_after_a_move() -> None:
    keys = KeyDirectory(sframe=False)
    sender = dave.Sender(dave.KeyRatchet(SECRET_1))
    frames = [sender.seal("opus", bytes([i]) * 40) for i in range(10)]
    a = _engine()
    a.control("dave_key", [0, "u", 3, SECRET_1, 0])
    keys.set_dave_epoch(0, "u", DaveEpoch(3, SECRET_1, 0))
    for f in frames[:6]:
        a.open(0, memoryview(f), "opus", False)
    keys.raise_floors(0, [(k, v) for k, v in a.replay_floors(0)])
    assert keys.floors(0) == {7: 6}  # kid 2·3+1: newest nonce 6
    b = _engine()
    for op in keys.snapshot(0):
        b.control(op.op, list(op.args))
    for f in frames[:6]:  # what the old worker opened does not open again
        with pytest.raises(ReplayedFrame):
            b.open(0, memoryview(f), "opus", False)
    assert [b.open(0, memoryview(f), "opus", False)[0] for f in frames[6:]] == [6, 7, 8, 9]


def test_key_directory_keeps_the_last_epochs_and_their_floors() -> None:
    keys = KeyDirectory(sframe=False)
    for ep in range(1, 6):
        keys.set_dave_epoch(0, "u", DaveEpoch(ep, bytes([ep]) * 16, ep * 100))
        keys.raise_floors(0, [(2 * ep, 1), (2 * ep + 1, 50)])
    assert [e.epoch for e in keys.dave_epochs(0)] == [3, 4, 5]
    assert set(keys.floors(0)) == {6, 7, 8, 9, 10, 11}
    ops = keys.snapshot(0)
    assert [op.op for op in ops] == ["dave_key"] * 3 + ["replay_floor"]
    assert "\\x05" not in repr(ops) and "secret" not in repr(keys.dave_epochs(0)[0]).lower()
    keys.remove(0)
    assert keys.snapshot(0) == [] and keys.floors(0) == {}


def test_contexts_refuse_what_would_reuse_a_nonce() -> None:
    p = contexts.DaveParticipant()
    p.set_epoch(1, SECRET_1, 100, 0.0)
    with pytest.raises(UnknownKey):  # a counter before the first epoch's base
        p.seal(99, "opus", b"x")
    with pytest.raises(InvalidParameter):  # an epoch starting before the last one
        p.set_epoch(2, SECRET_2, 50, 0.0)
    with pytest.raises(InvalidParameter):
        p.set_epoch(1, SECRET_2, 200, 0.0)
    p.set_epoch(1, SECRET_1, 100, 0.0)  # a replay of the same: no change
    assert p.epochs == [1]
    assert "SECRET" not in repr(p) and SECRET_1.hex() not in repr(p)
    from framecrypt.errors import CounterExhausted

    with pytest.raises(CounterExhausted):
        p.seal(100 + contexts.MAX_BIG_NONCE, "opus", b"x")
