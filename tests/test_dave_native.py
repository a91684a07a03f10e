"""The DAVE C path (workers/csrc/fc_dave.c) against the pure reference
(workers/dave/frame.py, footer.py): the same bytes sealed, the same frames opened, the
same nonces read, and where the reference raises, the C path stops (None) so the
reference takes the frame (docs/native.md's stop contract). Mutated, truncated and
hostile frames included; every frame with many clear ranges too."""

from __future__ import annotations

import os
import random
from typing import Any

import pytest
from native_helpers import require_native

from framecrypt.errors import FramecryptError
from framecrypt.workers import native
from framecrypt.workers.dave import footer, frame, ratchet

CI = os.environ.get("CI") == "true"
N: Any = native.NATIVE
KEY = ratchet.key_for_generation(bytes(range(16)), 0)


@pytest.fixture(autouse=True)
def _native_path() -> None:
    require_native("dave_open", "DAVE slice")


def _native_key() -> object:
    return N.AesGcm(KEY)


def _pure_key() -> object:
    with native.pure():
        return native.aesgcm(KEY)


def _pure_open(data: bytes) -> bytes | None:
    try:
        return frame.open_frame(_pure_key(), data)  # type: ignore[arg-type]
    except FramecryptError:
        return None


def _ranges(rng: random.Random, n: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    pos = 0
    while pos < n and len(out) < rng.randint(0, 80) and rng.random() < 0.9:
        off = rng.randint(pos, n)
        size = rng.randint(0, n - off)
        out.append((off, size))
        pos = off + size
    return out


def test_seal_is_byte_identical_with_the_reference() -> None:
    rng = random.Random(1)
    nk, pk = _native_key(), _pure_key()
    for i in range(20000):
        n = rng.choice([0, 1, 2, 9, 10, 11, rng.randint(0, 3000)])
        data = rng.randbytes(n)
        clear = rng.choice([0, 0, 1, 10, rng.randint(0, n)]) if n else 0
        clear = min(clear, n)
        nonce = rng.choice([0, 1, 127, 128, 1 << 24, 0xFFFFFFFF, rng.getrandbits(32)])
        ranges = [(0, clear)] if clear else []
        want = frame.seal(pk, nonce, data, ranges)  # type: ignore[arg-type]
        got = N.dave_seal(nk, nonce, data, clear)
        assert got == want, (i, n, clear, nonce)
        assert frame.seal(nk, nonce, data, ranges) == want  # type: ignore[arg-type]


def test_open_agrees_with_the_reference_on_mutated_frames() -> None:
    rng = random.Random(2)
    nk, pk = _native_key(), _pure_key()
    opened = stopped = 0
    for i in range(20000):
        n = rng.randint(0, 1500)
        data = rng.randbytes(n)
        ranges = _ranges(rng, n) if rng.random() < 0.5 else []
        sealed = frame.seal(pk, rng.getrandbits(32), data, ranges)  # type: ignore[arg-type]
        kind = rng.randrange(6)
        b = bytearray(sealed)
        if kind == 1 and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif kind == 2:
            del b[rng.randrange(len(b) + 1):]
        elif kind == 3 and len(b) >= 3:
            b[-3] = rng.randrange(256)  # the supplemental size
        elif kind == 4:
            b = bytearray(rng.randbytes(rng.randint(0, 60))) + b"\xfa\xfa"
        x = bytes(b)
        want = _pure_open(x)
        got = N.dave_open(nk, x)
        if len(ranges) > 64 and kind == 0:
            assert got is None and want == data  # the reference takes many ranges
        else:
            assert got == want, (i, kind, len(ranges))
        if want is not None:
            opened += 1
            # the engine's entry point takes both paths to the same answer
            assert frame.open_parsed(nk, x, frame.quick_footer(x)) == want  # type: ignore
        else:
            stopped += 1
        try:
            f = footer.parse(x)
        except FramecryptError:
            assert N.dave_nonce(x) == -1
        else:
            assert N.dave_nonce(x) == (-1 if len(f.ranges) > 64 else f.nonce)
    assert opened > 5000 and stopped > 5000


def test_hostile_inputs_never_crash_and_leave_no_plaintext() -> None:
    rng = random.Random(3)
    nk = _native_key()
    for _ in range(50000):
        junk = rng.randbytes(rng.randint(0, 40))
        tail = bytes([rng.randint(0, 255)]) + b"\xfa\xfa"
        for x in (junk, junk + tail, junk + b"\xff" * 12 + tail):
            assert N.dave_open(nk, x) is None  # (no key opens random bytes)
            assert N.dave_nonce(x) >= -1
    with pytest.raises(ValueError):
        N.dave_seal(nk, 1 << 32, b"x", 0)
    with pytest.raises(ValueError):
        N.dave_seal(nk, 1, b"x", -1)
    assert N.dave_seal(nk, 1, b"x", 2) is None  # clear past the frame: the reference
    with pytest.raises(TypeError):
        N.dave_open(b"not a key", b"x")
