"""The C DAVE receiver (``fc_dave_rx.inc``) against the Python reference
(``workers/dave/receiver.py``): the same random sequences of frames, epoch transitions,
passthrough changes, window hand-overs and hostile bytes, step by step the same
plaintext or the same typed error (type and message), on two receivers built from the
same secrets. The reference itself is checked against libdave in test_dave_media.py."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from native_helpers import require_native

from framecrypt.workers import native
from framecrypt.workers.dave import frame, ratchet
from framecrypt.workers.dave.receiver import Receiver


@pytest.fixture(autouse=True)
def _native_path() -> None:
    require_native("dave_open_run", "DAVE sender, receiver and batch loop")

SECRETS = [bytes([i]) * 16 for i in range(1, 4)]
KEYS = {(s, g): ratchet.key_for_generation(s, g) for s in SECRETS for g in range(4)}

# nonces around the 1000-nonce window's edges (skips of 999, 1000, 1001 from 0 and 1)
BOUNDARIES = [0, 1, 2, 999, 1000, 1001, 1002, 1500, 1501, 2000, 2001, 2002, (1 << 24) - 1]

# one step: ("frame", secret index, generation, low nonce bits, payload, audio, tamper)
frames = st.tuples(st.just("frame"), st.integers(0, 2), st.integers(0, 3),
                   st.one_of(st.integers(0, 40), st.sampled_from(BOUNDARIES),
                             st.integers(0, (1 << 24) - 1)),
                   st.binary(max_size=40), st.booleans(), st.sampled_from(["", "tag", "cut"]))
steps = st.one_of(
    frames, frames, frames, frames,
    st.tuples(st.just("time"), st.sampled_from([0.0, 0.4, 3.0, 9.9, 10.5, 1e5, -1.0])),
    st.tuples(st.just("epoch"), st.integers(0, 2), st.sampled_from([10.0, 0.0, 2.5])),
    st.tuples(st.just("passthrough"), st.booleans(), st.sampled_from([10.0, 0.0])),
    st.tuples(st.just("restore"), st.integers(0, 3), st.integers(-1, (3 << 24) + 5)),
    st.tuples(st.just("raw"), st.binary(max_size=30)),
    st.tuples(st.just("silence"), st.booleans()),
)


def outcome(fn: Any) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except Exception as e:  # the comparison is the point: type and message
        return type(e).__name__, str(e)


def sealed(step: tuple[Any, ...]) -> bytes:
    _, si, gen, low, payload, _audio, tamper = step
    data = frame.seal(KEYS[(SECRETS[si], gen)], (gen << 24) | low, payload)
    if tamper == "tag" and len(data) > 12:
        data = data[:-12] + bytes([data[-12] ^ 1]) + data[-11:]
    elif tamper == "cut":
        data = data[1:]
    return data


class Pair:
    """The reference and the C receiver, driven alike."""

    def __init__(self) -> None:
        self.rx = [Receiver(native=False), Receiver(native=True)]
        self.states: list[list[Any]] = [[], []]
        self.now = 0.0

    def do(self, step: tuple[Any, ...]) -> list[tuple[str, Any]]:
        kind = step[0]
        if kind == "time":
            self.now += step[1]
            return []
        if kind == "epoch":
            for rx, states in zip(self.rx, self.states, strict=True):
                states.append(rx.transition_to_key_ratchet(
                    ratchet.KeyRatchet(SECRETS[step[1]]), self.now, step[2]))
            return []
        if kind == "passthrough":
            for rx in self.rx:
                rx.transition_to_passthrough(step[1], self.now, step[2])
            return []
        if kind == "restore":
            got = []
            for states in self.states:
                if states:
                    m = states[step[1] % len(states)]
                    m.restore(step[2], self.now)
                    got.append(("ok", m.newest_nonce))
            return got
        data = (sealed(step) if kind == "frame" else
                frame.OPUS_SILENCE if kind == "silence" else step[1])
        audio = step[5] if kind == "frame" else (step[1] if kind == "silence" else True)
        return [outcome(lambda rx=rx: rx.open(data, self.now, audio)) for rx in self.rx]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(steps, max_size=60))
def test_c_receiver_is_the_reference(seq: list[tuple[Any, ...]]) -> None:
    pair = Pair()
    for i, step in enumerate(seq):
        got = pair.do(step)
        if len(got) == 2:
            assert got[0] == got[1], (i, step, got)
    assert [m.newest_nonce for m in pair.states[0]] == [m.newest_nonce for m in pair.states[1]]


F = "frame"
LAST = (1 << 24) - 1  # the last nonce of a generation
SCENARIOS: dict[str, list[tuple[Any, ...]]] = {
    # each skip size at the window's edge, then the oldest missing nonces
    **{f"skip-{k}": [("epoch", 0, 10.0), (F, 0, 0, 1, b"a", False, ""),
                     (F, 0, 0, 2 + k, b"b", False, ""),
                     *[(F, 0, 0, n, b"c", False, "") for n in (2, 3, 1 + k, 2 + k - 1000,
                                                                1 + k - 1000, 2) if n >= 0]]
       for k in (998, 999, 1000, 1001, 1500)},
    # a late frame of the old generation: kept 10 s after the new one authenticated
    "generation-expiry": [("epoch", 0, 10.0), ("time", 1e5), (F, 0, 0, LAST - 9, b"x", False, ""),
                          ("time", 1e5), (F, 0, 1, 1, b"y", False, ""),
                          (F, 0, 0, LAST - 1, b"z", False, ""), ("time", 9.9),
                          (F, 0, 0, LAST - 2, b"z", False, ""), ("time", 0.5),
                          (F, 0, 0, LAST - 3, b"z", False, ""), (F, 0, 1, 0, b"w", False, "")],
    "age-and-gap": [("epoch", 0, 10.0), (F, 0, 1, 1, b"x", False, ""), ("time", 98689.0),
                    (F, 0, 1, 1, b"x", False, ""), ("time", 1.0), (F, 0, 1, 2, b"x", False, ""),
                    (F, 0, 3, 2, b"x", False, ""), ("time", 3e5), (F, 0, 3, 2, b"x", False, ""),
                    (F, 0, 0, 9, b"x", False, "")],
    "epoch-transition": [("epoch", 0, 10.0), (F, 0, 0, 1, b"a", False, ""),
                         ("epoch", 1, 2.5), (F, 0, 0, 2, b"a", False, ""),
                         (F, 1, 0, 1, b"b", False, ""), ("time", 2.4),
                         (F, 0, 0, 3, b"a", False, ""), ("time", 0.2),
                         (F, 0, 0, 4, b"a", False, ""), (F, 1, 0, 2, b"b", False, ""),
                         (F, 2, 0, 1, b"c", False, "tag")],
    "passthrough": [("raw", b"clear"), ("passthrough", True, 10.0), ("raw", b"clear"),
                    ("silence", True), ("silence", False), ("passthrough", False, 3.0),
                    ("time", 2.9), ("raw", b"clear"), ("time", 0.2), ("raw", b"clear"),
                    ("epoch", 0, 10.0), (F, 0, 0, 1, b"", True, ""), ("raw", b"")],
    "hand-over": [("epoch", 0, 10.0), ("epoch", 1, 10.0), ("restore", 0, 500),
                  ("restore", 1, (1 << 24) + 3), (F, 0, 0, 500, b"a", False, ""),
                  (F, 0, 0, 501, b"a", False, ""), (F, 1, 0, 9, b"a", False, ""),
                  (F, 1, 1, 3, b"a", False, ""), (F, 1, 1, 4, b"a", False, ""),
                  ("restore", 1, 2), ("restore", 0, -1)],
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenarios(name: str) -> None:
    pair = Pair()
    kinds = []
    for step in SCENARIOS[name]:
        got = pair.do(step)
        if len(got) == 2:
            assert got[0] == got[1], (step, got)
            kinds.append(got[0][0])
    assert "ok" in kinds and len(set(kinds)) >= 2, kinds  # both kinds of decision made


def test_long_runs_with_gaps_reordering_and_generations() -> None:
    """Thousands of frames with skips beyond the 1000-nonce window, reordered and
    replayed frames, and two generation changes: the same decisions throughout."""
    import random

    rnd = random.Random(7)
    pair = Pair()
    pair.do(("epoch", 0, 10.0))
    pair.do(("time", 2e5))  # old enough for generation 1 and 2
    decided = {"ok": 0, "ReplayedFrame": 0, "DroppedFrame": 0}
    sent: list[tuple[Any, ...]] = []
    n = 0
    for gen in range(3):
        for _ in range(2500):
            n += rnd.choice([1, 1, 1, 2, 1500]) if n < (1 << 24) - 2000 else 1
            low = n % (1 << 24)
            step = ("frame", 0, gen, low, rnd.randbytes(rnd.randrange(30)), False, "")
            sent.append(step)
            if rnd.random() < 0.1 and sent:
                step = rnd.choice(sent[-1500:])  # late or replayed
            got = pair.do(step)
            assert got[0] == got[1], (step, got)
            decided[got[0][0]] = decided.get(got[0][0], 0) + 1
            if rnd.random() < 0.01:
                pair.do(("time", rnd.choice([0.5, 11.0])))
    assert decided["ok"] > 6000 and decided["ReplayedFrame"] > 50, decided


def test_errors_and_reprs_name_no_key() -> None:
    rx = Receiver(native=True)
    state = rx.transition_to_key_ratchet(ratchet.KeyRatchet(SECRETS[0]), 0.0)
    for s in (repr(rx), repr(state)):
        assert SECRETS[0].hex() not in s and "01010101" not in s
    with pytest.raises(Exception) as e:
        rx.open(b"\x00" * 20 + b"\x0c\xfa\xfa", 0.0, False)
    assert SECRETS[0].hex() not in str(e.value)


# --- the sender ------------------------------------------------------------------------

from framecrypt import samples  # noqa: E402
from framecrypt.workers.dave.sender import Sender  # noqa: E402

CODECS = ["opus", "vp8", "vp9", "h264", "h265", "av1", "nope"]


def _senders(secret: bytes = SECRETS[0]) -> list[Sender]:
    return [Sender(ratchet.KeyRatchet(secret), native=False),
            Sender(ratchet.KeyRatchet(secret), native=True)]


def _same(senders: list[Sender], codec: str, data: bytes) -> tuple[str, Any]:
    got = [outcome(lambda s=s: s.seal(codec, data)) for s in senders]
    assert got[0] == got[1], (codec, data[:16], got)
    assert senders[0].nonce == senders[1].nonce, (codec, data[:16])
    return got[0]


def test_c_sender_seals_real_frames_as_the_reference() -> None:
    senders = _senders()
    rx = Receiver(native=False)
    rx.transition_to_key_ratchet(ratchet.KeyRatchet(SECRETS[0]), 0.0)
    frames = [("h264", f.data) for f in samples.video("h264", 30)]
    frames += [("h265", f.data) for f in samples.video("h265", 10)]
    frames += [("vp8", f.data) for f in samples.video("vp8", 30)]
    frames += [("opus", bytes([0x78]) + bytes(range(100)))] * 20
    opened = 0
    for codec, data in frames:
        kind, sealed = _same(senders, codec, data)
        assert kind == "ok"
        if codec not in ("h264", "h265"):  # (H.26x frames come back rewritten)
            assert rx.open(sealed, 1.0, codec == "opus") == data
            opened += 1
    assert opened == 50 and senders[1].nonce >= len(frames)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(CODECS), st.one_of(
    st.binary(max_size=60),
    st.lists(st.sampled_from([b"\x00\x00\x01", b"\x00\x00\x00\x01", b"\x65\x88\x84",
                              b"\x41\x9a", b"\x67\x42", b"\x00\x00\x03", b"\x01", b"\xff",
                              b"\x40\x01", b"\x26\x01\xaf"]), max_size=12).map(b"".join))),
    max_size=25),
    st.sampled_from([0, 5, (1 << 24) - 12, (1 << 24) - 3, (1 << 24) - 1, 0xFFFFFFF0]))
def test_c_sender_is_the_reference(frames: list[tuple[str, bytes]], start: int) -> None:
    """Random and NAL-shaped bytes for every codec (an unknown one too), from nonces next
    to a generation boundary and the 32-bit wrap: the same bytes or the same error, and
    the same nonce after each frame."""
    senders = _senders()
    for s in senders:
        s._jump(start, start >> 24)
    for codec, data in frames:
        _same(senders, codec, data)


def test_sender_repr_names_no_key() -> None:
    s = Sender(ratchet.KeyRatchet(SECRETS[1]), native=True)
    s.seal("opus", b"\x01\x02")
    assert "02020202" not in repr(s) and repr(s) == "Sender(nonce=1, generation=0)"


def test_pool_engine_h26x_retries_and_skew_match_the_reference() -> None:
    """The pool's DAVE engine seals H.26x frames with the C framing (``dave_seal_h26x``):
    H.265 units with 00 00 headers leak a start code for ~22 % of nonces, so retries
    happen; every sealed frame and the skew the worker reports (its replay floors) are
    the reference's, frame by frame, across an epoch change."""
    from framecrypt.workers.engine import Engine, EngineConfig

    data = b"".join(b"\x00\x00\x01\x00\x00" + bytes([5 + k]) for k in range(63))
    runs: dict[str, tuple[list[bytes], list[list[int]]]] = {}
    for kind in ("python", "auto"):
        with native.using(kind):
            e = Engine(EngineConfig(format="dave"))
            e.clock = lambda: 1000.0
            e.control("dave_key", [0, "u", 1, SECRETS[0], 0])
            sealed = [e.seal(0, data, "h265", False, 0, 0, c) for c in range(150)]
            e.control("dave_key", [0, "u", 2, SECRETS[1], 150])
            sealed += [e.seal(0, data, "h265", False, 0, 0, c) for c in range(150, 300)]
            runs[kind] = sealed, e.replay_floors(0)
    assert runs["python"] == runs["auto"]
    skews = dict((kid, v) for kid, v in runs["auto"][1] if kid % 2 == 0)
    assert skews[2] > 20 and skews[4] > 20, skews  # both epochs retried


# --- the pool engine's batch loop (workers/native_dave.py, fc_dave_run.inc) -------------

def _batch(engine: Any, op: int, counter0: int, frames: list[tuple[int, bytes]],
           room: int) -> tuple[list[tuple[int, int, int]], bytes, list[bytes]]:
    from array import array

    from framecrypt.transports import wire

    data = b"".join(f for _, f in frames)
    out = bytearray(room)
    res, spill, used = engine.run_packed(
        op, 0, counter0, -1, array("I", [len(f) for _, f in frames]),
        bytes(c for c, _ in frames), bytes(len(frames)), array("I", [0] * len(frames)),
        array("I", [0] * len(frames)), memoryview(data), memoryview(out))
    recs = [wire.RES.unpack_from(res, 12 * k) for k in range(len(frames))]
    return recs, bytes(out[:used]), spill


def test_pool_engine_batches_match_the_reference() -> None:
    """Batches of every codec (AV1 and an unknown codec byte take the full path), H.265
    frames that retry, an epoch change and a generation boundary inside a batch, outputs
    that do not fit, then the opening side with replays, tampered frames, the Opus
    silence and passthrough: the C loop's result records, outputs, spills, floors and
    counts are the pure engine's."""
    import random

    from framecrypt.transports import wire
    from framecrypt.workers.engine import Engine, EngineConfig

    rnd = random.Random(3)
    cid = {c: wire.CODECS.index(c) for c in ("opus", "vp8", "vp9", "h264", "h265", "av1")}
    leaky = b"".join(b"\x00\x00\x01\x00\x00" + bytes([5 + k]) for k in range(63))
    pool = [(cid["opus"], bytes(rnd.randbytes(rnd.randrange(1, 200)))) for _ in range(6)]
    pool += [(cid["vp8"], f.data) for f in samples.video("vp8", 6)]
    pool += [(cid["h264"], f.data) for f in samples.video("h264", 6)]
    pool += [(cid["h265"], leaky)] * 4 + [(cid["vp9"], b"\x82\x49\x83" * 30),
                                         (cid["av1"], b"\x12\x00\x0a\x0b\x00\x00\x00"),
                                         (250, b"unknown codec byte"), (cid["opus"], b"")]
    base1 = (1 << 24) - 40  # epoch 2's counters cross a generation after ~40 frames
    results: dict[str, list[Any]] = {}
    for kind in ("python", "auto"):
        rnd = random.Random(5)  # the same batches for both engines
        with native.using(kind):
            tx = Engine(EngineConfig(format="dave"))
            rx = Engine(EngineConfig(format="dave"))
            now = [0.0]
            for e in (tx, rx):
                e.clock = lambda now=now: now[0]  # type: ignore[misc]
                e.control("dave_key", [0, "u", 1, SECRETS[0], 0])
            got: list[Any] = []
            sealed: list[tuple[int, bytes]] = []
            counter = first = 0
            base2 = 1 << 40
            for round_ in range(12):
                if round_ == 4:
                    base2 = counter + 7
                    tx.control("dave_key", [0, "u", 2, SECRETS[1], base2])
                if round_ == 6:
                    counter = base1 + counter  # the broker's counters jump (a long call)
                frames = [rnd.choice(pool) for _ in range(30)]
                room = 60_000 if round_ != 3 else 3_000  # round 3: most outputs spill
                recs, outb, spill = _batch(tx, wire.OP_ENCRYPT, counter, frames, room)
                got.append((recs, outb, spill))
                blob = b"".join(spill)
                for at, ((c, _), (status, off, n)) in enumerate(zip(frames, recs, strict=True)):
                    if status == wire.ST_OK:
                        sealed.append((c, outb[off : off + n]))
                    elif status == wire.ST_INLINE:
                        sealed.append((c, blob[off : off + n]))
                    if status in (wire.ST_OK, wire.ST_INLINE) and counter + at < base2:
                        first += 1  # sealed in epoch 1
                counter += len(frames)
            got.append(tx.replay_floors(0))
            # the receiving side: epoch 1's frames, then epoch 2 (kept 10 s after the
            # change) once old enough for generation 1; then replays, tampering, silence
            now[0] = 1.0
            got.append(_batch(rx, wire.OP_DECRYPT, 0, sealed[:first], 80_000))
            rx.control("dave_key", [0, "u", 2, SECRETS[1], 0])
            now[0] = 2e5
            opens = [(c, f[:-12] + bytes([f[-12] ^ 1]) + f[-11:]) for c, f in sealed[-10:]]
            opens += sealed[first:] + rnd.sample(sealed, 20)  # (tampered first: not replays)
            opens += [(cid["opus"], frame.OPUS_SILENCE), (cid["vp8"], frame.OPUS_SILENCE),
                      (cid["vp8"], b"not a dave frame")]
            for at in range(0, len(opens), 25):
                got.append(_batch(rx, wire.OP_DECRYPT, 0, opens[at : at + 25], 80_000))
            rx.control("dave_passthrough", [0, "u", True])
            got.append(_batch(rx, wire.OP_DECRYPT, 0, opens[-3:] + sealed[-2:], 80_000))
            got += [rx.replay_floors(0), tx.counts, rx.counts]
            results[kind] = got
    py, c = results["python"], results["auto"]
    for at, (a, b) in enumerate(zip(py, c, strict=True)):
        assert a == b, at
    statuses = [s for part in py if isinstance(part, tuple) for s, _, _ in part[0]]
    assert statuses.count(wire.ST_AUTH) == 10, statuses  # the tampered ones
    assert statuses.count(wire.ST_REPLAYED) >= 20 and statuses.count(wire.ST_MALFORMED) >= 3
    assert statuses.count(wire.ST_OK) > 600 and statuses.count(wire.ST_INLINE) > 5
