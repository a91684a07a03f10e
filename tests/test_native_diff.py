"""The compiled extension (``framecrypt._native``) against the pure core, the reference:
identical bytes and identical typed errors.

1. ``AesGcm`` (each backend) against Wycheproof and against cryptography's ``AESGCM``;
2. the H.26x helpers against ``workers/livekit/h26x.py`` (hypothesis + a seeded bulk loop);
3. ``Engine.run_packed`` sealing on the native path against the pure engine;
4. opening sealed and mutated frames, stateful and stateless, key state and events;
5. hostile direct calls of ``seal_run``/``open_run`` (never a write out of bounds);
6. single-frame ``lk_seal``/``lk_open`` against ``workers/livekit/frame.py``.

The whole module is skipped only under ``FRAMECRYPT_NATIVE=0`` (the pure-core CI run);
without the extension it skips locally and fails in CI. Guarded buffers (a view of the
head of a larger bytearray whose tail holds a pattern) show writes past an output
buffer without corrupting memory, so the checks hold in a normal build as well as
under the sanitizers.
"""

from __future__ import annotations

import copy
import json
import math
import os
import pickle
import platform
import random
import subprocess
import sys
from array import array
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("FRAMECRYPT_NATIVE") == "0":
    pytest.skip("FRAMECRYPT_NATIVE=0: the pure-core run has no native path to compare",
                allow_module_level=True)

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from native_helpers import Pair, Payloads, Reply, first_difference, random_frame

from framecrypt.errors import AuthenticationFailed, MalformedFrame
from framecrypt.transports import wire
from framecrypt.workers import native, native_loop
from framecrypt.workers.engine import Engine, EngineConfig, reply_size
from framecrypt.workers.livekit import frame as lkframe
from framecrypt.workers.livekit import h26x, lkts
from framecrypt.workers.livekit.codecs import clear_prefix
from framecrypt.workers.livekit.kdf import Kdf

NATIVE: Any = native.NATIVE
IN_CI = os.environ.get("CI") == "true"
X86_64 = platform.machine().lower() in ("x86_64", "amd64")
BACKENDS = ("evp", "ipsec-mb")
BACKEND_ID = {"evp": 1, "ipsec-mb": 2}
FORMATS = ("livekit", "jitsi")
U32 = 0xFFFFFFFF
VECTORS = Path(__file__).parent / "vectors"

SANITIZED = NATIVE is not None and bool(NATIVE.info().get("sanitized"))
# frames sealed per format and codec (split over backends and IV schemes); the ASan/UBSan
# pass (.ci/sanitize, several times slower) checks memory safety on a quarter of them
SEAL_FRAMES = 25_000 if SANITIZED else 100_000


@pytest.fixture(autouse=True)
def _require_native() -> None:
    if NATIVE is None:
        why = native.info()["why"]
        if IN_CI:
            pytest.fail(f"framecrypt._native does not run in CI ({why})", pytrace=False)
        pytest.skip(f"framecrypt._native does not run: {why}")


def _ipsec_mb_usable() -> bool:
    if NATIVE.info()["ipsec_mb_available"]:
        return True
    if IN_CI and X86_64:
        pytest.fail("ipsec-mb is required on x86-64 in CI but not available", pytrace=False)
    return False


def usable_backends() -> list[str]:
    """The backends to run here: EVP always, ipsec-mb where available (in CI on x86-64:
    required)."""
    return ["evp", "ipsec-mb"] if _ipsec_mb_usable() else ["evp"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    if kind == "ipsec-mb" and not _ipsec_mb_usable():
        pytest.skip("ipsec-mb not available on this machine")
    return kind


def gcm(key: bytes, kind: str) -> Any:
    g = NATIVE.AesGcm(key, BACKEND_ID[kind])
    assert g.backend == kind
    return g


def outcome(call: Callable[..., Any], *args: Any) -> Any:
    """The result of ``call(*args)``, or the type of the exception it raised."""
    try:
        return call(*args)
    except Exception as e:
        return type(e)


# ======================================================================================
# 1. AesGcm: Wycheproof, and cryptography's AESGCM interface
# ======================================================================================


def _wycheproof_gcm() -> list[dict[str, Any]]:
    data = json.loads((VECTORS / "wycheproof" / "aes_gcm_test.json").read_text())
    return [t for g in data["testGroups"] if g["ivSize"] == 96 and g["tagSize"] == 128
            for t in g["tests"]]


GCM_VECTORS = _wycheproof_gcm()


def test_wycheproof_aes_gcm(backend: str) -> None:
    h = bytes.fromhex
    assert len(GCM_VECTORS) == 197
    seen: Counter[tuple[str, int]] = Counter()
    for t in GCM_VECTORS:
        key, iv, aad, msg = h(t["key"]), h(t["iv"]), h(t["aad"]), h(t["msg"])
        sealed = h(t["ct"]) + h(t["tag"])
        g = gcm(key, backend)
        seen[t["result"], len(key)] += 1
        what = f"tcId {t['tcId']}"
        if t["result"] == "valid":
            assert g.encrypt(iv, msg, aad) == sealed, what
            assert g.decrypt(iv, sealed, aad) == msg, what
            if not aad:
                assert g.encrypt(iv, msg, None) == sealed, what
                assert g.decrypt(iv, sealed, None) == msg, what
            buf = bytearray(len(sealed))
            assert g.encrypt_into(iv, msg, aad, buf) == len(sealed) and buf == sealed, what
            back = bytearray(len(msg))
            assert g.decrypt_into(iv, memoryview(sealed), memoryview(aad), back) == len(msg)
            assert back == msg, what
        else:
            assert t["result"] == "invalid"
            with pytest.raises(InvalidTag):
                g.decrypt(iv, sealed, aad)
            with pytest.raises(InvalidTag):
                g.decrypt_into(iv, sealed, aad, bytearray(max(len(sealed) - 16, 0)))
            with pytest.raises(InvalidTag):  # the reference agrees
                AESGCM(key).decrypt(iv, sealed, aad)
    # every key size, valid and invalid vectors
    assert {n for (_, n) in seen} == {16, 24, 32}
    assert seen["valid", 16] and seen["invalid", 16] and seen["valid", 32]


def _as(kind: int, b: bytes) -> bytes | bytearray | memoryview:
    if kind == 0:
        return b
    if kind == 1:
        return bytearray(b)
    big = b"\xee" * 3 + b + b"\xee" * 5  # a view into the middle of a larger buffer
    return memoryview(big)[3 : 3 + len(b)]


@settings(max_examples=150, deadline=None)
@given(key=st.sampled_from((16, 24, 32)).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
       nonce=st.binary(min_size=12, max_size=12),
       data=st.one_of(st.binary(max_size=300), st.binary(min_size=4090, max_size=4200)),
       aad=st.one_of(st.none(), st.binary(max_size=80)),
       kinds=st.tuples(*[st.integers(0, 2)] * 3), flip=st.integers(0, 1 << 20))
def test_aesgcm_matches_cryptography(key: bytes, nonce: bytes, data: bytes, aad: bytes | None,
                                     kinds: tuple[int, int, int], flip: int) -> None:
    ref = AESGCM(key)
    want = ref.encrypt(nonce, data, aad)
    a = None if aad is None else _as(kinds[2], aad)
    for kind in usable_backends():
        g = gcm(key, kind)
        assert g.encrypt(_as(kinds[0], nonce), _as(kinds[1], data), a) == want
        assert g.decrypt(nonce, _as(kinds[1], want), a) == data
        out = bytearray(len(want) + 7)
        assert g.encrypt_into(nonce, data, a, memoryview(out)[7:]) == len(want)
        assert out[7:] == want
        back = bytearray(len(data) + 3)
        assert g.decrypt_into(nonce, want, a, memoryview(back)[3:]) == len(data)
        assert back[3:] == data
        bad = bytearray(want)
        bad[flip % len(bad)] ^= 1 << (flip % 8)
        with pytest.raises(InvalidTag):
            g.decrypt(nonce, bytes(bad), a)
        with pytest.raises(InvalidTag):
            g.decrypt_into(nonce, bytes(bad), a, bytearray(len(data)))


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 255, 4095, 4096, 4097, 65_539, 1 << 20])
def test_aesgcm_sizes(backend: str, size: int) -> None:
    rng = random.Random(size)
    key, nonce, data, aad = rng.randbytes(16), rng.randbytes(12), rng.randbytes(size), b"hdr"
    want = AESGCM(key).encrypt(nonce, data, aad)
    g = gcm(key, backend)
    assert g.encrypt(nonce, data, aad) == want
    assert g.decrypt(nonce, want, aad) == data
    big_aad = rng.randbytes(size)  # a long AAD as well
    assert g.encrypt(nonce, b"x", big_aad) == AESGCM(key).encrypt(nonce, b"x", big_aad)


def test_aesgcm_edge_cases_match_cryptography(backend: str) -> None:
    key = bytes(range(1, 17))
    g, ref = gcm(key, backend), AESGCM(key)
    nonce = bytes(range(12))
    # empty data, None vs empty AAD, bytes/bytearray/memoryview inputs
    for data in (b"", b"a", bytes(100)):
        for aad in (None, b"", b"aad", bytearray(b"aad"), memoryview(b"xaadx")[1:4]):
            want = ref.encrypt(nonce, data, aad)
            assert g.encrypt(nonce, data, aad) == want
            assert g.encrypt(bytearray(nonce), bytearray(data), aad) == want
            assert g.encrypt(memoryview(nonce), memoryview(data), aad) == want
            assert g.decrypt(nonce, bytearray(want), aad) == data
    assert g.encrypt(nonce, b"", None) == ref.encrypt(nonce, b"", b"")
    assert g.decrypt(nonce, ref.encrypt(nonce, b"", None), b"") == b""
    # wrong output buffer size: ValueError (both)
    for n in (0, 18, 20, 100):
        assert outcome(lambda n=n: g.encrypt_into(nonce, b"abc", None, bytearray(n))) \
            is outcome(lambda n=n: ref.encrypt_into(nonce, b"abc", None, bytearray(n))) \
            is ValueError
    sealed = ref.encrypt(nonce, b"abcd", None)
    for n in (0, 3, 5, 20):
        assert outcome(lambda n=n: g.decrypt_into(nonce, sealed, None, bytearray(n))) \
            is outcome(lambda n=n: ref.decrypt_into(nonce, sealed, None, bytearray(n))) \
            is ValueError
    # ciphertext shorter than the tag: InvalidTag (both)
    for n in range(16):
        short = bytes(n)
        assert outcome(lambda s=short: g.decrypt(nonce, s, None)) is InvalidTag
        assert outcome(lambda s=short: ref.decrypt(nonce, s, None)) is InvalidTag
        assert outcome(lambda s=short: g.decrypt_into(nonce, s, None, bytearray(0))) \
            is outcome(lambda s=short: ref.decrypt_into(nonce, s, None, bytearray(0))) \
            is InvalidTag
    # exactly a tag, wrong: InvalidTag; right: empty plaintext
    assert outcome(lambda: g.decrypt(nonce, bytes(16), None)) is InvalidTag
    assert g.decrypt(nonce, ref.encrypt(nonce, b"", None), None) == b""
    # 24- and 32-byte keys; bad key lengths and types
    for n in (24, 32):
        k = bytes(range(n))
        assert gcm(k, backend).encrypt(nonce, b"data", b"a") == \
            AESGCM(k).encrypt(nonce, b"data", b"a")
        assert repr(gcm(k, backend)) == f"AesGcm(AES-{n * 8}, {backend})"
    for n in (0, 1, 8, 15, 17, 20, 31, 33, 48, 64):
        assert outcome(lambda n=n: NATIVE.AesGcm(bytes(n), BACKEND_ID[backend])) \
            is outcome(lambda n=n: AESGCM(bytes(n))) is ValueError
    for bad_key in ("k" * 16, None, 16):
        assert outcome(lambda k=bad_key: NATIVE.AesGcm(k, BACKEND_ID[backend])) \
            is outcome(lambda k=bad_key: AESGCM(k)) is TypeError
    # str/None where bytes go: TypeError (both)
    for args in ((nonce, "abc", None), (nonce, None, None), (nonce, b"a", "aad")):
        assert outcome(lambda a=args: g.encrypt(*a)) is outcome(lambda a=args: ref.encrypt(*a)) \
            is TypeError
    # not a 12-byte nonce: ValueError (documented: the native path takes 12-byte nonces
    # only; cryptography takes 8..128 bytes, and the callers keep it for others)
    for n in (0, 8, 11, 13, 16):
        assert outcome(lambda n=n: g.encrypt(bytes(n), b"a", None)) is ValueError
        assert outcome(lambda n=n: g.decrypt(bytes(n), bytes(20), None)) is ValueError
    # unknown backends
    for b in (-1, 3, 99):
        assert outcome(lambda b=b: NATIVE.AesGcm(key, b)) is ValueError


def test_aesgcm_keyword_arguments_like_cryptography(backend: str) -> None:
    """The ``Gcm`` protocol (workers/native.py) and cryptography name the parameters;
    a caller that passes them by keyword works with cryptography's AESGCM."""
    key, nonce = bytes(16), bytes(12)
    want = AESGCM(key).encrypt(nonce=nonce, data=b"abc", associated_data=None)
    assert outcome(lambda: gcm(key, backend).encrypt(
        nonce=nonce, data=b"abc", associated_data=None)) == want


def test_aesgcm_read_only_output_raises_like_cryptography(backend: str) -> None:
    """``encrypt_into``/``decrypt_into`` into a read-only buffer: cryptography raises
    TypeError; the native object must raise the same type (an ``except TypeError``
    written against cryptography must catch it)."""
    key, nonce = bytes(16), bytes(12)
    ref, g = AESGCM(key), gcm(key, backend)
    sealed = ref.encrypt(nonce, b"abc", None)
    assert outcome(lambda: ref.encrypt_into(nonce, b"abc", None, bytes(19))) is TypeError
    assert outcome(lambda: g.encrypt_into(nonce, b"abc", None, bytes(19))) is TypeError
    assert outcome(lambda: ref.decrypt_into(nonce, sealed, None, bytes(3))) is TypeError
    assert outcome(lambda: g.decrypt_into(nonce, sealed, None, bytes(3))) is TypeError


def test_aesgcm_repr_hides_the_key_and_pickling_is_refused(backend: str) -> None:
    key = bytes.fromhex("c0ffee00deadbeef5a5a5a5a0123abcd")
    g = gcm(key, backend)
    for text in (repr(g), str(g)):
        assert key.hex() not in text.lower() and "c0ffee" not in text.lower()
        assert repr(key) not in text and "\\x" not in text
        assert text == f"AesGcm(AES-128, {backend})"
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError):
            pickle.dumps(g, protocol=proto)
    with pytest.raises(TypeError):
        copy.copy(g)
    with pytest.raises(TypeError):
        copy.deepcopy(g)
    with pytest.raises(TypeError):  # not subclassable (a subclass could skip the key)
        type("Sub", (NATIVE.AesGcm,), {})


# ======================================================================================
# 2. H.26x helpers
# ======================================================================================

_ALPHABET = bytes([0] * 10 + [1, 1, 1, 2, 3, 3, 3, 0x65, 0x41, 0x01, 0x67, 0x68, 0x06, 0x09,
                              0x26, 0x02, 0x40, 0x42, 0x44, 0x4E, 0x2A, 0x20, 0xFF, 0x80, 0x04])
_CHUNKS = (b"\x00", b"\x00\x00\x01", b"\x00\x00\x00\x01", b"\x00\x00\x03", b"\x00\x00\x02",
           b"\x00\x00", b"\x03", b"\x01", b"\x65", b"\x41", b"\x67", b"\x68", b"\x06", b"\x26\x01",
           b"\x40\x01", b"\x02\x01", b"\x2a\x01", b"\x4e\x01", b"\xff", b"\x80")
_KNOWN: tuple[tuple[int, h26x.NaluCodec | None], ...] = ((0, None), (1, "h264"), (2, "h265"))


def h26x_mismatches(data: bytes | bytearray | memoryview) -> list[str]:
    """Where the five C helpers disagree with the reference on ``data``."""
    b = bytes(data)
    bad: list[str] = []
    for known, name in _KNOWN:
        c, p = NATIVE.h26x_clear_bytes(data, known), h26x.clear_bytes(b, name)
        if c != p:
            bad.append(f"clear_bytes(known={name}): C {c} vs {p}")
    pairs: tuple[tuple[str, Any, Any], ...] = (
        ("escape", NATIVE.h26x_escape, h26x.escape),
        ("unescape", NATIVE.h26x_unescape, h26x.unescape),
        ("normalize", NATIVE.h26x_normalize, h26x.normalize_start_codes),
        ("needs_unescape", NATIVE.h26x_needs_unescape, h26x.needs_unescape),
    )
    for what, c_fn, p_fn in pairs:
        c, p = c_fn(data), p_fn(b)
        if c != p or type(c) is not type(p):
            bad.append(f"{what}: C {c!r} vs {p!r}")
    return bad


h26x_bytes = st.one_of(
    st.lists(st.sampled_from(list(_ALPHABET)), max_size=300).map(bytes),
    st.lists(st.sampled_from(_CHUNKS), max_size=110).map(b"".join),
    st.binary(max_size=64),
)


@settings(max_examples=600, deadline=None)
@given(data=h26x_bytes, view=st.booleans())
def test_h26x_helpers_match_reference(data: bytes, view: bool) -> None:
    arg = memoryview(bytearray(data)) if view else data
    assert h26x_mismatches(arg) == [], data.hex()


def _bulk_inputs(rng: random.Random, count: int) -> list[bytes]:
    table = bytes(_ALPHABET[i % len(_ALPHABET)] for i in range(256))
    blob = rng.randbytes(1 << 22).translate(table)
    out: list[bytes] = []
    for j in range(count):
        n = rng.randint(0, 300)
        r = j % 10
        if r < 5:  # alphabet soup
            off = rng.randrange(len(blob) - n)
            out.append(blob[off : off + n])
        elif r < 8:  # the same, behind a start code (so the scan goes past the start)
            off = rng.randrange(len(blob) - n)
            out.append(rng.choice((b"\x00\x00\x01", b"\x00\x00\x00\x01")) + blob[off : off + n])
        elif r < 9:  # chunks: start codes and NAL headers
            out.append(b"".join(rng.choices(_CHUNKS, k=rng.randint(0, n // 2 + 1))))
        else:  # many short NAL units, maybe a slice far in (> 64 units: the C rescan)
            units = [b"\x00\x00\x01" + rng.choice((b"\x06", b"\x67", b"\x4e\x01", b"\x00"))
                     for _ in range(rng.randint(0, 90))]
            if rng.random() < 0.7:
                units.insert(rng.randint(0, len(units)), b"\x00\x00\x01" +
                             rng.choice((b"\x65", b"\x41", b"\x26\x01", b"\x02\x01")))
            out.append(b"".join(units)[:600])
    return out


def test_h26x_helpers_bulk() -> None:
    """≥ 100,000 seeded inputs, each through all five helpers, C against the reference."""
    rng = random.Random(0x26)
    inputs = _bulk_inputs(rng, 100_000)
    c_clear, c_esc, c_unesc = NATIVE.h26x_clear_bytes, NATIVE.h26x_escape, NATIVE.h26x_unescape
    c_norm, c_needs = NATIVE.h26x_normalize, NATIVE.h26x_needs_unescape
    stats: Counter[str] = Counter()
    bad: list[str] = []
    for j, data in enumerate(inputs):
        want = (h26x.clear_bytes(data, None), h26x.clear_bytes(data, "h264"),
                h26x.clear_bytes(data, "h265"), h26x.escape(data), h26x.unescape(data),
                h26x.normalize_start_codes(data), h26x.needs_unescape(data))
        got = (c_clear(data, 0), c_clear(data, 1), c_clear(data, 2), c_esc(data), c_unesc(data),
               c_norm(data), c_needs(data))
        if got != want:
            stats["mismatch"] += 1
            if len(bad) < 10:
                bad.append(f"{data.hex()}: C {got} vs {want}")
        # not vacuous: the interesting cases occur often
        stats["slice"] += want[0] is not None
        stats["escaped"] += want[3] != data
        stats["unescaped"] += want[4] != data
        stats["normalised"] += want[5] != data
        stats["needs"] += want[6]
        if j % 10 == 9 and want[1] is not None:
            stats["over64"] += len(h26x.nalu_indices(data)) > 64
    assert not bad, f"{stats['mismatch']} mismatches, e.g. {bad}"
    for what in ("slice", "escaped", "unescaped", "normalised", "needs"):
        assert stats[what] >= 5_000, stats
    assert stats["over64"] >= 500, stats


def test_h26x_clear_bytes_past_64_units() -> None:
    """The C scan keeps 64 NAL offsets on the stack and rescans beyond: slices at unit
    63, 64, 65 and 200, with and without other slices of the other codec before."""
    for at in (0, 62, 63, 64, 65, 200):
        for sc in (b"\x00\x00\x01", b"\x00\x00\x00\x01"):
            for slice_nal in (b"\x65\x88", b"\x26\x01\xaf", b"\x02\x01\xd0"):
                units = [sc + b"\x06\x05"] * at + [sc + slice_nal + b"\x11" * 3]
                units += [sc + b"\x41\x9a"] * 3
                data = b"".join(units)
                assert h26x_mismatches(data) == [], (at, sc, slice_nal)
                assert NATIVE.h26x_clear_bytes(data, 0) is not None
    no_slice = b"\x00\x00\x01\x67" * 100  # SPS: a slice neither in H.264 nor in H.265
    assert NATIVE.h26x_clear_bytes(no_slice, 1) is None and h26x_mismatches(no_slice) == []


# ======================================================================================
# 3. Sealing: run_packed on the native path against the pure engine
# ======================================================================================

MATERIAL = bytes(range(32))


def _flags(rng: random.Random, n: int) -> bytes:
    # the key-frame bit at random; now and then other bits set (ignored by both)
    return bytes(rng.getrandbits(1) | (rng.getrandbits(8) & 0xFE if rng.random() < 0.02 else 0)
                 for _ in range(n))


def _diff_at(a: Reply, b: Reply, n: int) -> int:
    for k in range(n):
        if a.res[12 * k : 12 * k + 12] != b.res[12 * k : 12 * k + 12] or \
                a.outcome(k) != b.outcome(k):
            return k
    return -1


@pytest.mark.parametrize("codec", wire.CODECS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_seal_matches_pure(fmt: str, codec: str) -> None:
    """≥ 100,000 random frames per format and codec (split over the backends, the IV
    schemes "counter" and the format's own, epoch -1 and fixed; reply buffers of
    ``reply_size``, the engine's own ``output_buffer``, and too small ones) through both
    engines: identical result records, outputs and spilled outputs."""
    rng = random.Random(f"seal-{fmt}-{codec}")
    pay = Payloads(rng)
    combos = [(kind, iv) for kind in usable_backends() for iv in ("counter", "livekit")]
    per = math.ceil(SEAL_FRAMES / len(combos))
    cid = wire.CODEC_ID[codec]
    stats: Counter[Any] = Counter()
    problems: list[str] = []
    for kind, iv in combos:
        pair = Pair(EngineConfig(format=fmt, iv=iv), kind)
        pair.control("keyset", [0, "alice", 3, MATERIAL, None, rng.choice((0, 0, 2)), True])
        counter = rng.randrange(1 << 20)
        done = batch = 0
        while done < per:
            n = min(rng.randint(500, 2000), per - done)
            frames = [random_frame(rng, pay, codec) for _ in range(n)]
            inp = b"".join(frames)
            lengths = [len(f) for f in frames]
            epoch = -1 if batch % 2 == 0 else rng.choice((0, U32, rng.getrandbits(32)))
            counter0 = counter
            if batch == 3:  # the end of the counter space (counter: half exhausted)
                counter0 = U32 + 1 - n // 2 if iv == "counter" else (1 << 64) - n
            counter += n
            size = reply_size(wire.OP_ENCRYPT, n, len(inp))  # (the default)
            out_size: int | None = None
            if batch % 5 == 2:  # a reply buffer too small: the rest spills
                out_size = rng.randint(0, size)
            a, b = pair.run_both(wire.OP_ENCRYPT, 0, counter0, epoch, lengths, bytes([cid]) * n,
                                 _flags(rng, n), [rng.getrandbits(32) for _ in range(n)],
                                 [rng.getrandbits(32) for _ in range(n)], inp, out_size,
                                 production=batch % 4 == 1)
            k = _diff_at(a, b, n)
            if k >= 0 or a != b:
                stats["batches differing"] += 1
                if len(problems) < 8:
                    problems.append(
                        f"{kind} iv={iv} epoch={epoch} counter0={counter0} frame {k} "
                        f"({lengths[k] if k >= 0 else '-'} bytes "
                        f"{frames[k][:12].hex() if k >= 0 else ''}): {first_difference(a, b, n)}")
            for s in a.statuses():
                stats[s] += 1
            stats["spilled"] += len(a.spill)
            done += n
            batch += 1
            if batch % 9 == 0:  # key changes between batches
                if rng.random() < 0.5:
                    cryptor = pair.nat.participants[0].cryptor
                    assert cryptor is not None
                    ring = cryptor.ring
                    pair.control("ratchet", [0, ring.current_index])
                else:
                    pair.control("keyset", [0, "alice", rng.randrange(16), rng.randbytes(32),
                                            None, 0, True])
        stats["native"] += pair.native_frames
        stats["frames"] += done
    assert stats["frames"] >= SEAL_FRAMES
    assert not problems, f"{stats['batches differing']} batches differ:\n" + "\n".join(problems)
    # not vacuous: most frames sealed, by C; some spilled; counters ran out where they do
    ok = stats[wire.ST_OK] + stats[wire.ST_INLINE]
    assert ok >= 0.9 * stats["frames"], stats
    assert stats["native"] >= 0.85 * (stats["frames"] - stats["spilled"]), stats
    assert stats["spilled"] > 0 and stats[wire.ST_INLINE] > 0, stats
    assert stats[wire.ST_COUNTER] > 0, stats


def test_seal_empty_frames_pass_through_on_both_paths() -> None:
    """Empty (DTX) frames pass through unsealed, as livekit-client does (frame.py:
    ``seal_trailer``, ``seal_into``). Every codec, both IV schemes: the native engine
    and the pure engine must give the same, a zero-length output."""
    for iv in ("counter", "livekit"):
        pair = Pair(EngineConfig(format="livekit", iv=iv))
        pair.control("keyset", [0, "alice", 0, MATERIAL, None, 0, True])
        n = len(wire.CODECS)
        a, b = pair.run_both(wire.OP_ENCRYPT, 0, 0, -1, [0] * n, bytes(range(n)), bytes(n),
                             [1] * n, [2] * n, b"")
        lens_a = [ln for _, _, ln in wire.RES.iter_unpack(a.res)]
        lens_b = [ln for _, _, ln in wire.RES.iter_unpack(b.res)]
        by_codec = {c: (x, y) for c, x, y in zip(wire.CODECS, lens_a, lens_b, strict=True)}
        assert lens_a == lens_b == [0] * n, f"iv={iv}: (native, pure) output lengths {by_codec}"


@pytest.mark.parametrize("fmt", FORMATS)
def test_seal_odd_columns_match_pure(fmt: str) -> None:
    """Mixed codecs in one batch, unknown codec ids, a participant without a key, one
    without a current key, counters at the edge."""
    rng = random.Random(f"odd-{fmt}")
    pay = Payloads(rng)
    pair = Pair(EngineConfig(format=fmt))
    pair.control("keyset", [0, "alice", 1, MATERIAL, None, 0, True])
    pair.control("keyset", [2, "bob", 4, MATERIAL, None, 0, False])  # current index 0: none
    seen: Counter[int] = Counter()
    problems: list[str] = []
    for pidx in (0, 1, 2):
        for counter0 in (0, U32 - 5, U32 + 1):
            n = 300
            codecs = bytes(rng.choice((0, 1, 2, 3, 4, 5, 5, 6, 7, 200, 255)) for _ in range(n))
            frames = [random_frame(rng, pay, wire.CODECS[c] if c < 6 else "vp8") for c in codecs]
            a, b = pair.run_both(wire.OP_ENCRYPT, pidx, counter0, rng.choice((-1, 7)),
                                 [len(f) for f in frames], codecs, _flags(rng, n),
                                 [rng.getrandbits(32) for _ in range(n)],
                                 [rng.getrandbits(32) for _ in range(n)], b"".join(frames))
            k = _diff_at(a, b, n)
            if k >= 0:
                problems.append(f"pidx {pidx} counter0 {counter0}: codec id {codecs[k]}, "
                                f"{len(frames[k])}-byte frame: {first_difference(a, b, n)}")
            seen.update(a.statuses())
    assert not problems, "\n".join(problems)
    for status in (wire.ST_OK, wire.ST_MALFORMED, wire.ST_UNKNOWN_KEY, wire.ST_COUNTER):
        assert seen[status] > 0, seen
    pair.check_same_state(0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_seal_empty_frame_of_unknown_codec_is_malformed(fmt: str) -> None:
    """An unknown codec id is MalformedFrame ("bad frame fields") on the reference's
    full path, whatever the frame; the native loop must not pass an empty frame of an
    unknown codec id through as sealed."""
    pair = Pair(EngineConfig(format=fmt))
    pair.control("keyset", [0, "alice", 0, MATERIAL, None, 0, True])
    for codec in (6, 7, 255):
        a, b = pair.run_both(wire.OP_ENCRYPT, 0, 0, -1, [0], bytes([codec]), b"\0", [1], [2],
                             b"")
        assert b.statuses() == [wire.ST_MALFORMED]
        assert a.statuses() == b.statuses(), f"codec id {codec}: native {a.res.hex()}"


# ======================================================================================
# 4. Opening: sealed and mutated frames, stateful and stateless
# ======================================================================================


def _seal_with(sender: Engine, pidx: int, frames: list[bytes], codecs: bytes, flags: bytes,
               rng: random.Random) -> list[bytes | int]:
    """Seal with the sender engine (any path: its outputs are checked above); each
    outcome is the sealed frame or the error status."""
    n = len(frames)
    inp = b"".join(frames)
    out = bytearray(reply_size(wire.OP_ENCRYPT, n, len(inp)))
    res, spill, used = sender.run_packed(
        wire.OP_ENCRYPT, pidx, rng.randrange(1 << 31), rng.choice((-1, rng.getrandbits(32))),
        array("I", [len(f) for f in frames]), codecs, flags,
        array("I", [rng.getrandbits(32) for _ in range(n)]),
        array("I", [rng.getrandbits(32) for _ in range(n)]), memoryview(inp), memoryview(out))
    r = Reply(bytes(res), bytes(out[:used]), list(spill), used)
    return [r.outcome(k) for k in range(n)]


def _flip(rng: random.Random, f: bytes, lo: int, hi: int) -> bytes:
    if hi <= lo:
        return f
    b = bytearray(f)
    b[rng.randrange(lo, hi)] ^= 1 << rng.randrange(8)
    return bytes(b)


MUTATIONS = ("header", "ciphertext", "tag", "iv", "truncate", "kid-empty", "kid-other",
             "kid-alias", "iv-length", "lkts", "inject-000003", "keyframe-flag", "codec",
             "forged", "empty", "twice")


def mutate(rng: random.Random, kind: str, f: bytes, codec: int, flag: int, jitsi: bool
           ) -> tuple[bytes, int, int]:
    """(frame, codec id, flags) after mutation ``kind``."""
    name = wire.CODECS[codec]
    n = lkframe._fixed_clear(name, bool(flag & 1), jitsi)
    if n is None:
        n = clear_prefix(name, bool(flag & 1), f)[0]
    size = len(f)
    if kind == "header":
        return _flip(rng, f, 0, min(n, size)), codec, flag
    if kind == "ciphertext":
        return _flip(rng, f, min(n, size), max(size - 30, 0)), codec, flag
    if kind == "tag":
        return _flip(rng, f, max(size - 30, 0), max(size - 14, 0)), codec, flag
    if kind == "iv":
        return _flip(rng, f, max(size - 14, 0), max(size - 2, 0)), codec, flag
    if kind == "truncate" and size:
        return f[: rng.randrange(size)] if rng.random() < 0.5 else f[:-rng.randint(1, 3)], \
            codec, flag
    if kind in ("kid-empty", "kid-other", "kid-alias") and size:
        kid = {"kid-empty": rng.choice((5, 7, 200)), "kid-other": f[-1] ^ 1,
               "kid-alias": f[-1] + 16 * rng.randint(1, 15)}[kind]
        return f[:-1] + bytes([kid % 256]), codec, flag
    if kind == "iv-length" and size >= 2:
        return f[:-2] + bytes([rng.choice((0, 11, 13, 16, 0xFF))]) + f[-1:], codec, flag
    if kind == "lkts":
        meta = lkts.FrameMetadata(rng.getrandbits(40), rng.getrandbits(20),
                                  rng.randbytes(rng.randint(0, 6)) or None)
        return lkts.append(f, meta), codec, flag
    if kind == "inject-000003":
        at = rng.randrange(size + 1)
        return f[:at] + b"\x00\x00\x03" + f[at:], codec, flag
    if kind == "keyframe-flag":
        return f, codec, flag ^ 1
    if kind == "codec":
        return f, rng.choice([c for c in range(6) if c != codec] + [6, 255]), flag
    if kind == "forged":
        return rng.randbytes(rng.randint(0, 300)) + bytes([12, rng.choice((0, 1, 2))]), codec, flag
    if kind == "empty":
        return b"", codec, flag
    return f, codec, flag  # "twice", and the cases above with nothing to change


class OpenScenario:
    """A sender engine, a receiver pair, and rounds of sealed + mutated frames."""

    def __init__(self, config: EngineConfig, kind: str, seed: str) -> None:
        self.rng = random.Random(seed)
        self.pay = Payloads(self.rng, 1 << 18)
        self.jitsi = config.format == "jitsi"
        self.sender = Engine(config)
        self.rx = Pair(config, kind)
        self.stats: Counter[Any] = Counter()
        self.materials = [self.rng.randbytes(32) for _ in range(4)]
        for pidx in (0, 1):
            for index, mat in enumerate(self.materials[:3]):
                args = [pidx, f"p{pidx}", index, mat, None, 0, index == 0]
                self.sender.control("keyset", args)
                self.rx.control("keyset", args)
            # a key the receivers never get
            self.sender.control("keyset", [pidx, f"p{pidx}", 5, self.materials[3], None, 0, False])

    def use_key(self, pidx: int, index: int) -> None:
        cryptor = self.sender.participants[pidx].cryptor
        assert cryptor is not None
        cryptor.ring.current_index = index

    def batch(self, pidx: int, n: int, mutate_rate: float) -> tuple[list[bytes], bytes, bytes,
                                                                    list[str]]:
        rng = self.rng
        codecs = bytes(rng.randrange(6) for _ in range(n))
        flags = bytes(rng.getrandbits(1) for _ in range(n))
        frames = [random_frame(rng, self.pay, wire.CODECS[c]) for c in codecs]
        sealed = _seal_with(self.sender, pidx, frames, codecs, flags, rng)
        out_f: list[bytes] = []
        out_c, out_fl = bytearray(), bytearray()
        kinds: list[str] = []
        for f, c, fl in zip(sealed, codecs, flags, strict=True):
            if isinstance(f, int):  # (a frame shorter than its clear header)
                continue
            kind = rng.choice(MUTATIONS) if rng.random() < mutate_rate else "none"
            g, c2, fl2 = mutate(rng, kind, f, c, fl, self.jitsi)
            out_f.append(g)
            out_c.append(c2)
            out_fl.append(fl2)
            kinds.append(kind)
            if kind == "twice":
                out_f.append(g)
                out_c.append(c2)
                out_fl.append(fl2)
                kinds.append(kind)
        return out_f, bytes(out_c), bytes(out_fl), kinds

    def open(self, pidx: int, frames: list[bytes], codecs: bytes, flags: bytes,
             kinds: list[str], production: bool = False) -> list[int]:
        rng = self.rng
        n = len(frames)
        args = (wire.OP_DECRYPT, pidx, 0, -1, [len(f) for f in frames], codecs, flags,
                [rng.getrandbits(32) for _ in range(n)], [rng.getrandbits(32) for _ in range(n)],
                b"".join(frames))
        # the broker's inline pass first: state-free, must change nothing
        before = (self.rx.state(pidx), [list(e) for e in self.rx.nat.events])
        r = self.rx.run(*args, stateless=True, production=production)
        after = (self.rx.state(pidx), [list(e) for e in self.rx.nat.events])
        assert before == after, "the stateless pass changed key state or events"
        self.rx.check_same_state(pidx)
        self.stats["stateless ok"] += r.statuses().count(wire.ST_OK)
        self.stats["stateless retry"] += r.statuses().count(wire.ST_RETRY)
        r = self.rx.run(*args, production=production)
        self.rx.check_same_state(pidx)
        statuses = r.statuses()
        for kind, s in zip(kinds, statuses, strict=True):
            self.stats[kind, s == wire.ST_OK] += 1
            self.stats[s] += 1
        return statuses


@pytest.mark.parametrize("iv", ["counter", "livekit"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_open_matches_pure(fmt: str, iv: str, backend: str) -> None:
    sc = OpenScenario(EngineConfig(format=fmt, iv=iv), backend, f"open-{fmt}-{iv}-{backend}")
    rng = sc.rng
    removed = False
    for rnd in range(40):
        pidx = 1 if rnd % 4 == 3 else 0
        sc.use_key(pidx, rng.choice((0, 0, 0, 1, 2, 5)))
        if rnd % 5 == 2:  # the sender ratchets: the receivers' full path ratchets after it
            sc.sender.control("ratchet", [pidx, 0])
            sc.use_key(pidx, 0)
        if rnd == 33:  # the receivers are told of a ratchet (as a ratchet request does)
            sc.rx.control("ratchet", [0, 1])
            sc.sender.control("ratchet", [0, 1])
        if rnd == 28:  # participant 1 leaves: its frames are of no one now
            sc.rx.control("remove", [1])
            removed = True
        frames, codecs, flags, kinds = sc.batch(pidx, rng.randint(150, 400), 0.35)
        statuses = sc.open(pidx, frames, codecs, flags, kinds, production=rnd % 2 == 1)
        if removed and pidx == 1:  # (a bad codec id is MalformedFrame first)
            assert set(statuses) <= {wire.ST_UNKNOWN_KEY, wire.ST_MALFORMED}, statuses
            sc.stats["removed"] += statuses.count(wire.ST_UNKNOWN_KEY)
    st_ = sc.stats
    # not vacuous: genuine frames opened, mostly in C; every error kind came up;
    # mutations fail; the receivers ratcheted on their own
    assert st_[wire.ST_OK] > 2000 and sc.rx.native_frames > 0.5 * st_[wire.ST_OK], st_
    for s in (wire.ST_AUTH, wire.ST_MALFORMED, wire.ST_UNKNOWN_KEY):
        assert st_[s] > 0, (s, st_)
    for kind in ("ciphertext", "tag", "iv", "iv-length", "kid-empty", "forged"):
        assert st_[kind, False] > 0 and st_[kind, False] >= 3 * st_[kind, True], (kind, st_)
    assert st_["stateless ok"] > 0 and st_["stateless retry"] > 0, st_
    assert st_["removed"] > 0
    assert any(e[0] == "ratcheted" for e in sc.rx.ref.events), "no ratchet on decrypt"
    if fmt == "livekit":
        assert st_["lkts", True] > 0, st_  # LKTS trailers are stripped, the frame opens


def test_failure_tolerance_agrees_frame_by_frame(backend: str) -> None:
    """Forged frames push key index 0 past the tolerance (KeyInvalidated), a genuine
    frame still opens and clears the mark, a ratcheted one ratchets; one frame per call
    and the same frames as one batch, stateless and stateful."""
    cfg = EngineConfig(failure_tolerance=3, ratchet_window=3)
    rng = random.Random(13)
    seen: Counter[int] = Counter()
    for per_call in (True, False):
        sender = Engine(cfg)
        rx = Pair(cfg, backend)
        sender.control("keyset", [0, "a", 0, MATERIAL, None, 0, True])
        rx.control("keyset", [0, "a", 0, MATERIAL, None, 0, True])
        rx.control("keyset", [0, "a", 1, MATERIAL[::-1], None, 0, False])

        def genuine(sender: Engine = sender) -> bytes:
            # a VP8 delta frame: P bit set, as the flag says (receivers read the bit)
            data = bytes([rng.getrandbits(8) | 1]) + rng.randbytes(rng.randint(19, 399))
            f = _seal_with(sender, 0, [data], b"\x00", b"\x00", rng)[0]
            assert isinstance(f, bytes)
            return f

        def forged(kid: int = 0) -> bytes:
            return rng.randbytes(rng.randint(40, 400)) + bytes([12, kid])

        # tolerance 3: four failures mark index 0 invalid, later forged frames are
        # KeyInvalidated; a genuine frame opens and clears the mark
        seq = [genuine(), *[forged() for _ in range(6)], genuine(), *[forged() for _ in range(5)],
               forged(1), forged(1), genuine()]
        sender.control("ratchet", [0, 0])  # the next genuine frames: ratchet on decrypt
        seq += [genuine(), *[forged() for _ in range(4)], genuine(), forged(), genuine()]
        batches = [[f] for f in seq] if per_call else [seq]
        for batch in batches:
            n = len(batch)
            args = (wire.OP_DECRYPT, 0, 0, -1, [len(f) for f in batch], bytes(n), bytes(n),
                    [0] * n, [0] * n, b"".join(batch))
            rx.run(*args, stateless=True)
            rx.check_same_state(0)
            seen.update(rx.run(*args).statuses())
            rx.check_same_state(0)
        kinds = [e[0] for e in rx.ref.events]
        assert "KeyMarkedInvalid" in kinds and "ratcheted" in kinds, kinds
    assert seen[wire.ST_KEY_INVALID] > 0 and seen[wire.ST_AUTH] > 0, seen
    assert seen[wire.ST_OK] == 2 * 6, seen


def test_sif_trailer_config_matches_pure(backend: str) -> None:
    """With a SIF trailer configured the C loop takes no frame; server-injected frames
    that are not a known blank are dropped; both engines agree."""
    cfg = EngineConfig(sif_trailer=b"SIF!")
    sc = OpenScenario(cfg, backend, "sif")
    frames, codecs, flags, kinds = sc.batch(0, 200, 0.2)
    for j in range(0, len(frames), 7):
        frames[j] = sc.rng.randbytes(sc.rng.randint(0, 90)) + b"SIF!"
        kinds[j] = "sif"
    sc.open(0, frames, codecs, flags, kinds)
    assert sc.stats[wire.ST_DROPPED] > 0 and sc.stats[wire.ST_OK] > 0, sc.stats
    assert sc.rx.native_frames == 0


def test_rejoined_participant_does_not_open_with_the_old_key(backend: str) -> None:
    """A participant removed and set up again at the same index with a new key: frames
    sealed under its old key must not open (the pure engine: AuthenticationFailed). The
    native loop caches each participant's key table by the key ring's ``version``, and
    a new participant's ring counts from 0 again, so the old table is taken for the
    new ring when the versions meet (keyset → version 2 both times)."""
    sender = Engine(EngineConfig())
    rx = Pair(EngineConfig(), backend)
    old, new = b"old key material" * 2, b"new key material" * 2
    sender.control("keyset", [0, "a", 0, old, None, 0, True])
    rx.control("keyset", [0, "a", 0, old, None, 0, True])
    rng = random.Random(5)
    frames = [f for f in _seal_with(sender, 0, [b"frame of the old key " * 3] * 4, b"\x01" * 4,
                                    bytes(4), rng) if isinstance(f, bytes)]
    n = len(frames)
    assert n == 4
    args = (wire.OP_DECRYPT, 0, 0, -1, [len(f) for f in frames], b"\x01" * n, bytes(n), [0] * n,
            [0] * n, b"".join(frames))
    assert rx.run(*args).statuses() == [wire.ST_OK] * n  # opens while the key is held
    rx.control("remove", [0])
    rx.control("keyset", [0, "a", 0, new, None, 0, True])
    nat, ref = rx.run_both(*args)
    assert ref.statuses() == [wire.ST_AUTH] * n
    assert nat.statuses() == ref.statuses(), (
        f"native opened frames of the removed participant's old key: {nat.statuses()}")


# ======================================================================================
# 5. Hostile direct calls of seal_run / open_run
# ======================================================================================

GUARD = 1 << 16
PATTERN = 0xA5


class Guarded:
    """A writable view of ``size`` bytes at the head of a larger buffer whose tail is a
    pattern: a write past the view lands in the tail (not in foreign memory)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.buf = bytearray(size) + bytearray([PATTERN]) * GUARD
        self.view = memoryview(self.buf)[:size]

    def intact(self) -> bool:
        return self.buf[self.size :] == bytearray([PATTERN]) * GUARD

    def head(self) -> bytes:
        return bytes(self.buf[: self.size])


def _rules(jitsi: bool = False) -> bytes:
    return bytes(native_loop.rules(jitsi))


def _seal_args(key: Any, lengths: list[int], inp: bytes, out: Any, res: Any, *, k: int = 0,
               i: int = 0, o: int = 0, epoch: int = -1, codec: int = 1, kid: int = 0,
               scheme: int = 0, counter0: int = 0) -> list[Any]:
    n = len(lengths)
    return [key, kid, _rules(), scheme, counter0, epoch, array("I", lengths), bytes([codec]) * n,
            bytes(n), array("I", [7] * n), array("I", [9] * n), k, inp, i, out, o, res]


def _open_args(keys: Any, lengths: list[int], inp: bytes, out: Any, res: Any, *, k: int = 0,
               i: int = 0, o: int = 0, codec: int = 1) -> list[Any]:
    n = len(lengths)
    return [keys, _rules(), array("I", lengths), bytes([codec]) * n, bytes(n), k, inp, i, out, o,
            res]


def _sealed_vp9(key: Any, sizes: list[int]) -> list[bytes]:
    """VP9 frames (no clear bytes) sealed by the C, key index 0."""
    return [NATIVE.lk_seal(key, bytes([s % 251]) * s, 0, 3, bytes(12) + b"\x0c\x00")
            for s in sizes]


ALLOWED = (TypeError, ValueError, OverflowError, BufferError)


def test_hostile_wrong_item_sizes_are_type_errors() -> None:
    key = NATIVE.AesGcm(bytes(16))
    keys = (key,) + (None,) * 255
    out, res = bytearray(100), bytearray(24)
    good = _seal_args(key, [10, 5], bytes(15), out, res)
    # (argument index, wrong column): 4-byte columns given 1/2/8-byte items and back
    wrong: dict[int, list[Any]] = {
        6: [bytes(8), array("H", [1, 2]), array("Q", [1, 2])],
        7: [array("I", [1, 1])], 8: [array("H", [0, 0])],
        9: [bytes(8), array("d", [1.0, 2.0])], 10: [bytes(8), array("h", [1, 2, 3, 4])],
        12: [array("I", [0] * 4)], 14: [array("I", [0] * 25)], 16: [array("I", [0] * 6)]}
    for at, cols in wrong.items():
        for col in cols:
            args = list(good)
            args[at] = col
            with pytest.raises(TypeError):
                NATIVE.seal_run(*args)
    sealed = _sealed_vp9(key, [10])[0]
    good_o = _open_args(keys, [len(sealed)], sealed, bytearray(64), bytearray(12))
    wrong_o: dict[int, list[Any]] = {
        2: [bytes(4), array("H", [40, 0])], 3: [array("I", [1])], 4: [array("I", [0])],
        6: [array("I", [0] * 10)], 8: [array("I", [0] * 16)], 10: [array("I", [0] * 3)]}
    for at, cols in wrong_o.items():
        for col in cols:
            args = list(good_o)
            args[at] = col
            with pytest.raises(TypeError):
                NATIVE.open_run(*args)
    # the arguments around the columns
    for args in ([*good[:16]], [*good, None]):
        with pytest.raises(TypeError):
            NATIVE.seal_run(*args)
    bad_args: list[tuple[int, Any]] = [(0, b"key"), (2, b"short"), (2, bytearray(512)),
                                       (6, None), (14, [0] * 9)]
    for at, bad in bad_args:
        args = list(good)
        args[at] = bad
        with pytest.raises(TypeError):
            NATIVE.seal_run(*args)
    bad_args = [(0, keys[:255]), (0, list(keys)), (1, b"x" * 511), (6, "text")]
    for at, bad in bad_args:
        args = list(good_o)
        args[at] = bad
        with pytest.raises(TypeError):
            NATIVE.open_run(*args)
    assert bytes(out) == bytes(100) and bytes(res) == bytes(24)  # nothing written


def test_hostile_scalars_raise() -> None:
    key = NATIVE.AesGcm(bytes(16))
    keys = (key,) + (None,) * 255
    for field, value in (("k", -1), ("i", -1), ("o", -1), ("k", 1 << 70), ("o", 1 << 64),
                         ("kid", -1), ("kid", 256), ("scheme", 3), ("scheme", -1),
                         ("counter0", -1), ("counter0", 1 << 64), ("epoch", 1 << 63)):
        out, res = Guarded(100), Guarded(24)
        args = _seal_args(key, [10, 5], bytes(15), out.view, res.view, **{field: value})
        with pytest.raises(ALLOWED):
            NATIVE.seal_run(*args)
        assert out.intact() and res.intact() and out.head() == bytes(100), field
    for field, value in (("k", -1), ("i", -5), ("o", -1), ("i", 1 << 64)):
        out, res = Guarded(100), Guarded(24)
        with pytest.raises(ALLOWED):
            NATIVE.open_run(*_open_args(keys, [40], bytes(40), out.view, res.view,
                                        **{field: value}))
        assert out.intact() and res.intact(), field
    with pytest.raises(BufferError):  # a read-only reply buffer
        NATIVE.seal_run(*_seal_args(key, [1], b"x", bytes(64), bytearray(12)))
    with pytest.raises(BufferError):  # a non-contiguous column
        NATIVE.seal_run(*_seal_args(key, [2], memoryview(b"x_y_")[::2],  # type: ignore[arg-type]
                                    bytearray(64), bytearray(24)))


def _run_problem(result: Any, count: int, k0: int, out: Guarded, res: Guarded,
                 inp_len: int, o0: int = 0) -> str | None:
    """A run's result must be an exception or a stop index, and never a write out of
    bounds; returns what is wrong, or None."""
    if not out.intact():
        return f"wrote past the {out.size}-byte out buffer (returned {result})"
    if not res.intact():
        return f"wrote past the {res.size}-byte res buffer (returned {result})"
    if isinstance(result, type):
        return None if issubclass(result, ALLOWED) else f"raised {result.__name__}"
    k, i, o = result
    if k < k0:
        return f"went back to frame {k}"
    if k > k0 and not (k <= count and i <= inp_len):
        return f"claims frames handled past the columns or the input: {result}"
    if o > o0 and o > out.size:
        return f"claims output written past the {out.size}-byte out buffer: {result}"
    return None


def test_hostile_lengths_and_buffers_stop_in_bounds() -> None:
    key = NATIVE.AesGcm(bytes(16))
    keys = (key,) + (None,) * 255
    problems: list[str] = []
    cases: list[tuple[str, list[int], int, int, int, dict[str, int], int]] = [
        # (what, lengths, input size, out size, res size, k/i/o, frames handled)
        ("lengths past the input", [10, 10**6], 20, 200, 24, {}, 1),
        ("a length of 2**32-1", [U32, 5], 20, 200, 24, {}, 0),
        ("res one record short", [5, 5, 5], 15, 200, 24, {}, 2),
        ("res empty", [5], 5, 200, 0, {}, 0),
        ("out too small", [10], 10, 39, 12, {}, 0),
        ("out exactly enough", [10], 10, 40, 12, {}, 1),
        ("k beyond the columns", [5, 5], 10, 200, 24, {"k": 5}, 5),
        ("i beyond the input", [5, 5], 10, 200, 24, {"i": 11}, 0),
        ("i at the end, empty frame", [0], 10, 200, 12, {"i": 10}, 1),
        ("o at the end of out", [10], 10, 100, 12, {"o": 100}, 0),
        ("o beyond the end of out", [10], 10, 100, 12, {"o": 140}, 0),
        ("o far beyond the end of out", [10], 10, 100, 12, {"o": 5000}, 0),
    ]
    for what, lengths, insize, outsize, ressize, pos, want in cases:
        inp = bytes(j % 251 for j in range(insize))
        out, res = Guarded(outsize), Guarded(ressize)
        got = outcome(NATIVE.seal_run, *_seal_args(key, lengths, inp, out.view, res.view, **pos))
        k0 = pos.get("k", 0)
        bad = _run_problem(got, len(lengths), k0, out, res, insize, pos.get("o", 0))
        if bad is None and (isinstance(got, type) or got[0] != max(want, k0)):
            bad = f"returned {got}, expected a stop at {max(want, k0)}"
        if bad:
            problems.append(f"seal_run, {what} ({pos or 'k=i=o=0'}): {bad}")
    # opening: the same, with sealed frames
    sealed = _sealed_vp9(key, [10, 20, 30, 5])
    blob = b"".join(sealed)
    lens = [len(x) for x in sealed]
    ocases: list[tuple[str, list[int], int, int, dict[str, int], int]] = [
        ("all open", lens, 200, 48, {}, 4),
        ("lengths past the input", [*lens[:3], 10**6], 200, 48, {}, 3),
        ("out too small for the first", lens, 9, 48, {}, 0),
        ("res short", lens, 200, 12, {}, 1),
        ("k beyond", lens, 200, 48, {"k": 9}, 9),
        ("i beyond", lens, 200, 48, {"i": len(blob) + 1}, 0),
        ("o at the end of out", lens, 50, 48, {"o": 50}, 0),
        ("o beyond the end of out", lens, 50, 48, {"o": 90}, 0),
    ]
    for what, lengths, outsize, ressize, pos, want in ocases:
        out, res = Guarded(outsize), Guarded(ressize)
        got = outcome(NATIVE.open_run, *_open_args(keys, lengths, blob, out.view, res.view,
                                                    **pos))
        k0 = pos.get("k", 0)
        bad = _run_problem(got, len(lengths), k0, out, res, len(blob), pos.get("o", 0))
        if bad is None and (isinstance(got, type) or got[0] != max(want, k0)):
            bad = f"returned {got}, expected a stop at {max(want, k0)}"
        if bad:
            problems.append(f"open_run, {what} ({pos or 'k=i=o=0'}): {bad}")
    assert not problems, "\n".join(problems)


def test_hostile_out_far_beyond_its_buffer_in_a_subprocess() -> None:
    """``o`` a megabyte past a 64-byte out buffer (a real out-of-bounds write if it is
    not refused): in a child process, so that a crash fails this test only."""
    code = (
        "import sys\n"
        "from array import array\n"
        "from framecrypt.workers import native, native_loop\n"
        "N = native.NATIVE\n"
        "key = N.AesGcm(bytes(16))\n"
        "out, res = bytearray(64), bytearray(12)\n"
        "r = N.seal_run(key, 0, native_loop.rules(False), 0, 0, 0, array('I', [10]), b'\\1',"
        " b'\\0', array('I', [1]), array('I', [2]), 0, bytes(10), 0, out, 1 << 20, res)\n"
        "print('seal', r[0])\n"
        "sealed = N.lk_seal(key, bytes(10), 0, 3, bytes(12) + b'\\x0c\\x00')\n"
        "keys = (key,) + (None,) * 255\n"
        "r = N.open_run(keys, native_loop.rules(False), array('I', [len(sealed)]), b'\\1',"
        " b'\\0', 0, sealed, 0, out, 1 << 20, res)\n"
        "print('open', r[0])\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env=os.environ.copy())
    assert p.returncode == 0, f"child died ({p.returncode}): {p.stderr[-2000:]}"
    assert p.stdout.split() == ["seal", "0", "open", "0"], (
        f"frames handled with o past the out buffer: {p.stdout!r}")


def test_hostile_aliasing_buffers() -> None:
    """out overlapping the input: the frame is not handled (the C loop refuses), the
    input is not touched."""
    key = NATIVE.AesGcm(bytes(16))
    buf = bytearray(b"\x11" * 200)
    mv = memoryview(buf)
    res = bytearray(12)
    got = NATIVE.seal_run(*_seal_args(key, [50], mv[:50], mv[20:], res))  # type: ignore[arg-type]
    assert got[0] == 0 and buf == bytearray(b"\x11" * 200)
    sealed = bytearray(_sealed_vp9(key, [60])[0]) + bytearray(100)
    mv = memoryview(sealed)
    keys = (key,) + (None,) * 255
    before = bytes(sealed)
    got = NATIVE.open_run(*_open_args(keys, [90], mv[:90], mv[10:], res))  # type: ignore[arg-type]
    assert got[0] == 0 and bytes(sealed) == before


def test_hostile_keys_table_entries() -> None:
    """Entries of the keys tuple that are not AesGcm objects stop the run (the frame
    goes to the reference); nothing is written."""
    key = NATIVE.AesGcm(bytes(16))
    sealed = _sealed_vp9(key, [10])[0]
    for entry in (None, 1, b"k" * 16, AESGCM(bytes(16)), "key"):
        keys = (entry,) * 256
        out, res = Guarded(64), Guarded(12)
        got = NATIVE.open_run(*_open_args(keys, [len(sealed)], sealed, out.view, res.view))
        assert got[0] == 0 and out.intact() and res.intact() and out.head() == bytes(64)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_runs_never_write_out_of_bounds(data: st.DataObject) -> None:
    """Random columns (of any length), positions, buffer sizes and codec ids: seal_run
    and open_run raise or stop; they never write past out or res."""
    d = data.draw
    key = NATIVE.AesGcm(bytes(16))
    n = d(st.integers(0, 6))
    lengths = d(st.lists(st.one_of(st.integers(0, 120), st.sampled_from((U32, 1 << 31))),
                         min_size=n, max_size=n))
    codec_col = bytes(d(st.lists(st.integers(0, 7), min_size=n, max_size=n)))
    flag_col = bytes(d(st.lists(st.integers(0, 255), min_size=n, max_size=n)))
    short = d(st.integers(0, 2))  # one column shorter than the others (the run ends there)
    insize = d(st.integers(0, 400))
    out, res = Guarded(d(st.integers(0, 500))), Guarded(12 * d(st.integers(0, 7)))
    k, i = d(st.integers(0, 8)), d(st.integers(0, insize + 20))
    o = d(st.integers(0, out.size + 300))
    rules = _rules(d(st.booleans()))
    noise = random.Random(insize).randbytes(insize)
    if d(st.booleans()):
        epoch, scheme, counter0 = d(st.sampled_from((-1, 0, U32))), d(st.integers(0, 2)), \
            d(st.integers(0, U32 + 3))
        cols: list[Any] = [array("I", lengths), codec_col, flag_col, array("I", [1] * n),
                           array("I", [2] * n)]
        cols[short] = cols[short][: max(n - 1, 0)]
        inp = noise
        got = outcome(NATIVE.seal_run, key, 3, rules, scheme, counter0, epoch, *cols, k, inp, i,
                      out.view, o, res.view)
    else:
        frames = _sealed_vp9(key, [s % 100 for s in lengths])
        inp = (b"".join(frames) + noise)[: max(insize, sum(map(len, frames)))]
        keys = tuple(key if j % 3 == 0 else None for j in range(256))
        real = d(st.booleans())
        cols = [array("I", [len(f) for f in frames] if real else lengths), codec_col, flag_col]
        cols[short] = cols[short][: max(n - 1, 0)]
        got = outcome(NATIVE.open_run, keys, rules, *cols, k, inp, i, out.view, o, res.view)
    bad = _run_problem(got, n, k, out, res, len(inp), o)
    assert bad is None, f"{bad} (k={k} i={i} o={o}, out {out.size} bytes, input {len(inp)})"


# ======================================================================================
# 6. Single frames: lk_seal / lk_open against frame.py
# ======================================================================================


def test_lk_seal_open_match_frame_py(backend: str) -> None:
    """Random frames of every codec, both formats. ``lk_seal`` returns None exactly
    where ``seal_trailer`` raises MalformedFrame (a clear header longer than the frame);
    ``lk_open`` returns None exactly where ``open_frame`` raises (MalformedFrame: too
    short, IV length not 12; AuthenticationFailed). Nothing else is handed back."""
    rng = random.Random(f"lk-{backend}")
    pay = Payloads(rng)
    key = rng.randbytes(16)
    g, ref = gcm(key, backend), AESGCM(key)
    stats: Counter[Any] = Counter()
    for jitsi in (False, True):
        rules = _rules(jitsi)
        for cid, codec in enumerate(wire.CODECS):
            for _ in range(1500):
                kf = rng.random() < 0.5
                rule, vp8rule = rules[cid << 1 | kf], 10 if kf else 3
                data = random_frame(rng, pay, codec)
                trailer = lkframe.trailer(rng.choice(lkframe.IV_SCHEMES), rng.getrandbits(32),
                                          rng.getrandbits(32), rng.getrandbits(40),
                                          rng.randrange(256))
                got = NATIVE.lk_seal(g, data, rule, vp8rule, trailer)
                try:
                    want: bytes | None = lkframe.seal_trailer(ref, data, codec, kf, trailer, jitsi)
                except MalformedFrame:
                    want = None
                assert got == want, (codec, kf, jitsi, data[:40].hex())
                stats["sealed" if got is not None else "seal None"] += 1
                if got is None:
                    continue
                if len(data) > 4096:
                    stats["big"] += 1
                for kind in ("none", "none", *MUTATIONS):
                    if kind in ("keyframe-flag", "codec", "twice"):
                        continue
                    f = mutate(rng, kind, got, cid, int(kf), jitsi)[0] if kind != "none" \
                        else got
                    opened = NATIVE.lk_open(g, f, rule, vp8rule)
                    try:
                        back: bytes | None = lkframe.open_frame(ref, f, codec=codec, keyframe=kf,
                                                                jitsi=jitsi)
                    except (MalformedFrame, AuthenticationFailed):
                        back = None
                    assert opened == back, (kind, codec, kf, jitsi, f[:40].hex())
                    if kind == "none" and (opened is not None or rule <= 250):
                        # the round trip (H.26x: the header with 4-byte start codes); an
                        # H.26x frame may not come back: the receiver scans the *sealed*
                        # frame for its clear header (as livekit-client), and ciphertext
                        # after a start code in the header can look like a slice NAL unit
                        n, nal = (clear_prefix(codec, kf, data) if not jitsi else (0, False))
                        assert opened == (h26x.normalize_start_codes(data[:n]) + data[n:]
                                          if nal else data), (codec, kf, jitsi)
                    stats[kind, opened is not None] += 1
    assert stats["sealed"] > 10_000 and stats["seal None"] > 0 and stats["big"] > 10, stats
    assert stats["none", True] >= 0.95 * (stats["none", True] + stats["none", False]), stats
    for kind in ("tag", "iv", "iv-length", "truncate", "forged"):
        assert stats[kind, False] > 0, (kind, stats)


def test_lk_fixed_rules_and_refused_rules(backend: str) -> None:
    rng = random.Random(250)
    key = rng.randbytes(16)
    g, ref = gcm(key, backend), AESGCM(key)
    trailer = lkframe.trailer("counter", 1, 2, 3, 4)
    for rule in (0, 1, 3, 10, 100, 249, 250):
        for size in (0, rule - 1, rule, rule + 1, rule + 500):
            if size < 0:
                continue
            data = rng.randbytes(size)
            got = NATIVE.lk_seal(g, data, rule, 3, trailer)
            if size == 0:
                assert got == b""
            elif size < rule:
                assert got is None
            else:
                want = data[:rule] + ref.encrypt(trailer[:12], data[rule:], data[:rule]) + trailer
                assert got == want
                assert NATIVE.lk_open(g, got, rule, 3) == data
    data = b"\x00\x00\x01\x65" + rng.randbytes(100)
    for rule in (251, 254, 255):  # no such rule: handed back (the reference raises)
        assert NATIVE.lk_seal(g, data, rule, 3, trailer) is None
        assert NATIVE.lk_open(g, data + trailer, rule, 3) is None
    for bad in ((256, 3), (-1, 3), (0, 251), (0, -1)):
        with pytest.raises(ValueError):
            NATIVE.lk_seal(g, data, *bad, trailer)
        with pytest.raises(ValueError):
            NATIVE.lk_open(g, data, *bad)
    for tr in (b"", trailer[:13], trailer + b"x"):
        with pytest.raises(ValueError):
            NATIVE.lk_seal(g, data, 3, 3, tr)
    with pytest.raises(TypeError):
        NATIVE.lk_seal(ref, data, 3, 3, trailer)
    with pytest.raises(TypeError):
        NATIVE.lk_open(key, data, 3, 3)


def test_lk_open_livekit_client_vector(backend: str) -> None:
    v = json.loads((VECTORS / "livekit" / "livekit-client-2.23.0-unit-vectors.json")
                   .read_text())["decrypt_vector"]
    sealed, plain = bytes.fromhex(v["sealed"]), bytes.fromhex(v["plaintext"])
    kdf = Kdf.livekit("pbkdf2")
    key = kdf.derive_key(v["passphrase"].encode())
    assert sealed[-1] == v["key_index"]
    rule = 10 if v["keyframe"] else 3
    assert NATIVE.lk_open(gcm(key, backend), sealed, rule, rule) == plain
    wrong = kdf.derive_key(v["wrong_passphrase"].encode())
    assert NATIVE.lk_open(gcm(wrong, backend), sealed, rule, rule) is None
