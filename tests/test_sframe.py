"""SFrame behaviour beyond the vectors: header strictness, counters, replay window,
ratchet (§5.1), MLS KID layout (§5.2), key lookup, authentication, metadata,
caller buffers, and that no key bytes leak into reprs or error messages."""

from __future__ import annotations

import dataclasses
import hmac
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from framecrypt import sframe
from framecrypt.errors import (
    AuthenticationFailed,
    CounterExhausted,
    FramecryptError,
    InvalidKeyMaterial,
    InvalidParameter,
    MalformedFrame,
    ReplayedFrame,
    UnknownKey,
    UnsupportedSuite,
)
from framecrypt.sframe import (
    SUITES,
    AeadKind,
    LruCache,
    MlsKeySource,
    MlsKidLayout,
    RatchetingSender,
    RatchetKeySource,
    RatchetLayout,
    ReceiverContext,
    ReplayWindow,
    SenderContext,
    SFrameKey,
    SuiteId,
    decode_header,
    derive_key_salt,
    encode_header,
    get_suite,
    make_aead,
    next_base_key,
    sender_bits,
)

HEADERS = json.loads(
    (Path(__file__).parent / "vectors" / "sframe" / "test-vectors.json").read_text()
)["header"]
ALL_SUITES = sorted(SUITES)
BASE = bytes(range(0x40, 0x50))  # recognisable 16-byte base key
U64 = 1 << 64


# --- suites --------------------------------------------------------------------------


def test_suite_table() -> None:
    rows = {s: (c.nh, c.nka, c.nk, c.nn, c.nt, c.hash_name) for s, c in SUITES.items()}
    assert rows == {
        1: (32, 16, 48, 12, 10, "sha256"),
        2: (32, 16, 48, 12, 8, "sha256"),
        3: (32, 16, 48, 12, 4, "sha256"),
        4: (32, 0, 16, 12, 16, "sha256"),
        5: (64, 0, 32, 12, 16, "sha512"),
        6: (64, 32, 96, 12, 10, "sha512"),
        7: (64, 32, 96, 12, 8, "sha512"),
        8: (64, 32, 96, 12, 4, "sha512"),
    }
    assert [s for s, c in SUITES.items() if c.provisional] == [6, 7, 8]
    assert [s for s, c in SUITES.items() if c.kind is AeadKind.AES_GCM] == [4, 5]
    assert get_suite(SuiteId.AES_128_GCM_SHA256_128) is SUITES[4]


@pytest.mark.parametrize("bad", [0, 9, 0xF000, 0xFFFF, -1])
def test_unsupported_suite(bad: int) -> None:
    with pytest.raises(UnsupportedSuite):
        get_suite(bad)
    with pytest.raises(UnsupportedSuite):
        sframe.protect(bad, BASE, 1, 0, b"x")
    with pytest.raises(UnsupportedSuite):
        sframe.unprotect(bad, BASE, bytes(30))
    with pytest.raises(UnsupportedSuite):
        ReceiverContext(bad)


# --- §4.3 header strictness -------------------------------------------------------------


@pytest.mark.parametrize("v", HEADERS[::7], ids=lambda v: v["encoded"])
def test_every_truncation_is_malformed(v: dict[str, object]) -> None:
    encoded = bytes.fromhex(str(v["encoded"]))
    for cut in range(len(encoded)):
        with pytest.raises(MalformedFrame):
            decode_header(encoded[:cut])


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "empty"),
        ("0800", "CTR 0 in extended form"),
        ("0805", "CTR 5 in extended form"),
        ("0807", "CTR 7 in extended form"),
        ("8000", "KID 0 in extended form"),
        ("8003", "KID 3 in extended form"),
        ("8807", "KID 7 in extended form"),
        ("090010", "CTR with a leading zero byte"),
        ("0f00ffffffffffffff", "8-byte CTR with a leading zero byte"),
        ("900010", "KID with a leading zero byte"),
        ("f000ffffffffffffff", "8-byte KID with a leading zero byte"),
        ("880001", "KID with a leading zero byte, then CTR"),
        ("8801", "KID 1 in extended form"),
        ("8810", "KID present, CTR missing"),
        ("9901", "truncated KID"),
        ("99012345", "truncated CTR"),
    ],
)
def test_non_canonical_headers_are_malformed(raw: str, why: str) -> None:
    with pytest.raises(MalformedFrame) as info:
        decode_header(bytes.fromhex(raw))
    assert info.value.reason  # a short fixed reason, no bytes
    # The stateless API and a receiver context reject the frame the same way.
    frame = bytes.fromhex(raw)
    with pytest.raises(MalformedFrame):
        sframe.unprotect(4, BASE, frame)


def test_header_rfc_example_and_range() -> None:
    assert encode_header(0x123, 0x4567) == bytes.fromhex("9901234567")
    assert encode_header(U64 - 1, U64 - 1) == b"\xff" + b"\xff" * 16
    for kid, ctr in ((-1, 0), (0, -1), (U64, 0), (0, U64)):
        with pytest.raises(InvalidParameter):
            encode_header(kid, ctr)


# --- counters -------------------------------------------------------------------------


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_counter_limit_is_2_64_minus_1(suite: int) -> None:
    last = sframe.protect(suite, BASE, 7, U64 - 1, b"last")
    assert sframe.unprotect(suite, BASE, last) == (7, U64 - 1, b"last")
    with pytest.raises(CounterExhausted) as info:
        sframe.protect(suite, BASE, 7, U64, b"x")
    assert info.value.kid == 7
    with pytest.raises(InvalidParameter):
        sframe.protect(suite, BASE, 7, -1, b"x")


def test_sender_context_counter_exhaustion() -> None:
    ctx = SenderContext(4)
    ctx.add_key(3, BASE, next_ctr=U64 - 2)
    assert decode_header(ctx.protect(3, b"a"))[:2] == (3, U64 - 2)
    assert decode_header(ctx.protect(3, b"b"))[:2] == (3, U64 - 1)
    for _ in range(2):  # stays exhausted; never wraps around to 0
        with pytest.raises(CounterExhausted):
            ctx.protect(3, b"c")
        with pytest.raises(CounterExhausted):
            ctx.protect_into(3, b"c", bytearray(64))


def test_counter_also_bounded_by_nonce_size() -> None:
    # A suite with a 4-byte nonce could only count to 2**32 - 1.
    small = dataclasses.replace(SUITES[4], nn=4)
    assert small.ctr_limit == 2**32 - 1
    assert SUITES[4].ctr_limit == U64 - 1
    key = SFrameKey(small, 1, bytes(16), bytes(4))
    with pytest.raises(CounterExhausted):
        key.protect(2**32, b"x")
    with pytest.raises(CounterExhausted):
        key.header(2**32)


def test_sender_counters_are_monotonic_per_kid() -> None:
    ctx = SenderContext(1)
    ctx.add_key(1, BASE)
    ctx.add_key(2, BASE[::-1])
    seen = [decode_header(ctx.protect(1, b"x"))[:2] for _ in range(3)]
    seen.append(decode_header(ctx.protect(2, b"x"))[:2])
    assert seen == [(1, 0), (1, 1), (1, 2), (2, 0)]
    assert ctx.next_ctr(1) == 3
    # the same key again keeps the counter (no nonce reuse) ...
    ctx.add_key(1, BASE)
    assert ctx.next_ctr(1) == 3
    # ... a new key for the KID starts over
    ctx.add_key(1, b"another base key")
    assert ctx.next_ctr(1) == 0
    ctx.remove_key(2)
    with pytest.raises(UnknownKey):
        ctx.protect(2, b"x")
    assert ctx.kids == frozenset({1})


# --- keys, authentication, metadata ------------------------------------------------------


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_wrong_key_tamper_and_metadata(suite: int) -> None:
    md = b"rtp-ext:1234"
    ct = sframe.protect(suite, BASE, 0x123, 99, b"hello frame", md)
    assert md not in ct
    assert sframe.unprotect(suite, BASE, ct, md) == (0x123, 99, b"hello frame")
    with pytest.raises(AuthenticationFailed):
        sframe.unprotect(suite, BASE[:-1] + b"\x00", ct, md)
    with pytest.raises(AuthenticationFailed):
        sframe.unprotect(suite, BASE, ct, b"rtp-ext:1235")
    with pytest.raises(AuthenticationFailed):
        sframe.unprotect(suite, BASE, ct)
    # header tampering changes the AAD and the nonce
    hlen = decode_header(ct)[2]
    assert hlen == 4
    other_ctr = encode_header(0x123, 98) + ct[hlen:]
    with pytest.raises(AuthenticationFailed):
        sframe.unprotect(suite, BASE, other_ctr, md)
    # shorter than the tag: malformed, not a crash
    nt = SUITES[suite].nt
    with pytest.raises(MalformedFrame):
        sframe.unprotect(suite, BASE, ct[: hlen + nt - 1], md)


def test_empty_plaintext_round_trip() -> None:
    for suite in ALL_SUITES:
        ct = sframe.protect(suite, BASE, 1, 1, b"")
        assert len(ct) == 1 + SUITES[suite].nt
        assert sframe.unprotect(suite, BASE, ct) == (1, 1, b"")


def test_receiver_unknown_kid_and_remove() -> None:
    rx = ReceiverContext(4)
    rx.add_key(5, BASE)
    ct = sframe.protect(4, BASE, 6, 0, b"x")
    with pytest.raises(UnknownKey) as info:
        rx.unprotect(ct)
    assert info.value.kid == 6
    ok = sframe.protect(4, BASE, 5, 0, b"x")
    assert rx.unprotect(ok) == (5, 0, b"x")
    rx.remove_key(5)
    with pytest.raises(UnknownKey):
        rx.unprotect(ok)
    with pytest.raises(UnknownKey):
        rx.remove_key(5)


def test_receiver_wrong_key_fails_authentication() -> None:
    rx = ReceiverContext(2)
    rx.add_key(5, b"receiver key")
    with pytest.raises(AuthenticationFailed):
        rx.unprotect(sframe.protect(2, b"sender key", 5, 0, b"x"))


@pytest.mark.parametrize("bad", [b"", bytearray(), "text", None, 12])
def test_invalid_base_key(bad: object) -> None:
    with pytest.raises(InvalidKeyMaterial):
        sframe.protect(4, bad, 1, 0, b"x")  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyMaterial):
        ReceiverContext(4).add_key(1, bad)  # type: ignore[arg-type]


def test_base_key_may_be_bytearray_or_memoryview() -> None:
    ct = sframe.protect(4, bytearray(BASE), 1, 0, b"x")  # type: ignore[arg-type]
    assert sframe.unprotect(4, memoryview(BASE), ct) == (1, 0, b"x")  # type: ignore[arg-type]


# --- caller buffers -------------------------------------------------------------------


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_protect_and_unprotect_into_caller_buffers(suite: int) -> None:
    pt, md = bytes(range(200)), b"meta"
    tx = SenderContext(suite)
    tx.add_key(300, BASE, next_ctr=1000)
    n_expected = tx.ciphertext_length(300, len(pt))
    arena = bytearray(b"\xee" * (n_expected + 20))
    n = tx.protect_into(300, pt, memoryview(arena)[10:], md)
    assert n == n_expected
    assert arena[:10] == b"\xee" * 10 and arena[10 + n :] == b"\xee" * 10
    frame = bytes(arena[10 : 10 + n])
    assert frame == sframe.protect(suite, BASE, 300, 1000, pt, md)

    rx = ReceiverContext(suite)
    rx.add_key(300, BASE)
    out = bytearray(b"\xdd" * 300)
    assert rx.unprotect_into(memoryview(arena)[10 : 10 + n], out, md) == (300, 1000, len(pt))
    assert bytes(out[: len(pt)]) == pt and out[len(pt) :] == b"\xdd" * 100

    # stateless variants
    buf = bytearray(n)
    assert sframe.protect_into(suite, BASE, 300, 1000, pt, buf, md) == n and bytes(buf) == frame
    out2 = bytearray(len(pt))
    assert sframe.unprotect_into(suite, BASE, frame, out2, md) == (300, 1000, len(pt))
    assert bytes(out2) == pt

    # too-small buffers are refused with a typed error
    with pytest.raises(InvalidParameter):
        tx.protect_into(300, pt, bytearray(n - 1), md)
    with pytest.raises(InvalidParameter):
        sframe.unprotect_into(suite, BASE, frame, bytearray(len(pt) - 1), md)


# --- replay window ----------------------------------------------------------------------


def test_replay_window_inspect_never_commits() -> None:
    w = ReplayWindow(8)
    assert w.highest is None
    for _ in range(3):
        w.inspect(5)
    assert w.highest is None and 5 not in w
    w.accept(5)
    assert w.highest == 5 and 5 in w
    with pytest.raises(ReplayedFrame):
        w.inspect(5)


def test_replay_window_sliding() -> None:
    w = ReplayWindow(8)
    for c in (10, 8, 12):
        w.inspect(c)
        w.accept(c)
    w.inspect(9)  # late but inside the window and unseen
    w.inspect(11)
    with pytest.raises(ReplayedFrame):
        w.inspect(8)
    w.inspect(5)  # 12 - 5 = 7 < 8: still inside
    with pytest.raises(ReplayedFrame):
        w.inspect(4)  # 12 - 4 = 8: below the window
    w.accept(1000)  # a big jump clears everything behind
    assert w.highest == 1000 and 12 not in w
    with pytest.raises(ReplayedFrame):
        w.inspect(992)
    w.inspect(993)
    w.accept(U64 - 1)
    with pytest.raises(ReplayedFrame):
        w.inspect(U64 - 1)
    with pytest.raises(InvalidParameter):
        ReplayWindow(0)


def test_receiver_replay_rules() -> None:
    rx = ReceiverContext(4, replay_window=16)
    rx.add_key(1, BASE)
    frames = [sframe.protect(4, BASE, 1, c, b"f%d" % c) for c in range(40)]
    assert rx.unprotect(frames[5])[1] == 5
    with pytest.raises(ReplayedFrame):
        rx.unprotect(frames[5])
    # a forged frame with a far-ahead counter fails and must not move the window
    forged = bytearray(sframe.protect(4, BASE, 1, 39, b"x"))
    forged[-1] ^= 1
    with pytest.raises(AuthenticationFailed):
        rx.unprotect(bytes(forged))
    assert rx.unprotect(frames[2])[1] == 2  # would be outside the window had 39 been accepted
    assert rx.unprotect(frames[39])[1] == 39
    with pytest.raises(ReplayedFrame):
        rx.unprotect(frames[20])  # 39 - 20 >= 16
    assert rx.unprotect(frames[30])[1] == 30
    # re-adding the same key keeps its window
    rx.add_key(1, BASE)
    with pytest.raises(ReplayedFrame):
        rx.unprotect(frames[30])
    # replay_window=0 disables the check
    open_rx = ReceiverContext(4, replay_window=0)
    open_rx.add_key(1, BASE)
    assert open_rx.unprotect(frames[3]) == open_rx.unprotect(frames[3])


# --- §5.1 ratchet --------------------------------------------------------------------


def _independent_ratchet(base_key: bytes, hash_name: str, nh: int) -> bytes:
    algo = hashes.SHA256() if hash_name == "sha256" else hashes.SHA512()
    prk = hmac.digest(bytes(nh), base_key, hash_name)
    return HKDFExpand(algo, nh, b"SFrame 1.0 Ratchet").derive(prk)


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_next_base_key_matches_independent_hkdf(suite: int) -> None:
    cs = SUITES[suite]
    k1 = next_base_key(suite, BASE)
    assert len(k1) == cs.nh
    assert k1 == _independent_ratchet(BASE, cs.hash_name, cs.nh)
    assert next_base_key(suite, k1) == _independent_ratchet(k1, cs.hash_name, cs.nh)


def test_ratchet_kid_layout() -> None:
    layout = RatchetLayout(4)
    assert layout.kid(3, 0) == 0x30
    assert layout.kid(3, 5) == 0x35
    assert layout.kid(3, 17) == 0x31  # step mod 2**R
    assert layout.split(0x35) == (3, 5)
    with pytest.raises(InvalidParameter):
        layout.kid(1 << 60, 0)
    with pytest.raises(InvalidParameter):
        RatchetLayout(0)


def test_ratchet_sender_and_receiver_catch_up() -> None:
    layout = RatchetLayout(4)
    tx = RatchetingSender(4, BASE, generation=2, layout=layout)
    src = RatchetKeySource(4, layout, max_steps=3, keep_previous=1)
    src.add_generation(2, BASE)
    rx = ReceiverContext(4, sources=[src])

    f0 = tx.protect(b"step0")
    assert rx.unprotect(f0) == (0x20, 0, b"step0")
    tx.ratchet()
    tx.ratchet()
    f2 = tx.protect(b"step2")
    assert decode_header(f2)[:2] == (0x22, 0)  # new step, counter restarts
    # the step-2 key is the base key ratcheted twice
    expected = SFrameKey.derive(4, next_base_key(4, next_base_key(4, BASE)), 0x22)
    assert expected.protect(0, b"step2") == f2
    assert rx.unprotect(f2) == (0x22, 0, b"step2")
    assert src.current_step(2) == 2
    # a late frame of step 1 (keep_previous=1) still opens; step 0 no longer does
    late1 = SFrameKey.derive(4, next_base_key(4, BASE), 0x21).protect(0, b"late1")
    assert rx.unprotect(late1)[2] == b"late1"
    with pytest.raises(UnknownKey):
        rx.unprotect(tx_frame_at(BASE, 0x20, 1))
    # more than max_steps ahead: not tried
    for _ in range(4):
        tx.ratchet()
    with pytest.raises(UnknownKey):
        rx.unprotect(tx.protect(b"too far"))
    assert src.current_step(2) == 2


def tx_frame_at(base: bytes, kid: int, ctr: int) -> bytes:
    frame: bytes = SFrameKey.derive(4, base, kid).protect(ctr, b"old")
    return frame


def test_ratchet_commits_only_after_authentication() -> None:
    layout = RatchetLayout(3)
    src = RatchetKeySource(4, layout, max_steps=4, keep_previous=0)
    src.add_generation(1, BASE)
    rx = ReceiverContext(4, sources=[src])
    # a forged frame naming step 3 of generation 1
    forged = SFrameKey.derive(4, b"attacker", layout.kid(1, 3)).protect(0, b"evil")
    with pytest.raises(AuthenticationFailed):
        rx.unprotect(forged)
    assert src.current_step(1) == 0
    # step 0 keeps working, then a real step-1 frame advances the chain
    assert rx.unprotect(tx_frame_at(BASE, layout.kid(1, 0), 0))[2] == b"old"
    step1 = SFrameKey.derive(4, next_base_key(4, BASE), layout.kid(1, 1))
    assert rx.unprotect(step1.protect(0, b"s1"))[2] == b"s1"
    assert src.current_step(1) == 1
    with pytest.raises(UnknownKey):  # keep_previous=0: step 0 is gone (forward secrecy)
        rx.unprotect(tx_frame_at(BASE, layout.kid(1, 0), 1))


def test_ratchet_new_generation_and_parameters() -> None:
    layout = RatchetLayout(2)
    tx = RatchetingSender(1, BASE, generation=0, layout=layout)
    tx.ratchet()
    assert tx.new_generation(1, b"fresh key material") == layout.kid(1, 0)
    src = RatchetKeySource(1, layout, max_steps=2, keep_previous=1)
    src.add_generation(1, b"fresh key material")
    rx = ReceiverContext(1, sources=[src])
    assert rx.unprotect(tx.protect(b"g1"))[2] == b"g1"
    with pytest.raises(InvalidParameter):
        RatchetKeySource(1, layout, max_steps=3, keep_previous=1)  # 3 + 1 >= 2**2
    with pytest.raises(UnknownKey):
        src.remove_generation(0)


def test_ratchet_wraps_modulo_2_r() -> None:
    layout = RatchetLayout(2)
    tx = RatchetingSender(4, BASE, generation=1, layout=layout)
    src = RatchetKeySource(4, layout, max_steps=2, keep_previous=0)
    src.add_generation(1, BASE)
    rx = ReceiverContext(4, sources=[src])
    for step in range(10):
        frame = tx.protect(b"s%d" % step)
        assert rx.unprotect(frame) == (layout.kid(1, step), 0, b"s%d" % step)
        tx.ratchet()
    assert src.current_step(1) == 9


# --- §5.2 MLS --------------------------------------------------------------------------


def test_mls_kid_layout_rfc_example() -> None:
    assert sender_bits(64) == 6 and sender_bits(65) == 7 and sender_bits(1) == 0
    layout = MlsKidLayout.for_group(epoch_bits=4, group_size=64)
    assert layout == MlsKidLayout(4, 6)
    assert layout.kid(sender_index=3, epoch=14) == 0x3E
    assert layout.kid(sender_index=3, epoch=14 + 16) == 0x3E  # epoch mod 2**E
    assert layout.kid(sender_index=3, epoch=14, context=2) == (2 << 10) + 0x3E
    split = layout.split((2 << 10) + 0x3E)
    assert (split.context, split.sender_index, split.epoch_low) == (2, 3, 14)
    with pytest.raises(InvalidParameter):
        layout.kid(sender_index=64, epoch=0)
    with pytest.raises(InvalidParameter):
        sender_bits(0)


def test_mls_round_trip_and_epoch_replacement() -> None:
    suite = 4
    nk = SUITES[suite].nk
    secret14, secret30 = b"\x14" * nk, b"\x30" * nk
    src = MlsKeySource(suite, epoch_bits=4)
    assert src.add_epoch(14, secret14, group_size=50) is None  # S = 6 as for 64
    rx = ReceiverContext(suite, sources=[src])

    kid = src.sender_kid(14, 3)
    assert kid == 0x3E
    tx = SenderContext(suite)
    tx.add_key(kid, secret14)  # the exporter output is every sender's base key
    f14 = tx.protect(kid, b"epoch 14")
    assert rx.unprotect(f14) == (0x3E, 0, b"epoch 14")
    # per-sender keys differ only through the KID
    other = src.sender_key(14, 4)
    assert other.kid == 0x4E
    assert rx.unprotect(other.protect(0, b"sender 4"))[2] == b"sender 4"
    # a sender index outside the group (50 members) is unknown
    with pytest.raises(UnknownKey):
        rx.unprotect(SFrameKey.derive(suite, secret14, (55 << 4) + 14).protect(0, b"x"))
    with pytest.raises(InvalidParameter):
        src.sender_kid(14, 55)

    # epoch 30 has the same low 4 bits as 14: 14 is dropped
    assert src.add_epoch(30, secret30, group_size=64) == 14
    assert src.epochs == frozenset({30})
    with pytest.raises(AuthenticationFailed):  # KID 0x3E now means epoch 30
        rx.unprotect(tx.protect(kid, b"old epoch"))
    f30 = src.sender_key(30, 3).protect(0, b"epoch 30")
    assert rx.unprotect(f30)[2] == b"epoch 30"
    with pytest.raises(InvalidParameter):
        src.add_epoch(14, secret14, group_size=64)  # older than the held one
    with pytest.raises(InvalidKeyMaterial):
        src.add_epoch(31, b"short", group_size=64)
    src.remove_epoch(30)
    with pytest.raises(UnknownKey):
        rx.unprotect(f30)


# --- no key bytes anywhere -----------------------------------------------------------


def _assert_no_secret(text: str, secrets: list[bytes]) -> None:
    for s in secrets:
        for form in (s.hex(), repr(s), s.hex().upper(), str(list(s))[1:-1]):
            assert form not in text, f"key material in {text!r}"


def test_no_key_bytes_in_reprs_or_errors() -> None:
    suite = 1
    ks = derive_key_salt(SUITES[suite], BASE, 0x123)
    secrets = [BASE, ks.key, ks.salt, ks.key[:16], ks.key[16:]]
    layout = RatchetLayout(4)
    mls = MlsKeySource(suite, epoch_bits=4)
    mls.add_epoch(1, BASE * 3, group_size=8)
    tx = SenderContext(suite)
    tx.add_key(0x123, BASE)
    rx = ReceiverContext(suite)
    rx.add_key(0x123, BASE)
    cache: LruCache[bytes, bytes] = LruCache(4)
    cache.put(BASE, ks.key)
    objects: list[object] = [
        ks,
        SFrameKey.derive(suite, BASE, 0x123),
        make_aead(SUITES[suite], ks.key),
        make_aead(SUITES[4], ks.key[:16]),
        tx,
        rx,
        RatchetingSender(suite, BASE, generation=1, layout=layout),
        RatchetKeySource(suite, layout),
        mls,
        cache,
        ReplayWindow(),
    ]
    for obj in objects:
        _assert_no_secret(repr(obj) + str(obj), secrets)

    errors: list[FramecryptError] = []
    frame = tx.protect(0x123, b"payload")
    for call in (
        lambda: sframe.unprotect(suite, BASE[::-1], frame),
        lambda: sframe.unprotect(suite, BASE, frame[:3]),
        lambda: sframe.protect(suite, BASE, 0x123, U64, b"x"),
        lambda: sframe.protect(suite, b"", 1, 0, b"x"),
        lambda: ReceiverContext(suite).unprotect(frame),
        lambda: (rx.unprotect(frame), rx.unprotect(frame)),
        lambda: mls.add_epoch(2, BASE, group_size=8),
    ):
        with pytest.raises(FramecryptError) as info:
            call()
        errors.append(info.value)
    assert {type(e).__name__ for e in errors} >= {
        "AuthenticationFailed",
        "MalformedFrame",
        "CounterExhausted",
        "InvalidKeyMaterial",
        "UnknownKey",
        "ReplayedFrame",
    }
    for e in errors:
        _assert_no_secret(str(e) + repr(e) + repr(e.args), secrets)


# --- stateless cache -----------------------------------------------------------------


def test_stateless_cache_is_bounded_and_skips_forged_kids() -> None:
    from framecrypt import sframe as facade

    facade.clear_cache()
    for i in range(facade.CACHE_SIZE + 50):
        facade.protect(4, BASE, i, 0, b"x")
    assert len(facade._cache) == facade.CACHE_SIZE
    facade.clear_cache()
    forged = encode_header(999, 0) + bytes(32)
    for _ in range(3):
        with pytest.raises(AuthenticationFailed):
            facade.unprotect(4, BASE, forged)
    assert len(facade._cache) == 0
