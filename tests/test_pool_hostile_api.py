"""Bad arguments at the pool's API: an immediate typed error, the pool untouched.

Before the broker core (issue 13) a ``Frame`` whose data was a ``str`` or whose
ssrc/timestamp was ``None`` wedged a worker slot: the call hung, later calls and
``set_key`` on that slot hung, and the flush logged ``TypeError`` forever; a
participant that was not a ``str``, an unknown codec, an ``index``/``kdf`` of the
wrong type gave bare ``TypeError``/``AttributeError`` or ``FramecryptError("TypeError")``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pool_helpers import key_for, open_sealed, run

from framecrypt import Frame, Pool
from framecrypt.batch import FrameBatch
from framecrypt.errors import (
    FramecryptError,
    InvalidArgument,
    InvalidKeyMaterial,
    InvalidParameter,
    UnsupportedCodec,
)

pytestmark = pytest.mark.timeout(120)

GOOD = Frame(b"\x90" * 50, "vp8", False, 1, 2)
BAD_FRAMES: list[tuple[str, Any, type[FramecryptError]]] = [
    ("data str", Frame("text", "vp8"), InvalidArgument),  # type: ignore[arg-type]
    ("data None", Frame(None, "vp8"), InvalidArgument),  # type: ignore[arg-type]
    ("data int", Frame(5, "vp8"), InvalidArgument),  # type: ignore[arg-type]
    ("ssrc None", Frame(b"x" * 20, "vp8", False, None), InvalidArgument),  # type: ignore[arg-type]
    ("timestamp None", Frame(b"x" * 20, "vp8", False, 1, None),  # type: ignore[arg-type]
     InvalidArgument),
    ("ssrc float", Frame(b"x" * 20, "vp8", False, 1.5), InvalidArgument),  # type: ignore[arg-type]
    ("codec unknown", Frame(b"x" * 20, "mpeg2"), UnsupportedCodec),
    ("codec None", Frame(b"x" * 20, None), InvalidArgument),  # type: ignore[arg-type]
    ("codec list", Frame(b"x" * 20, ["vp8"]), InvalidArgument),  # type: ignore[arg-type]
    ("keyframe str", Frame(b"x" * 20, "vp8", "yes"), InvalidArgument),  # type: ignore[arg-type]
    ("not a frame", b"raw bytes", InvalidArgument),
]


@pytest.mark.parametrize("transport", ["shm", "inline"])
@pytest.mark.parametrize("placement", ["pool", "auto"])
def test_bad_frames_fail_at_once_and_the_pool_serves_the_next(transport: str,
                                                              placement: str) -> None:
    async def main() -> None:
        async with Pool(workers=1, transport=transport, placement=placement) as pool:
            await pool.set_key("a", key_for("a"))
            loop = asyncio.get_running_loop()
            for what, bad, err in BAD_FRAMES:
                for call in (pool.encrypt, pool.decrypt, pool.try_encrypt):
                    t0 = loop.time()
                    with pytest.raises(err):
                        await call("a", bad)
                    assert loop.time() - t0 < 0.1, what  # at once, not after a timeout
                with pytest.raises(err):
                    await pool.encrypt_many("a", [GOOD, bad, GOOD])
                with pytest.raises(err):
                    pool.submit("a", bad, lambda *_: None)
            assert pool.stats()["frames_submitted"] == 0  # nothing was admitted
            # the slot is not wedged: frames and key operations go on
            await pool.set_key("a", key_for("a"), 1)
            sealed = await pool.encrypt("a", GOOD)
            assert open_sealed("a", sealed, GOOD) == GOOD.data
            assert pool.stats()["frames_in_flight"] == 0
    run(main)


def test_bad_participants_and_key_arguments_are_typed() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="inline") as pool:
            for who in (None, 5, b"bytes", ["a"]):
                with pytest.raises(InvalidArgument):
                    await pool.encrypt(who, GOOD)  # type: ignore[arg-type]
                with pytest.raises(InvalidArgument):
                    await pool.set_key(who, key_for("a"))  # type: ignore[arg-type]
                with pytest.raises(InvalidArgument):
                    await pool.ratchet_key(who)  # type: ignore[arg-type]
                with pytest.raises(InvalidArgument):
                    await pool.remove_participant(who)  # type: ignore[arg-type]
                with pytest.raises(InvalidArgument):
                    await pool.encrypt_batch(who, FrameBatch.of([b"x"]))  # type: ignore[arg-type]
            for index in ("0", None, 1.0, True):
                with pytest.raises(InvalidArgument):
                    await pool.set_key("a", key_for("a"), index)  # type: ignore[arg-type]
            with pytest.raises(InvalidParameter):
                await pool.set_key("a", key_for("a"), 99)
            with pytest.raises(InvalidArgument):
                await pool.set_key("a", key_for("a"), kdf=5)  # type: ignore[arg-type]
            with pytest.raises(InvalidParameter):
                await pool.set_key("a", key_for("a"), kdf="md5")
            with pytest.raises(InvalidKeyMaterial):
                await pool.set_key("a", 12345)  # type: ignore[arg-type]
            with pytest.raises(InvalidArgument):
                await pool.ratchet_key("a", "0")  # type: ignore[arg-type]
            with pytest.raises(InvalidArgument):
                await pool.encrypt_batch("a", [GOOD])  # type: ignore[arg-type]
            # none of it left a trace: the pool works, nothing is pending
            await pool.set_key("a", key_for("a"))
            assert open_sealed("a", await pool.encrypt("a", GOOD), GOOD) == GOOD.data
            st = pool.stats()
            assert st["frames_in_flight"] == 0 and st["control_errors"] == 0
    run(main)


def test_frame_batch_builders_raise_typed_errors() -> None:
    with pytest.raises(InvalidArgument):
        FrameBatch.of(["text"])  # type: ignore[list-item]
    with pytest.raises(UnsupportedCodec):
        FrameBatch.of([b"x", b"y"], codec=["vp8", None])  # type: ignore[list-item]
    with pytest.raises(InvalidArgument):
        FrameBatch.of([b"x", b"y"], ssrc=[1, None])  # type: ignore[list-item]
    with pytest.raises(InvalidArgument):
        FrameBatch().append("text")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        FrameBatch().append(b"x", ssrc=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        FrameBatch().append(b"x", codec=3)  # type: ignore[arg-type]


def test_worker_replies_of_the_wrong_shape_fail_the_call_never_hang() -> None:
    """An ACK whose result does not fit its op used to leave ``ratchet_key`` waiting
    forever; a receiver-ratchet claim far beyond the window would make the inline
    engine derive without bound. Both are protocol errors now."""
    import os
    import signal

    from framecrypt.broker.runs import Control
    from framecrypt.errors import ProtocolError
    from framecrypt.transports.to_broker import Ack, Event

    async def main() -> None:
        async with Pool(workers=1, transport="shm", placement="auto") as pool:
            await pool.set_key("a", key_for("a"))
            svc = pool.service
            sl = svc.ledger.slots[0]
            identity = svc.identity[0]
            before = pool.stats()["protocol_errors"]
            # a ratchet claim 60,000 generations ahead: refused, nothing derived
            svc.on_message(identity, Event("ratcheted", 0, (0, 60000)).encode())
            assert pool.stats()["protocol_errors"] == before + 1
            assert svc.keys.generation(0, 0) == 0
            (pid,) = pool.worker_pids()
            os.kill(pid, signal.SIGSTOP)
            try:
                task = asyncio.ensure_future(pool.ratchet_key("a"))
                await asyncio.sleep(0.05)
                ctl = sl.inflight[0]
                assert isinstance(ctl, Control) and ctl.op == "ratchet"
                svc.on_message(identity, Ack(ctl.seq, True, ("hkdf",)).encode())
                with pytest.raises(ProtocolError):
                    await asyncio.wait_for(task, 1)
            finally:
                os.kill(pid, signal.SIGCONT)
            assert pool.stats()["protocol_errors"] >= before + 2
            f = GOOD
            assert open_sealed("a", await pool.encrypt("a", f), f) == f.data
    run(main)
