"""Forged frames must not lock a participant out (issue 13).

Anyone in the media path (the SFU, a relay) can send frames with a random tag that
name a key index. livekit-client drops every frame of an index once more than
``failure_tolerance`` frames failed there, genuine ones included, until a new key is
set; framecrypt still tries the held key (once, no ratchet attempts past the
tolerance), so a frame that authenticates under it always opens. Checked in the
pure core, in the engine's batch loop (what workers run) and through a real pool.
"""

from __future__ import annotations

import random

import pytest
from pool_helpers import key_for, run

from framecrypt import Frame, Pool, livekit, sframe
from framecrypt.batch import FrameBatch
from framecrypt.errors import AuthenticationFailed, KeyInvalidated
from framecrypt.transports import wire
from framecrypt.workers.engine import Engine, EngineConfig

BASE = b"\x5a" * 32
WINDOW = 8  # livekit-client's defaults: ratchet window 8, failure tolerance 10
TOLERANCE = 10


def forged(rng: random.Random, n: int, index: int = 0) -> list[bytes]:
    """Random bytes dressed as a LiveKit frame: ``… ‖ IV length 12 ‖ key index``."""
    return [rng.randbytes(rng.randint(60, 1500)) + bytes([12, index]) for _ in range(n)]


def genuine(data: bytes, steps: int = 0, send_count: int = 1,
            material: bytes = BASE) -> bytes:
    for _ in range(steps):
        material = livekit.ratchet(material, kdf="hkdf")
    return livekit.protect(data, key=livekit.derive_key(material, kdf="hkdf"), codec="vp8",
                           keyframe=False, ssrc=7, timestamp=90, send_count=send_count)


def receiver() -> livekit.ParticipantCryptor:
    rx = livekit.ParticipantCryptor(livekit.CryptorOptions(ratchet_window=WINDOW,
                                                           failure_tolerance=TOLERANCE))
    rx.set_key(BASE, 0, kdf="hkdf")
    return rx


def open_(rx: livekit.ParticipantCryptor, frame: bytes) -> bytes:
    return rx.decrypt(frame, codec="vp8", keyframe=False)


# --- pure core ----------------------------------------------------------------------


def test_genuine_frame_opens_after_forged_frames_and_key_invalid_fires_once() -> None:
    rx = receiver()
    for i, f in enumerate(forged(random.Random(1), 30)):
        # up to the tolerance a failure is plain; past it the typed KeyInvalidated
        with pytest.raises(AuthenticationFailed if i <= TOLERANCE else KeyInvalidated):
            open_(rx, f)
    kinds = [type(e).__name__ for e in rx.events()]
    assert kinds == ["DecryptionFailed"] * (TOLERANCE + 1) + ["KeyMarkedInvalid"]
    data = bytes(range(200))
    assert open_(rx, genuine(data)) == data
    assert rx.ring.failures(0) == 0  # a frame that opened clears the count
    assert rx.events() == []
    assert rx.ring.get(0).generation == 0  # type: ignore[union-attr]
    # the count starts over: the next forged frames are plain failures again, and
    # the key is marked invalid again (one event) only past the tolerance again
    for i, f in enumerate(forged(random.Random(2), TOLERANCE + 3)):
        with pytest.raises(AuthenticationFailed if i <= TOLERANCE else KeyInvalidated):
            open_(rx, f)
    kinds = [type(e).__name__ for e in rx.events()]
    assert kinds.count("KeyMarkedInvalid") == 1
    assert open_(rx, genuine(data, send_count=2)) == data


def test_forged_frames_past_the_tolerance_cost_one_aead_attempt_and_no_ratchet() -> None:
    rx = receiver()
    rng = random.Random(3)
    for f in forged(rng, TOLERANCE + 1):
        with pytest.raises(AuthenticationFailed):
            open_(rx, f)
    # up to the tolerance: the held key and every ratchet candidate in the window
    assert rx.attempts == (TOLERANCE + 1) * (1 + WINDOW)
    before = rx.attempts
    for f in forged(rng, 50):
        with pytest.raises(KeyInvalidated):
            open_(rx, f)
    assert rx.attempts - before == 50  # one try under the held key, no ratchet
    assert rx.ring.get(0).generation == 0  # type: ignore[union-attr]
    data = b"\x01" * 99
    before = rx.attempts
    assert open_(rx, genuine(data)) == data
    assert rx.attempts - before == 1


def test_ratchet_window_still_works_after_forged_frames() -> None:
    rx = receiver()
    for f in forged(random.Random(4), TOLERANCE + 5):
        with pytest.raises((AuthenticationFailed, KeyInvalidated)):
            open_(rx, f)
    # the genuine sender goes on (clearing the mark), then ratchets twice
    data = bytes(range(120))
    assert open_(rx, genuine(data)) == data
    assert open_(rx, genuine(data, steps=2, send_count=2)) == data
    assert rx.ring.get(0).generation == 2  # type: ignore[union-attr]
    assert livekit.KeyRatcheted(0, 2, on_decrypt=True) in rx.events()
    # forged frames after the ratchet do not move it, and the new key keeps opening
    for f in forged(random.Random(5), TOLERANCE + 5):
        with pytest.raises((AuthenticationFailed, KeyInvalidated)):
            open_(rx, f)
    assert rx.ring.get(0).generation == 2  # type: ignore[union-attr]
    assert open_(rx, genuine(data, steps=2, send_count=3)) == data


# --- the engine's batch loop (what a worker runs) -----------------------------------


def run_packed(engine: Engine, frames: list[bytes]) -> list[bytes | int]:
    """Open ``frames`` of participant 0 with ``Engine.run_packed``; each outcome is the
    plaintext or the error status."""
    n = len(frames)
    inp = b"".join(frames)
    out = bytearray(len(inp) + 64 * n)
    res, spill, _ = engine.run_packed(
        wire.OP_DECRYPT, 0, 0, -1, [len(f) for f in frames], [wire.CODEC_ID["vp8"]] * n,
        [0] * n, [7] * n, [90] * n, memoryview(inp), memoryview(out))
    overflow = b"".join(spill)
    got: list[bytes | int] = []
    for status, off, ln in wire.RES.iter_unpack(res):
        if status == wire.ST_OK:
            got.append(bytes(out[off : off + ln]))
        elif status == wire.ST_INLINE:
            got.append(overflow[off : off + ln])
        else:
            got.append(status)
    return got


def test_engine_batch_opens_genuine_frames_after_forged_ones() -> None:
    engine = Engine(EngineConfig(ratchet_window=WINDOW, failure_tolerance=TOLERANCE))
    engine.control("keyset", [0, "a", 0, BASE, "hkdf", 0, True])
    cryptor = engine.participants[0].cryptor
    assert cryptor is not None
    rng = random.Random(6)
    data = [rng.randbytes(rng.randint(40, 900)) for _ in range(6)]
    # genuine frames around and after a burst of forged ones, in one batch
    frames = [genuine(data[0]), *forged(rng, TOLERANCE + 1),
              genuine(data[1], send_count=2), *forged(rng, TOLERANCE + 1), *forged(rng, 20),
              genuine(data[2], send_count=3), genuine(data[3], send_count=4)]
    got = run_packed(engine, frames)
    assert got[0] == data[0]
    assert got[1 : TOLERANCE + 2] == [wire.ST_AUTH] * (TOLERANCE + 1)
    assert got[TOLERANCE + 2] == data[1]
    tail = got[TOLERANCE + 3 : -2]
    assert tail == [wire.ST_AUTH] * (TOLERANCE + 1) + [wire.ST_KEY_INVALID] * 20
    assert got[-2:] == [data[2], data[3]]
    # marked invalid once per burst (the genuine frame between them cleared the mark)
    marks = [ev for ev in engine.events if ev[0] == "KeyMarkedInvalid"]
    assert marks == [["KeyMarkedInvalid", 0, 0]] * 2
    # a batch that starts past the tolerance: one AES attempt per forged frame
    engine.events.clear()
    got = run_packed(engine, forged(rng, TOLERANCE + 1))
    assert got == [wire.ST_AUTH] * (TOLERANCE + 1)
    before = cryptor.attempts
    got = run_packed(engine, [*forged(rng, 40), genuine(data[4], steps=0, send_count=5)])
    assert got == [wire.ST_KEY_INVALID] * 40 + [data[4]]
    assert cryptor.attempts - before == 41
    assert [ev[0] for ev in engine.events].count("KeyMarkedInvalid") == 1
    # and the sender may ratchet: the window follows it
    got = run_packed(engine, [genuine(data[5], steps=1, send_count=6)])
    assert got == [data[5]]
    assert any(ev[0] == "ratcheted" for ev in engine.events)


# --- a real pool with worker processes ----------------------------------------------


@pytest.mark.parametrize("placement", ["pool", "auto"])
def test_pool_opens_genuine_frames_after_forged_ones(placement: str) -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="shm", placement=placement) as pool:
            events = []
            pool.on_event(events.append)
            await pool.set_key("a", key_for("a"))
            rng = random.Random(7)
            # large frames (and small ones) so that "auto" hands them to the workers
            sizes = [20_000, 300, 40_000]
            plain = [Frame(rng.randbytes(sizes[i % 3]), "vp8", ssrc=3, timestamp=i)
                     for i in range(6)]
            sealed = [await pool.encrypt("a", f) for f in plain]
            bad = forged(rng, TOLERANCE + 6)
            bad += [rng.randbytes(20_000) + b"\x0c\x00" for _ in range(3)]
            for f in bad:
                with pytest.raises((AuthenticationFailed, KeyInvalidated)):
                    await pool.decrypt("a", Frame(f, "vp8"))
            for s, f in zip(sealed[:3], plain, strict=False):
                assert await pool.decrypt("a", Frame(s, "vp8")) == f.data
            more = forged(rng, TOLERANCE + 6)
            batch = FrameBatch.of([*more, *sealed[3:]], codec="vp8")
            res = await pool.decrypt_batch("a", batch)
            assert [res[len(more) + i] for i in range(3)] == [f.data for f in plain[3:]]
            assert res.failed == len(more)
            assert sum(e.kind == "key_invalid" for e in events) >= 1
            st = pool.stats()
            assert st["protocol_errors"] == 0 and st["worker_deaths"] == 0

    run(main)


@pytest.mark.parametrize("placement", ["pool", "auto"])
def test_pool_sframe_forged_frames_do_not_move_the_replay_window(placement: str) -> None:
    """SFrame has no failure count; what a forged frame could move is the replay
    window (a far-ahead CTR would refuse every genuine frame as a replay): it is
    inspected before the tag is checked and moved only after."""

    async def main() -> None:
        async with Pool(workers=1, transport="shm", format="sframe",
                        placement=placement) as pool:
            await pool.set_key("s", bytes(range(16)))
            rng = random.Random(8)
            plain = [Frame(rng.randbytes(n), "vp8") for n in (20_000, 300, 40_000)]
            sealed = [await pool.encrypt("s", f) for f in plain]
            bad = [sframe.encode_header(0, 2**62 + i) + rng.randbytes(rng.randint(20, 900))
                   for i in range(30)]
            for f in bad:
                with pytest.raises(AuthenticationFailed):
                    await pool.decrypt("s", Frame(f, "vp8"))
            for s, f in zip(sealed, plain, strict=True):
                assert await pool.decrypt("s", Frame(s, "vp8")) == f.data

    run(main)
