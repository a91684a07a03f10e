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

from framecrypt.workers import native
from framecrypt.workers.dave import frame, ratchet
from framecrypt.workers.dave.receiver import Receiver

pytestmark = pytest.mark.skipif(native.NATIVE is None, reason="the extension is not built")

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
