"""SFrame (RFC 9605) on the native path (``workers/csrc/fc_sframe.*``): the official
vectors of every suite through the C key state, Wycheproof AES-GCM through the C
AEAD, the C header codec against the reference, differential runs of the native
path against the pure reference (contexts and engines made inside
``native.using("python")``) on 100,000 random frames per suite with mutated,
replayed and reordered frames, the replay-window hand-over, and hostile direct calls
to the C entry points.

Skipped only with ``FRAMECRYPT_NATIVE=0``; under ``CI=true`` a missing extension
fails.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import pickle
import random
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from framecrypt import sframe
from framecrypt.errors import (
    AuthenticationFailed,
    FramecryptError,
    MalformedFrame,
    ReplayedFrame,
    UnknownKey,
)
from framecrypt.sframe import (
    SUITES,
    LruCache,
    ReceiverContext,
    ReplayWindow,
    SenderContext,
    SFrameKey,
    decode_header,
    derive_key_salt,
    encode_header,
    get_suite,
)
from framecrypt.transports import wire
from framecrypt.workers import native
from framecrypt.workers.engine import Engine, EngineConfig

CI = os.environ.get("CI") == "true"
FORCED_PURE = os.environ.get("FRAMECRYPT_NATIVE") == "0"
N: Any = native.NATIVE
HAVE = N is not None and hasattr(N, "sf_key")
IMB = bool(native.info().get("ipsec_mb_available"))
KINDS = ["evp", "ipsec-mb"] if IMB else ["evp"]
U64 = 1 << 64
ALL_SUITES = sorted(SUITES)
GCM_SUITES = [s for s in ALL_SUITES if SUITES[s].nka == 0]


@pytest.fixture(autouse=True)
def _native_path() -> None:
    if FORCED_PURE:
        pytest.skip("FRAMECRYPT_NATIVE=0: the pure core runs")
    if not HAVE:
        if CI:
            pytest.fail(f"CI: the extension's SFrame slice must run ({native.info()['why']})")
        pytest.skip(f"extension not running here: {native.info()['why']}")


def h(s: str) -> bytes:
    return bytes.fromhex(s)


VECTORS = Path(__file__).parent / "vectors"
_RFC = json.loads((VECTORS / "sframe" / "test-vectors.json").read_text())
_HEAD = json.loads((VECTORS / "sframe" / "test-vectors-head-3d07d8f.json").read_text())
_AES256 = json.loads((VECTORS / "sframe" / "test-vectors-aes256.json").read_text())
HEADERS: list[dict[str, Any]] = _RFC["header"]
CTR_HMAC: list[dict[str, Any]] = _RFC["aes_ctr_hmac"] + _HEAD["aes_256_ctr_hmac"]
FULL: list[dict[str, Any]] = _RFC["sframe"] + _AES256["sframe_aes_256_ctr_hmac"]


def _wycheproof_gcm() -> list[dict[str, Any]]:
    data = json.loads((VECTORS / "wycheproof" / "aes_gcm_test.json").read_text())
    return [{**t, "keySize": g["keySize"]} for g in data["testGroups"]
            if g["ivSize"] == 96 and g["tagSize"] == 128 and g["keySize"] in (128, 256)
            for t in g["tests"]]


GCM_WYCHEPROOF = _wycheproof_gcm()


def outcome(fn: Callable[..., Any], *args: Any) -> tuple[Any, ...]:
    """What ``fn(*args)`` did: its value, or the typed error with everything it carries."""
    try:
        return ("ok", fn(*args))
    except FramecryptError as e:
        return (type(e).__name__, str(e), getattr(e, "kid", None), getattr(e, "ctr", None))
    except Exception as e:  # the reference's own (TypeError, …): the same on both paths
        return ("other", type(e).__name__, str(e))


# --- vectors ---------------------------------------------------------------------------


def test_every_registered_suite_is_native() -> None:
    for s in ALL_SUITES:
        key = SFrameKey.derive(s, b"base", 9)
        assert key.native_key is not None and key.native_key.suite == s
        assert key.native_key.tag_length == SUITES[s].nt
    with native.pure():
        assert SFrameKey.derive(4, b"base", 9).native_key is None
    # a suite that is not the registry's (a 4-byte nonce) stays on the reference
    small = dataclasses.replace(SUITES[4], nn=4)
    assert SFrameKey(small, 1, bytes(16), bytes(4)).native_key is None


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("v", FULL, ids=lambda v: f"suite{v['cipher_suite']}")
def test_rfc9605_vector(v: dict[str, Any], kind: str) -> None:
    suite, kid, ctr = v["cipher_suite"], v["kid"], v["ctr"]
    base, md, pt, ct = h(v["base_key"]), h(v["metadata"]), h(v["pt"]), h(v["ct"])
    with native.using(kind):
        key = SFrameKey.derive(suite, base, kid)
    nk = key.native_key
    assert nk is not None and nk.kid == kid and nk.suite == suite
    assert nk.backend == (kind if SUITES[suite].nka == 0 else "evp")
    hlen = len(encode_header(kid, ctr))
    # the C entry points themselves (None would mean "the reference takes it")
    assert nk.protect(ctr, pt, md) == ct
    assert nk.unprotect(ct, md) == (ctr, pt)
    assert nk.open(ct, hlen, ctr, md) == pt
    buf = bytearray(b"\xee" * (len(ct) + 5))
    assert nk.protect_into(ctr, pt, memoryview(buf)[2:], md) == len(ct)
    assert bytes(buf[2 : 2 + len(ct)]) == ct and buf[:2] == b"\xee\xee"
    out = bytearray(len(pt) + 3)
    assert nk.open_into(memoryview(ct), hlen, ctr, out, md) == len(pt)
    assert bytes(out[: len(pt)]) == pt
    # without metadata, the round trip
    frame = nk.protect(ctr, pt, b"")
    assert nk.unprotect(frame, None) == (ctr, pt) and nk.unprotect(frame, b"") == (ctr, pt)
    # tampering: the C side stops, the reference raises
    bad = ct[:-1] + bytes([ct[-1] ^ 1])
    assert nk.unprotect(bad, md) is None and nk.open(bad, hlen, ctr, md) is None
    assert nk.unprotect(ct, md + b"!") is None
    with pytest.raises(AuthenticationFailed):
        key.unprotect(bad, md)

    # SFrameKey, contexts and the stateless API on the native path, the pure AEAD
    # objects out of reach (any fallback to them would fail)
    key._aead = None  # type: ignore[assignment]
    key._gcm = None
    assert key.protect(ctr, pt, md) == ct
    assert key.unprotect(ct, md) == (ctr, pt)
    assert key.open_parsed(ct, hlen, ctr, md) == pt
    out = bytearray(len(pt))
    assert key.open_parsed_into(ct, hlen, ctr, out, md) == len(pt) and bytes(out) == pt
    buf = bytearray(len(ct))
    assert key.protect_into(ctr, pt, buf, md) == len(ct) and bytes(buf) == ct
    with native.using(kind), _stateless_cache():
        for _ in range(2):
            assert sframe.protect(suite, base, kid, ctr, pt, md) == ct
            assert sframe.unprotect(suite, base, ct, md) == (kid, ctr, pt)
        tx = SenderContext(suite)
        tx.add_key(kid, base, next_ctr=ctr)
        rx = ReceiverContext(suite)
        rx.add_key(kid, base)
    assert tx.protect(kid, pt, md) == ct
    assert rx.unprotect(ct, md) == (kid, ctr, pt)
    with pytest.raises(ReplayedFrame):
        rx.unprotect(ct, md)


@pytest.mark.parametrize("v", CTR_HMAC, ids=lambda v: f"suite{v['cipher_suite']}")
def test_ctr_hmac_vector_bare_aead(v: dict[str, Any]) -> None:
    key, nonce, aad, pt, ct = h(v["key"]), h(v["nonce"]), h(v["aad"]), h(v["pt"]), h(v["ct"])
    nk = N.sf_key(v["cipher_suite"], 0, bytes(12), key)
    assert nk.aead_seal(nonce, aad, pt) == ct
    assert nk.aead_open(nonce, aad, ct) == pt
    for bad_ct, bad_aad, bad_nonce in (
        (ct[:-1] + bytes([ct[-1] ^ 1]), aad, nonce),
        (bytes([ct[0] ^ 0x80]) + ct[1:], aad, nonce),
        (ct, aad + b"x", nonce),
        (ct, aad, nonce[:-1] + bytes([nonce[-1] ^ 1])),
        (ct[: SUITES[v["cipher_suite"]].nt - 1], aad, nonce),
    ):
        assert nk.aead_open(bad_nonce, bad_aad, bad_ct) is None


@pytest.mark.parametrize("kind", KINDS)
def test_wycheproof_aes_gcm_bare_aead(kind: str) -> None:
    backend = {"evp": 1, "ipsec-mb": 2}[kind]
    assert len(GCM_WYCHEPROOF) > 100
    for t in GCM_WYCHEPROOF:
        key, iv, aad, msg = h(t["key"]), h(t["iv"]), h(t["aad"]), h(t["msg"])
        sealed = h(t["ct"]) + h(t["tag"])
        nk = N.sf_key(4 if t["keySize"] == 128 else 5, 0, bytes(12), key, backend)
        assert nk.backend == kind
        if t["result"] == "valid":
            assert nk.aead_seal(iv, aad, msg) == sealed, t["tcId"]
            assert nk.aead_open(iv, aad, sealed) == msg, t["tcId"]
        else:
            assert nk.aead_open(iv, aad, sealed) is None, t["tcId"]


# --- header codec ----------------------------------------------------------------------


def _decode_ref(data: bytes) -> tuple[int, int, int] | None:
    try:
        return decode_header(data)
    except MalformedFrame:
        return None


def test_header_vectors_and_every_config_byte() -> None:
    for v in HEADERS:
        enc = h(v["encoded"])
        assert N.sf_header(v["kid"], v["ctr"]) == enc
        assert N.sf_decode(enc + b"\x00\xff") == (v["kid"], v["ctr"], len(enc))
    # every config byte, every length up to one past the longest header, and body
    # bytes that make every value minimal, non-minimal or zero
    for cfg in range(256):
        for fill in (b"\x00", b"\x01", b"\x07", b"\x08", b"\xff", b"\x00\x08", b"\x01\x00"):
            body = (fill * 18)[:18]
            for n in range(19):
                data = bytes([cfg]) + body[:n]
                assert N.sf_decode(data) == _decode_ref(data), data.hex()
    assert N.sf_decode(b"") is None
    rng = random.Random(9605)
    for _ in range(100_000):
        data = rng.randbytes(rng.randint(0, 18))
        assert N.sf_decode(memoryview(data)) == _decode_ref(data), data.hex()


def test_header_encode_matches_reference() -> None:
    rng = random.Random(4)
    edges = [0, 1, 7, 8, 255, 256] + [(1 << b) + d for b in range(8, 64, 8) for d in (-1, 0, 1)]
    edges.append(U64 - 1)
    values = edges + [rng.randrange(U64) >> rng.randrange(64) for _ in range(3000)]
    for kid in edges:
        for ctr in values[::7] + edges:
            assert N.sf_header(kid, ctr) == encode_header(kid, ctr)
    for bad in (-1, U64, 1 << 70, 1.0, "1", None):
        assert N.sf_header(bad, 0) is None and N.sf_header(0, bad) is None


# --- differential: engines --------------------------------------------------------------


def frame_size(rng: random.Random) -> int:
    """Mostly 0..1500 bytes, some up to 70 KB."""
    r = rng.random()
    if r < 0.04:
        return rng.randint(0, 20)
    if r < 0.985:
        return rng.randint(0, 1500)
    if r < 0.997:
        return rng.randint(1500, 16_000)
    return rng.randint(16_000, 70_000)


class Payloads:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.pool = rng.randbytes(1 << 18)

    def take(self, n: int) -> bytes:
        if n >= len(self.pool):
            return self.rng.randbytes(n)
        off = self.rng.randrange(len(self.pool) - n + 1)
        return self.pool[off : off + n]


@contextmanager
def _stateless_cache() -> Iterator[None]:
    """A cache of its own for framecrypt.sframe's stateless functions (the keys it holds
    are native or pure as made)."""
    saved = sframe._cache
    sframe._cache = LruCache(sframe.CACHE_SIZE)
    try:
        yield
    finally:
        sframe._cache = saved


@dataclasses.dataclass
class Reply:
    res: bytes
    out: bytes
    spill: list[bytes]
    used: int

    def frame(self, k: int) -> bytes | None:
        status, off, ln = wire.RES.unpack_from(self.res, 12 * k)
        if status == wire.ST_OK:
            return self.out[off : off + ln]
        if status == wire.ST_INLINE:
            return b"".join(self.spill)[off : off + ln]
        return None


class Pair:
    """A native engine and a pure engine (made and driven inside native.using("python"))
    with the same config, driven identically; every reply compared byte for byte."""

    def __init__(self, config: EngineConfig, kind: str) -> None:
        with native.using(kind):
            self.nat = Engine(config)
        with native.pure():
            self.ref = Engine(config)
        assert self.nat._rules and not self.ref._rules
        self.kind = kind
        self.full = 0  # frames the native engine's C loops handed to the full path
        real = self.nat._full

        def counted(*a: Any) -> tuple[int, int, int]:
            self.full += 1
            return real(*a)

        self.nat._full = counted  # type: ignore[method-assign]

    def control(self, op: str, args: list[Any]) -> None:
        with native.using(self.kind):
            a = outcome(self.nat.control, op, args)
        with native.pure():
            b = outcome(self.ref.control, op, args)
        assert a == b

    def run(self, op: int, pidx: int, counter0: int, frames: list[bytes], codecs: bytes,
            small_out: bool = False, stateless: bool = False) -> Reply:
        n = len(frames)
        lengths = array("I", map(len, frames))
        inp = b"".join(frames)
        flags = bytes(n)
        ssrcs = array("I", [7] * n)
        tss = array("I", range(n))
        replies = []
        for eng, ctx in ((self.nat, native.using(self.kind)), (self.ref, native.pure())):
            with ctx:
                out = eng.output_buffer(op, n, len(inp))
                if small_out:
                    out = bytearray(len(out) // 3)
                res, spill, used = eng.run_packed(op, pidx, counter0, -1, lengths, codecs, flags,
                                                  ssrcs, tss, memoryview(inp), memoryview(out),
                                                  stateless=stateless)
            replies.append(Reply(bytes(res), bytes(out), list(spill), used))
        a, b = replies
        if a != b:
            for k in range(n):
                ra, rb = a.res[12 * k : 12 * k + 12], b.res[12 * k : 12 * k + 12]
                assert (wire.RES.unpack(ra), a.frame(k)) == (wire.RES.unpack(rb), b.frame(k)), k
            assert a.used == b.used and a.spill == b.spill
            assert a.out == b.out
        assert self.nat.counts == self.ref.counts
        return a

    def windows(self) -> None:
        """The replay windows of both engines are the same."""
        for pidx, p in self.nat.participants.items():
            q = self.ref.participants[pidx]
            assert p.receiver is not None and q.receiver is not None
            assert p.receiver.kids == q.receiver.kids
            for kid in p.receiver.kids:
                wa, wb = p.receiver._slots[kid].window, q.receiver._slots[kid].window
                assert (wa is None) == (wb is None), kid
                if wa is not None and wb is not None:
                    assert (wa._highest, wa._bitmap, wa.size) == (wb._highest, wb._bitmap,
                                                                  wb.size), kid
            assert p.receiver.highest_accepted() == q.receiver.highest_accepted()


def _malformed_header(rng: random.Random) -> bytes:
    """A header the strict decoder refuses: truncated or non-minimal."""
    r = rng.random()
    if r < 0.4:  # extended KID and CTR, cut short
        cfg = 0x80 | rng.randrange(8) << 4 | 0x08 | rng.randrange(8)
        return bytes([cfg]) + rng.randbytes(rng.randint(0, 1))
    if r < 0.7:  # non-minimal CTR (a value <= 7 or a leading zero byte)
        clen = rng.randint(1, 8)
        val = rng.randrange(8) if clen == 1 else rng.randrange(1 << (8 * (clen - 1)))
        return bytes([0x08 | (clen - 1)]) + val.to_bytes(clen, "big")
    klen = rng.randint(1, 8)
    val = rng.randrange(8) if klen == 1 else rng.randrange(1 << (8 * (klen - 1)))
    return bytes([0x80 | (klen - 1) << 4]) + val.to_bytes(klen, "big")


def mutate(rng: random.Random, frames: list[bytes], history: list[bytes], kids: list[int],
           suite: int) -> tuple[list[bytes], bytearray]:
    """The frames a receiver gets: mostly as sent, some mutated, replayed or moved;
    the codec id column with an unknown codec now and then."""
    got: list[bytes] = []
    codecs = bytearray()
    nt = SUITES[suite].nt
    for f in frames:
        r = rng.random()
        if r < 0.90 or not f:
            got.append(f)
        else:
            r = rng.random()
            _, _, hl = decode_header(f)
            b = bytearray(f)
            if r < 0.15:  # flip a bit of the header
                b[rng.randrange(hl)] ^= 1 << rng.randrange(8)
            elif r < 0.30:  # of the ciphertext or the tag
                b[rng.randrange(hl, len(b))] ^= 1 << rng.randrange(8)
            elif r < 0.40:  # of the tag
                b[len(b) - 1 - rng.randrange(nt)] ^= 1 << rng.randrange(8)
            elif r < 0.50:  # truncated (maybe into the header)
                del b[rng.randrange(len(b)) :]
            elif r < 0.55:  # a byte more
                b.append(rng.randrange(256))
            elif r < 0.63:  # unknown KID
                _, ctr, _ = decode_header(f)
                b[:hl] = encode_header(rng.choice((1, 2, 1000, 2**40)), ctr)
            elif r < 0.70:  # a malformed header
                b[:hl] = _malformed_header(rng)
            elif r < 0.85 and history:  # a replay of an earlier frame
                b = bytearray(rng.choice(history))
            elif r < 0.90 and got:  # moved behind the next one (a reorder)
                b = bytearray(got.pop())
                got.append(f)
            elif r < 0.95:  # another KID that is held (wrong key for this body)
                _, ctr, _ = decode_header(f)
                b[:hl] = encode_header(rng.choice(kids), ctr)
            else:
                b = bytearray(rng.randbytes(rng.randint(0, 40)))
            got.append(bytes(b))
        codecs.append(rng.randrange(6) if rng.random() > 0.003 else rng.choice((6, 7, 255)))
    return got, codecs


# suite -> replay window of its engine pair (0 = no window)
WINDOWS = {1: 128, 2: 0, 3: 7, 4: 128, 5: 64, 6: 1, 7: 128, 8: 300}
FRAMES_PER_SUITE = 100_000
END_KID = 500


def _drive(suite: int, kind: str, frames_total: int, seed: int) -> Pair:
    rng = random.Random(seed)
    pay = Payloads(rng)
    pair = Pair(EngineConfig(format="sframe", suite=suite,
                             replay_window=WINDOWS[suite]), kind)
    kids = [3, 77, 2**33 + 5]
    for kid in kids:
        pair.control("keyset", [1, "alice", kid, b"base-%d" % kid, None, 0, kid == 3])
    counter = {kid: 0 for kid in (*kids, END_KID)}
    send_kid = 3
    history: list[bytes] = []
    done = 0
    while done < frames_total:
        n = min(rng.choice((1, 2, 5, 16, 64, 128, 200)), frames_total - done)
        done += n
        r = rng.random()
        if r < 0.05 or send_kid == END_KID:  # another sending key
            send_kid = rng.choice(kids)
            pair.control("keyset", [1, "alice", send_kid, b"base-%d" % send_kid, None, 0, True])
        if r > 0.995:  # the end of the counter space (CounterExhausted past 2**64 - 1),
            # under a key of its own, as a sender would rekey then
            send_kid = END_KID
            pair.control("keyset", [1, "alice", END_KID, b"end", None, 0, True])
            counter[END_KID] = U64 - rng.randint(1, 40)
        c0 = counter[send_kid]
        if 0.985 < r <= 0.995:  # a jump
            c0 += rng.randint(2, 5000)
        plain = [pay.take(frame_size(rng)) for _ in range(n)]
        codecs = bytes(rng.randrange(6) if rng.random() > 0.003 else 9 for _ in range(n))
        sealed = pair.run(wire.OP_ENCRYPT, 1, c0, plain, codecs, small_out=rng.random() < 0.02)
        counter[send_kid] = c0 + n
        frames = [f for f in (sealed.frame(k) for k in range(n)) if f is not None]
        if not frames:
            continue
        got, gcodecs = mutate(rng, frames, history, kids, suite)
        r = rng.random()
        if r < 0.01:
            pair.run(wire.OP_DECRYPT, 1, 0, got, bytes(gcodecs), stateless=True)
        pair.run(wire.OP_DECRYPT, 1, 0, got, bytes(gcodecs), small_out=r > 0.98)
        history = (history + frames[-8:])[-400:]
        if rng.random() < 0.01:  # state handed over from another receiver
            kid = rng.choice(kids)
            floor = counter[kid] + rng.randint(-300, 40)
            pair.control("replay_floor", [1, [[kid, max(floor, 0)]]])
        if rng.random() < 0.02:
            pair.windows()
    pair.windows()
    # the C loops took the frames they can: far fewer went to the full path than ran
    assert pair.full < frames_total * 0.6, pair.full
    return pair


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_engine_differential_100k_frames(suite: int) -> None:
    kind = "ipsec-mb" if IMB and suite == 4 else "evp" if suite == 5 else "auto"
    _drive(suite, kind, FRAMES_PER_SUITE, seed=suite)
    if suite in GCM_SUITES:  # and the other AES-GCM backend on a smaller run
        _drive(suite, "evp" if kind != "evp" else KINDS[-1], 10_000, seed=100 + suite)


def test_engine_clean_batch_stays_in_c() -> None:
    rng = random.Random(1)
    for suite in ALL_SUITES:
        pair = Pair(EngineConfig(format="sframe", suite=suite), "auto")
        pair.control("keyset", [1, "a", 4, b"k", None, 0, True])
        plain = [rng.randbytes(rng.randint(0, 3000)) for _ in range(300)]
        sealed = pair.run(wire.OP_ENCRYPT, 1, 10, plain, bytes(300))
        frames = [sealed.frame(k) or b"" for k in range(300)]
        pair.run(wire.OP_DECRYPT, 1, 0, frames, bytes(300))
        assert pair.full == 0
        pair.windows()
        # all of them again: 300 replays, each one the window's to refuse
        back = pair.run(wire.OP_DECRYPT, 1, 0, frames, bytes(300))
        assert {s for s, _, _ in wire.RES.iter_unpack(back.res)} == {wire.ST_REPLAYED}
        assert pair.full == 300


# --- replay window semantics --------------------------------------------------------------


def test_replays_reorders_and_floor_handover_in_batches() -> None:
    pair = Pair(EngineConfig(format="sframe", suite=1, replay_window=16), "auto")
    pair.control("keyset", [1, "a", 2, b"k2", None, 0, True])
    sealed = pair.run(wire.OP_ENCRYPT, 1, 0, [b"f%d" % c for c in range(100)], bytes(100))
    f = [sealed.frame(c) or b"" for c in range(100)]

    def statuses(frames: list[bytes]) -> list[int]:
        rep = pair.run(wire.OP_DECRYPT, 1, 0, frames, bytes(len(frames)))
        pair.windows()
        return [s for s, _, _ in wire.RES.iter_unpack(rep.res)]

    ok, rp = wire.ST_OK, wire.ST_REPLAYED
    # a replay inside one batch, late frames inside the window (3, 25) and below it
    assert statuses([f[0], f[1], f[1], f[5], f[3], f[3], f[40], f[20], f[24], f[25]]) == [
        ok, ok, rp, ok, ok, rp, ok, rp, rp, ok]
    # the hand-over: counters up to 60 refused from now on, 61.. open
    pair.control("replay_floor", [1, [[2, 60]]])
    assert statuses([f[50], f[60], f[61], f[61], f[59], f[62]]) == [rp, rp, ok, rp, rp, ok]
    pair.control("replay_floor", [1, [[2, 30]]])  # never lowers the window
    assert statuses([f[45], f[63]]) == [rp, ok]


def test_no_window_accepts_replays_on_both_paths() -> None:
    pair = Pair(EngineConfig(format="sframe", suite=4, replay_window=0), "auto")
    pair.control("keyset", [1, "a", 0, b"k", None, 0, True])
    sealed = pair.run(wire.OP_ENCRYPT, 1, 5, [b"x", b"y"], bytes(2))
    f = [sealed.frame(0) or b"", sealed.frame(1) or b""]
    rep = pair.run(wire.OP_DECRYPT, 1, 0, f + f + f[::-1], bytes(6))
    assert {s for s, _, _ in wire.RES.iter_unpack(rep.res)} == {wire.ST_OK}
    assert pair.full == 0


def test_accept_run_is_accept_frame_by_frame() -> None:
    rng = random.Random(5)
    for _ in range(3000):
        size = rng.choice((1, 2, 7, 64, 128, 129))
        a, b = ReplayWindow(size), ReplayWindow(size)
        for _ in range(rng.randint(1, 12)):
            base = max(a._highest, 0)
            first = base + rng.randint(-2 * size, 3 * size) if rng.random() < 0.9 else \
                rng.randrange(U64 - 300)
            first = max(first, 0)
            last = first + rng.choice((0, 0, 1, 5, size - 1, size, size + 3, 3 * size))
            a.accept_run(first, last)
            for c in range(first, last + 1):
                b.accept(c)
            assert (a._highest, a._bitmap) == (b._highest, b._bitmap), (size, first, last)
            if rng.random() < 0.1:
                floor = rng.randint(0, max(a._highest, 0) + 10)
                a.raise_floor(floor)
                b.raise_floor(floor)
    # a floor far below a window's counters marks nothing (and allocates nothing: the
    # reference built a 2**63-bit mask here)
    w = ReplayWindow(128)
    w.accept(1 << 63)
    w.raise_floor(5)
    assert w._bitmap == 1 and 5 not in w and (1 << 63) in w
    w = ReplayWindow(8)
    w.accept_run(5, 4)
    assert w.highest is None and w.floor == -1
    w.accept_run(3, U64 - 1)
    assert w.highest == U64 - 1 and w._bitmap == 0xFF


# --- differential: per call ------------------------------------------------------------


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_per_call_differential_with_typed_errors(suite: int) -> None:
    rng = random.Random(1000 + suite)
    pay = Payloads(rng)
    base = b"per call %d" % suite
    kids = [0, 9, 2**20]
    sides: dict[str, Any] = {}
    for name, ctx in (("nat", native.using("auto")), ("ref", native.pure())):
        with ctx:
            rx = ReceiverContext(suite, replay_window=rng.choice((0, 4, 128)) if name == "nat"
                                 else sides["nat"]["rx"]._window)
            keys = {kid: SFrameKey.derive(suite, base, kid) for kid in kids}
            for kid in kids:
                rx.add_key(kid, base)
            sides[name] = {"rx": rx, "keys": keys}
    nat, ref = sides["nat"], sides["ref"]
    assert all(k.native_key is not None for k in nat["keys"].values())
    assert all(k.native_key is None for k in ref["keys"].values())
    history: list[bytes] = []
    for i in range(10_000):
        kid = rng.choice(kids)
        ctr = rng.choice((i, i, i, rng.randrange(U64), U64 - 1, U64, -1))
        pt = pay.take(frame_size(rng) if rng.random() < 0.9 else rng.randint(0, 40))
        md = rng.choice((b"", b"", b"meta", pay.take(300)))
        nkey, rkey = nat["keys"][kid], ref["keys"][kid]
        assert outcome(nkey.protect, ctr, pt, md) == outcome(rkey.protect, ctr, pt, md)
        size = rng.choice((len(pt) + 40, len(pt) + 10, len(pt)))
        bufs = [bytearray(size), bytearray(size)]
        a = outcome(nkey.protect_into, ctr, pt, bufs[0], md)
        b = outcome(rkey.protect_into, ctr, pt, bufs[1], md)
        assert a == b and (a[0] != "ok" or bufs[0] == bufs[1])
        if a[0] != "ok":
            continue
        frame = bytes(bufs[0][: a[1]])
        got, _ = mutate(rng, [frame], history, kids, suite)
        f = got[0]
        rmd = md if rng.random() < 0.95 else md + b"?"
        hc = _hc(f)
        assert outcome(nat["rx"].unprotect, f, rmd) == outcome(ref["rx"].unprotect, f, rmd)
        assert outcome(nkey.unprotect, f, rmd) == outcome(rkey.unprotect, f, rmd)
        assert outcome(nkey.open_parsed, f, *hc, rmd) == outcome(rkey.open_parsed, f, *hc, rmd)
        n = max(len(f) - 3, 0)
        outs = [bytearray(n), bytearray(n)]
        a = outcome(nkey.open_parsed_into, f, *hc, outs[0], rmd)
        b = outcome(rkey.open_parsed_into, f, *hc, outs[1], rmd)
        assert a == b and (a[0] != "ok" or outs[0][: a[1]] == outs[1][: a[1]])
        history = [*history, frame][-50:]
    assert nat["rx"].highest_accepted() == ref["rx"].highest_accepted()
    # the stateless API, each side with its own cache
    for f in history[:20]:
        for md in (b"", b"meta"):
            with native.using("auto"), _stateless_cache():
                a = outcome(sframe.unprotect, suite, base, f, md)
            with native.pure(), _stateless_cache():
                b = outcome(sframe.unprotect, suite, base, f, md)
            assert a == b


def _hc(frame: bytes) -> tuple[int, int]:
    """(header length, ctr) of a frame, (0, 0) when it has no valid header."""
    try:
        _, ctr, hl = decode_header(frame)
    except MalformedFrame:
        return 0, 0
    return hl, ctr


def test_unusual_arguments_go_to_the_reference() -> None:
    key = SFrameKey.derive(1, b"k", 5)
    nk = key.native_key
    frame = key.protect(3, b"hello")
    # not handled in C: None, and the SFrameKey call raises what the reference raises
    assert nk.protect(-1, b"x", b"") is None and nk.protect(U64, b"x", b"") is None
    assert nk.protect(1.0, b"x", b"") is None and nk.protect(2, "text", b"") is None
    assert nk.protect(2, array("I", [1, 2]), b"") is None
    assert nk.protect(2, memoryview(b"abcd").cast("B", (2, 2)), b"") is None
    assert nk.protect(2, memoryview(b"abcdef")[::2], b"") is None
    assert nk.protect(2, b"x", "md") is None
    assert nk.protect_into(2, b"x", bytes(64), b"") is None  # read-only
    assert nk.protect_into(2, b"x", bytearray(10), b"") is None  # too small (1 + 1 + 10)
    arena = bytearray(64)
    assert nk.protect_into(2, memoryview(arena)[:20], memoryview(arena)[10:], b"") is None
    assert nk.open(frame, 2, 3, b"") is None and nk.open(frame, -1, 3, b"") is None
    assert nk.open(frame, len(frame) + 1, 3, b"") is None
    assert nk.open(frame[:5], 1, 3, b"") is None
    assert nk.open_into(frame, 1, 3, bytearray(4), b"") is None
    assert nk.unprotect(b"", b"") is None and nk.unprotect(b"\x88", b"") is None
    assert nk.unprotect(SFrameKey.derive(1, b"k", 6).protect(3, b"x"), b"") is None
    for bad in (-1, U64):
        with pytest.raises(FramecryptError):
            key.protect(bad, b"x")
    with pytest.raises(MalformedFrame):
        key.unprotect(b"")
    with pytest.raises(UnknownKey):
        key.unprotect(SFrameKey.derive(1, b"k", 6).protect(3, b"x"))
    assert key.unprotect(bytearray(frame)) == (3, b"hello")
    assert key.unprotect(memoryview(frame), None) == (3, b"hello")  # type: ignore[arg-type]


# --- key hygiene and hostile direct calls ------------------------------------------------------


def test_native_key_hides_and_refuses_to_travel() -> None:
    ks = derive_key_salt(get_suite(1), b"secret base", 7)
    nk = N.sf_key(1, 7, ks.salt, ks.key)
    for secret in (ks.key, ks.salt, ks.key[:16], ks.key[16:]):
        assert secret.hex() not in repr(nk) and secret.hex().upper() not in repr(nk)
    assert repr(nk) == "SfKey(suite=0x0001, kid=7, evp)"
    for obj in (nk, SFrameKey.derive(4, b"secret base", 7).native_key):
        with pytest.raises(TypeError):
            pickle.dumps(obj)
    with pytest.raises(TypeError):
        type(nk)()  # made by sf_key() only


def test_gcm_key_keeps_its_aes_gcm_alive() -> None:
    ks = derive_key_salt(get_suite(5), b"b", 1)
    gcm = N.AesGcm(ks.key)
    nk = N.sf_key(5, 1, ks.salt, gcm)
    frame = nk.protect(0, b"payload", b"")
    del gcm
    gc.collect()
    assert nk.unprotect(frame, b"") == (0, b"payload")
    with pytest.raises(TypeError):
        N.sf_key(1, 1, bytes(12), N.AesGcm(bytes(16)))  # AesGcm for a CTR suite
    with pytest.raises(ValueError):
        N.sf_key(5, 1, bytes(12), N.AesGcm(bytes(16)))  # AES-128 for AES-256-GCM


@pytest.mark.parametrize("args", [
    (0, 1, bytes(12), bytes(16)), (9, 1, bytes(12), bytes(16)), (0xF000, 1, bytes(12), b""),
    (4, 1, bytes(11), bytes(16)), (4, 1, bytes(12), bytes(15)), (1, 1, bytes(12), bytes(32)),
    (6, 1, bytes(12), bytes(48)), (4, -1, bytes(12), bytes(16)), (4, U64, bytes(12), bytes(16)),
    (4, 1, "salt", bytes(16)), (4, 1, bytes(12), None), ("4", 1, bytes(12), bytes(16)),
    (4, 1, bytes(12), bytes(16), 3), (4, 1, bytes(12), bytes(16), -1), (1 << 80, 1, b"", b""),
])
def test_sf_key_refuses_bad_arguments(args: tuple[Any, ...]) -> None:
    with pytest.raises((TypeError, ValueError, OverflowError)):
        N.sf_key(*args)


def test_sf_key_methods_argument_counts() -> None:
    nk = N.sf_key(4, 1, bytes(12), bytes(16))
    for name, good in (("protect", 3), ("protect_into", 4), ("open", 4), ("open_into", 5),
                       ("unprotect", 2), ("aead_seal", 3), ("aead_open", 3)):
        for n in (0, good - 1, good + 1):
            with pytest.raises(TypeError):
                getattr(nk, name)(*([b""] * n))
    with pytest.raises(ValueError):
        nk.aead_seal(bytes(11), b"", b"")
    with pytest.raises(TypeError):
        nk.aead_open(bytes(12), None, b"")
    assert nk.aead_open(bytes(12), b"", bytes(15)) is None
    with pytest.raises(TypeError):
        N.sf_decode(None)
    with pytest.raises(TypeError):
        N.sf_header(1)


def _cols(frames: list[bytes]) -> tuple[array[int], bytes, bytes]:
    return array("I", map(len, frames)), bytes(len(frames)), b"".join(frames)


def test_hostile_seal_run() -> None:
    nk = SFrameKey.derive(4, b"k", 1).native_key
    lengths, codecs, inp = _cols([b"a" * 10, b"b" * 20, b"c" * 30])
    out, res = bytearray(200), bytearray(36)
    ok = N.sf_seal_run(nk, 0, lengths, codecs, 6, 0, inp, 0, out, 0, res)
    assert ok == (3, 60, 60 + 3 * 17)
    # wrong types: exceptions
    for bad in (
        (None, 0, lengths, codecs, 6, 0, inp, 0, out, 0, res),
        (N.AesGcm(bytes(16)), 0, lengths, codecs, 6, 0, inp, 0, out, 0, res),
        (nk, -1, lengths, codecs, 6, 0, inp, 0, out, 0, res),
        (nk, U64, lengths, codecs, 6, 0, inp, 0, out, 0, res),
        (nk, 0, bytes(12), codecs, 6, 0, inp, 0, out, 0, res),  # lengths not u32
        (nk, 0, lengths, array("I", [0] * 3), 6, 0, inp, 0, out, 0, res),
        (nk, 0, lengths, codecs, 6, 0, inp, 0, bytes(200), 0, res),  # read-only out
        (nk, 0, lengths, codecs, 6, 0, inp, 0, out, 0, bytes(36)),
        (nk, 0, lengths, codecs, 6, -1, inp, 0, out, 0, res),
        (nk, 0, lengths, codecs, 6, 0, inp, -1, out, 0, res),
        (nk, 0, lengths, codecs, 6, 0, inp, 0, out, -5, res),
        (nk, 0, lengths, codecs, 300, 0, inp, 0, out, 0, res),
        (nk, 0, lengths, codecs, 6, "0", inp, 0, out, 0, res),
        (nk, 0, lengths, codecs, 6, 0, "inp", 0, out, 0, res),
    ):
        with pytest.raises((TypeError, ValueError, OverflowError, BufferError)):
            N.sf_seal_run(*bad)
    with pytest.raises(TypeError):
        N.sf_seal_run(nk, 0)
    # short buffers and offsets out of range: a stop, nothing written out of bounds
    guard = bytearray(300)
    view = memoryview(guard)[100:210]  # one byte short of the three frames
    assert N.sf_seal_run(nk, 0, lengths, codecs, 6, 0, inp, 0, view, 0, res) == (2, 30, 64)
    assert guard[:100] == bytes(100) and guard[164:] == bytes(136)
    assert N.sf_seal_run(nk, 0, lengths, codecs, 6, 0, inp, 0, view, 84, res) == (0, 0, 84)
    assert N.sf_seal_run(nk, 0, lengths, codecs, 6, 0, inp, 0, view, 10**9, res)[0] == 0
    assert N.sf_seal_run(nk, 0, lengths, codecs, 6, 0, inp[:45], 0, out, 0, res)[0] == 2
    assert N.sf_seal_run(nk, 0, lengths, codecs, 6, 0, inp, 10**12, out, 0, res)[0] == 0
    assert N.sf_seal_run(nk, 0, lengths, codecs, 6, 0, inp, 0, out, 0, res[:20])[0] == 1
    assert N.sf_seal_run(nk, 0, lengths, codecs, 6, 7, inp, 0, out, 0, res)[0] == 7
    assert N.sf_seal_run(nk, 0, array("I", [2**32 - 1] * 3), codecs, 6, 0, inp, 0, out, 0,
                         res)[0] == 0
    assert N.sf_seal_run(nk, 0, lengths, b"\x00\x06\x00", 6, 0, inp, 0, out, 0, res)[0] == 1
    assert N.sf_seal_run(nk, 0, lengths, codecs[:2], 6, 0, inp, 0, out, 0, res)[0] == 2
    assert N.sf_seal_run(nk, U64 - 2, lengths, codecs, 6, 0, inp, 0, out, 0, res)[0] == 2
    # input and output the same buffer: a stop
    same = bytearray(inp) + bytearray(200)
    assert N.sf_seal_run(nk, 0, lengths, codecs, 6, 0, same, 0, same, 0, res)[0] == 0


def test_hostile_open_run() -> None:
    key = SFrameKey.derive(1, b"k", 1)
    nk = key.native_key
    frames = [key.protect(c, b"x" * (10 * c)) for c in range(4)]
    lengths, codecs, inp = _cols(frames)
    out, res = bytearray(200), bytearray(48)
    table = {1: (nk, -1)}
    k, i, o, runs = N.sf_open_run(table, lengths, codecs, 6, 0, inp, 0, out, 0, res)
    assert (k, i, o, runs) == (4, len(inp), 60, [(1, 0, 3)])
    assert N.sf_open_run({1: (nk, None)}, lengths, codecs, 6, 0, inp, 0, out, 0, res)[3] == []
    assert N.sf_open_run({1: (nk, 1)}, lengths, codecs, 6, 0, inp, 0, out, 0, res)[0] == 0
    assert N.sf_open_run({1: (nk, 1)}, lengths, codecs, 6, 2, inp, len(frames[0]) +
                         len(frames[1]), out, 0, res)[3] == [(1, 2, 3)]
    # malformed tables: a stop at the first frame that needs them
    for bad_table in ({}, {2: (nk, -1)}, {1: nk}, {1: (nk,)}, {1: (nk, -1, 0)}, {1: (None, -1)},
                      {1: (N.AesGcm(bytes(16)), -1)}, {1: (nk, -2)}, {1: (nk, "0")},
                      {1: (nk, U64)}, {1: (nk, 1.5)}, {"1": (nk, -1)}):
        assert N.sf_open_run(bad_table, lengths, codecs, 6, 0, inp, 0, out, 0, res)[:3] == (
            0, 0, 0), bad_table
    assert N.sf_open_run({1: (nk, U64 - 1)}, lengths, codecs, 6, 0, inp, 0, out, 0,
                         res)[0] == 0
    for bad in (
        ([(1, (nk, -1))], lengths, codecs, 6, 0, inp, 0, out, 0, res),
        (None, lengths, codecs, 6, 0, inp, 0, out, 0, res),
        (table, [1, 2], codecs, 6, 0, inp, 0, out, 0, res),
        (table, lengths, codecs, 6, 0, inp, 0, bytes(100), 0, res),
        (table, lengths, codecs, 6, 0, inp, 0, out, 0, None),
        (table, lengths, codecs, -1, 0, inp, 0, out, 0, res),
        (table, lengths, codecs, 6, -3, inp, 0, out, 0, res),
        (table, lengths, codecs, 6, 0, inp, 2**70, out, 0, res),
    ):
        with pytest.raises((TypeError, ValueError, OverflowError, BufferError)):
            N.sf_open_run(*bad)
    with pytest.raises(TypeError):
        N.sf_open_run(table)
    # short buffers and out-of-range offsets: a stop, within bounds
    guard = bytearray(300)
    view = memoryview(guard)[100:130]
    k, _, o, _ = N.sf_open_run(table, lengths, codecs, 6, 0, inp, 0, view, 0, res)
    assert (k, o) == (3, 30) and guard[:100] == bytes(100) and guard[130:] == bytes(170)
    assert N.sf_open_run(table, lengths, codecs, 6, 0, inp, 0, out, 500, res)[0] == 0
    assert N.sf_open_run(table, lengths, codecs, 6, 0, inp[:-1], 0, out, 0, res)[0] == 3
    assert N.sf_open_run(table, lengths, codecs, 6, 0, inp, 10**12, out, 0, res)[0] == 0
    assert N.sf_open_run(table, lengths, codecs, 6, 0, inp, 0, out, 0, res[:30])[0] == 2
    assert N.sf_open_run(table, array("I", [2**32 - 1] * 4), codecs, 6, 0, inp, 0, out, 0,
                         res)[0] == 0
    assert N.sf_open_run(table, lengths, codecs, 0, 0, inp, 0, out, 0, res)[0] == 0
    # a frame too short for its tag, an unauthentic one, a replay inside the run
    short = [frames[0], frames[1][:5], frames[2]]
    assert N.sf_open_run(table, *_cols(short)[:2], 6, 0, _cols(short)[2], 0, out, 0,
                         res)[0] == 1
    forged = [frames[0], frames[1][:-1] + bytes([frames[1][-1] ^ 1])]
    assert N.sf_open_run(table, *_cols(forged)[:2], 6, 0, _cols(forged)[2], 0, out, 0,
                         res)[0] == 1
    again = [frames[0], frames[1], frames[1]]
    assert N.sf_open_run(table, *_cols(again)[:2], 6, 0, _cols(again)[2], 0, out, 0,
                         res)[::3] == (2, [(1, 0, 1)])
    # input and output one buffer: outputs behind the frames read are fine (the
    # reference does the same), an output over the frame being opened is a stop
    same = bytearray(inp) + bytearray(100)
    assert N.sf_open_run(table, lengths, codecs, 6, 0, same, 0, same, 0, res)[0] == 4
    same = bytearray(inp) + bytearray(100)
    assert N.sf_open_run(table, lengths, codecs, 6, 0, same, 0, same, 12, res)[0] == 1


def test_open_run_many_kids() -> None:
    """More KIDs in one batch than the C loop keeps at once: it stops, the full path
    takes the frame, and it resumes (the differential engine agrees)."""
    pair = Pair(EngineConfig(format="sframe", suite=2), "auto")
    kids = list(range(40))
    for kid in kids:
        pair.control("keyset", [1, "a", kid, b"k%d" % kid, None, 0, False])
    frames = []
    for rnd in range(3):
        for kid in kids:
            frames.append(pair.nat.participants[1].send_keys[kid].protect(rnd, b"%d" % kid))
    pair.run(wire.OP_DECRYPT, 1, 0, frames, bytes(len(frames)))
    pair.windows()
    assert 0 < pair.full < len(frames)
