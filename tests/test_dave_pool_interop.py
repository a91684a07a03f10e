"""The pool's DAVE frames against the outside implementations: a davey member and a
dave-py (libdave) member form a group (tests/dave_helpers.py); frames the pool seals as
the dave-py member open in both libraries, and frames both libraries seal open in the
pool, every codec the libraries take from Python, through real worker processes."""

from __future__ import annotations

import sys

import pytest
from dave_helpers import Group, find_base_secret, form_group
from pool_helpers import run

from framecrypt import Frame, Pool
from framecrypt.errors import AuthenticationFailed
from framecrypt.workers.dave import footer, frame, ratchet

dave = pytest.importorskip("dave")
davey = pytest.importorskip("davey")

pytestmark = pytest.mark.timeout(180)

OPUS = bytes(range(7, 107))
VP8_KEY = bytes([0x10]) + bytes(range(200, 255)) + bytes(range(60))
VP8_DELTA = bytes([0x31]) + bytes(range(90))
VP9 = bytes(range(3, 250))
H264 = b"\x00\x00\x00\x01\x67\x42\x00\x1f" + b"\x00\x00\x00\x01\x65\x88\x84" + bytes(range(1, 200))
AV1 = bytes([0x32, 60]) + bytes(range(60))


def _recover(sealed: bytes, plain: bytes) -> bytes:
    f = footer.parse(sealed)

    def opens(cand: bytes) -> bool:
        try:
            return frame.open_parsed(ratchet.key_for_generation(cand, 0), sealed, f) == plain
        except AuthenticationFailed:
            return False

    secret = find_base_secret(opens)
    assert secret is not None, "no base secret in memory opens the frame"
    return secret


class Call:
    def __init__(self) -> None:
        self.g: Group = form_group(davey_id=3333, dave_id=4444, channel=99)
        first = self.g.davey_member.encrypt_opus(OPUS)
        self._hold = self.g.dave_member.get_key_ratchet(str(self.g.davey_id))
        self.davey_secret = _recover(first, OPUS)
        enc = dave.Encryptor()
        enc.set_key_ratchet(self.g.dave_member.get_key_ratchet(str(self.g.dave_id)))
        enc.assign_ssrc_to_codec(1, dave.Codec.opus)
        self.dave_enc = enc
        self.dave_first = enc.encrypt(dave.MediaType.audio, 1, OPUS)
        self.dave_secret = _recover(self.dave_first, OPUS)
        codecs = {"opus": dave.Codec.opus, "vp8": dave.Codec.vp8, "vp9": dave.Codec.vp9,
                  "h264": dave.Codec.h264, "av1": dave.Codec.av1}
        self.ssrc = {}
        for i, (name, c) in enumerate(codecs.items(), start=10):
            enc.assign_ssrc_to_codec(i, c)
            self.ssrc[name] = i


@pytest.fixture(scope="module")
def call() -> Call:
    if not sys.platform.startswith("linux"):
        pytest.fail("the key recovery reads /proc/self/mem (Linux only)")
    return Call()


CASES = [("opus", OPUS), ("vp8", VP8_KEY), ("vp8", VP8_DELTA), ("vp9", VP9), ("h264", H264),
         ("av1", AV1)]


def _media(codec: str, lib: object) -> object:
    return lib.MediaType.audio if codec == "opus" else lib.MediaType.video  # type: ignore


def test_pool_frames_open_in_davey_and_libdave(call: Call) -> None:
    """The pool seals as the dave-py member (its base secret, epoch 1); the davey member
    and a libdave Decryptor open every frame."""

    async def main() -> list[bytes]:
        async with Pool(workers=2, transport="shm", format="dave") as pool:
            await pool.set_dave_key("dave-member", 1, call.dave_secret)
            # nonce 1 was libdave's own first frame: the pool starts past it
            await pool.encrypt("dave-member", Frame(OPUS, "opus"))
            return await pool.encrypt_many(
                "dave-member", [Frame(p, c, ssrc=i) for i, (c, p) in enumerate(CASES)])

    sealed = run(main)
    assert [footer.parse(s).nonce for s in sealed] == list(range(2, 2 + len(CASES)))
    dec = dave.Decryptor()
    dec.transition_to_key_ratchet(call.g.dave_member.get_key_ratchet(str(call.g.dave_id)))
    for (codec, plain), s in zip(CASES, sealed, strict=True):
        want = bytes([plain[0] & ~0x02]) + plain[2:] if codec == "av1" else plain
        got_davey = call.g.davey_member.decrypt(call.g.dave_id, _media(codec, davey), s)
        assert got_davey == want, codec
        assert dec.decrypt(_media(codec, dave), s) == want, codec


def test_libdave_and_davey_frames_open_in_the_pool(call: Call) -> None:
    libdave_frames = [(c, p, call.dave_enc.encrypt(_media(c, dave), call.ssrc[c], p))
                      for c, p in CASES]
    davey_codec = {"opus": davey.Codec.opus, "vp8": davey.Codec.vp8, "vp9": davey.Codec.vp9,
                   "h264": davey.Codec.h264, "av1": davey.Codec.av1}
    davey_frames = [(c, p, call.g.davey_member.encrypt(_media(c, davey), davey_codec[c], p))
                    for c, p in CASES]

    async def main() -> tuple[list[bytes], list[bytes], list[object]]:
        async with Pool(workers=2, transport="shm", format="dave") as pool:
            await pool.set_dave_key("dave-member", 1, call.dave_secret)
            await pool.set_dave_key("davey-member", 1, call.davey_secret)
            a = await pool.decrypt_many("dave-member", [Frame(s, c) for c, _, s in
                                                        libdave_frames])
            b = await pool.decrypt_many("davey-member", [Frame(s, c) for c, _, s in
                                                         davey_frames])
            # the other sender's key does not open them; a replay is refused
            await pool.set_dave_key("wrong", 1, call.davey_secret)
            c = [*await pool.decrypt_many("wrong", [Frame(libdave_frames[-1][2], "av1")],
                                          return_exceptions=True),
                 *await pool.decrypt_many("davey-member", [Frame(davey_frames[0][2], "opus")],
                                          return_exceptions=True)]
            return a, b, c

    a, b, c = run(main)

    def want(codec: str, plain: bytes) -> bytes:
        return bytes([plain[0] & ~0x02]) + plain[2:] if codec == "av1" else plain

    assert a == [want(co, p) for co, p, _ in libdave_frames]
    assert b == [want(co, p) for co, p, _ in davey_frames]
    from framecrypt.errors import ReplayedFrame

    assert isinstance(c[0], AuthenticationFailed) and isinstance(c[1], ReplayedFrame)


def test_dave_bench_smoke() -> None:
    """python -m framecrypt.bench.dave, tiny: every contender's outputs are checked on
    the first round (the run raises otherwise) and both targets are judged."""
    import asyncio

    from framecrypt.bench import dave as bench

    res = asyncio.run(bench.measure(frames=20, rounds=1, workers=[1]))
    names = {"framecrypt-percall", "framecrypt-percall-python", "framecrypt-batch-loop",
             "framecrypt-pool-batch-1w", "framecrypt-pool-pipelined-1w", "dave-py", "davey"}
    for wl in ("opus", "vp8", "h264"):
        assert set(res["results"][wl]) == names
    assert [t["pass"] is not None for t in res["targets"]] == [True] * 4
    assert "DAVE pool, batches pipelined" in bench.table(res)
