"""Helpers for tests/test_native_diff.py: random frames of every codec (real Annex B for
H.264/H.265, with the shapes that take the odd paths of the NAL scan), and an engine
pair that runs every call on the native path and on the pure reference side by side
and requires identical results.

The pure engine is created, and every one of its methods called, inside
``native.pure()``: key objects it makes there (keysets, ratchets, ratchet candidates
of a failed open) are cryptography's ``AESGCM`` and its batch loop is the Python one.
The native engine's calls run inside ``native.using(kind)`` (``evp``/``ipsec-mb``).
"""

from __future__ import annotations

import os
import random
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from framecrypt.transports import wire
from framecrypt.workers import native
from framecrypt.workers.engine import Engine, EngineConfig, reply_size

# --- random frames ----------------------------------------------------------------------

H264_PARAMS = (b"\x67", b"\x68", b"\x06", b"\x09", b"\x0c")  # SPS PPS SEI AUD filler
H264_SLICES = (b"\x65", b"\x41", b"\x01", b"\x25", b"\x21", b"\x61")  # IDR, non-IDR
# VPS SPS PPS SEI AUD
H265_PARAMS = (b"\x40\x01", b"\x42\x01", b"\x44\x01", b"\x4e\x01", b"\x46\x01")
H265_SLICES = (b"\x26\x01", b"\x28\x01", b"\x2a\x01", b"\x02\x01", b"\x00\x01", b"\x20\x01")
EMULATION = (b"\x00\x00\x03", b"\x00\x00\x03\x01", b"\x00\x00\x00", b"\x00\x00\x02",
             b"\x00\x00\x01", b"\x00\x00\x03\x00\x00\x03", b"\x00\x00")
START_CODES = (b"\x00\x00\x01", b"\x00\x00\x00\x01")


class Payloads:
    """Random bytes cut from one pool (cheap: a slice, not a fresh draw per frame)."""

    def __init__(self, rng: random.Random, size: int = 1 << 20) -> None:
        self.rng = rng
        self.pool = rng.randbytes(size)
        self.size = size

    def take(self, n: int) -> bytes:
        if n <= 0:
            return b""
        if n >= self.size:
            return self.rng.randbytes(n)
        off = self.rng.randrange(self.size - n + 1)
        return self.pool[off : off + n]


def frame_size(rng: random.Random) -> int:
    """Mostly 0..1500 bytes (with the short sizes around the clear headers and the
    30-byte overhead overweighted), some up to ~70 KB."""
    r = rng.random()
    if r < 0.03:
        return 0
    if r < 0.15:
        return rng.randint(1, 45)
    if r < 0.982:
        return rng.randint(0, 1500)
    if r < 0.996:
        return rng.randint(1500, 16_000)
    return rng.randint(16_000, 70_000)


def _nal_body(rng: random.Random, pay: Payloads, n: int) -> bytes:
    """A NAL unit payload of about ``n`` bytes; sometimes with emulation-prone runs."""
    body = pay.take(n)
    if n and rng.random() < 0.3:
        parts = [body]
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(parts[-1]) + 1)
            last = parts.pop()
            parts += [last[:at], rng.choice(EMULATION), last[at:]]
        body = b"".join(parts)
    if rng.random() < 0.05:
        body += b"\x00" * rng.randint(1, 3)  # trailing_zero_8bits
    return body


def _start_code(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.5:
        return START_CODES[0]
    if r < 0.95:
        return START_CODES[1]
    return b"\x00" * rng.randint(3, 6) + b"\x01"


def annexb(rng: random.Random, pay: Payloads, codec: str, size: int) -> bytes:
    """An H.264/H.265 Annex B frame of about ``size`` bytes, in one of the shapes the
    NAL scan must get right."""
    h265 = codec == "h265"
    if rng.random() < 0.05:  # the other codec's NAL types (the bytes outrank the codec)
        h265 = not h265
    params, slices = (H265_PARAMS, H265_SLICES) if h265 else (H264_PARAMS, H264_SLICES)
    shape = rng.random()
    if shape < 0.04:  # no start code at all
        return pay.take(size)
    units: list[bytes] = []
    if shape < 0.07:  # leading data
        units.append(pay.take(rng.randint(1, 8)))
    if shape < 0.10:  # no slice NAL unit
        for _ in range(rng.randint(1, 4)):
            units += [_start_code(rng), rng.choice(params), _nal_body(rng, pay, rng.randint(0, 40))]
        return b"".join(units)
    if shape < 0.12:  # many NAL units before the slice (the C scan's > 64 path)
        for _ in range(rng.randint(50, 90)):
            units += [rng.choice(START_CODES), rng.choice(params), pay.take(rng.randint(0, 3))]
    elif shape < 0.14:  # growth-heavy header: short units behind 3-byte start codes
        for _ in range(rng.randint(5, 60)):
            units += [START_CODES[0], rng.choice(params), pay.take(rng.randint(0, 2))]
    else:
        if rng.random() < 0.3:
            units += [_start_code(rng), params[3] if not h265 else params[4], b"\xf0"]
        if rng.random() < 0.5:
            for p in params[:3] if not h265 else params[:4]:
                units += [_start_code(rng), p, _nal_body(rng, pay, rng.randint(2, 30))]
        for _ in range(rng.choice((0, 0, 0, 1, 2))):
            units += [_start_code(rng), params[2] if not h265 else params[3],
                      _nal_body(rng, pay, rng.randint(0, 60))]
    head = b"".join(units)
    if shape < 0.16:  # the slice NAL header at the very end (clear bytes > length)
        return head + _start_code(rng) + rng.choice(slices)[: rng.randint(1, 2)]
    nslices = rng.choice((1, 1, 1, 2, 3))
    body_len = max(size - len(head) - 4 * nslices, 0)
    out = [head]
    for s in range(nslices):
        share = body_len // nslices if s < nslices - 1 else body_len - body_len // nslices * s
        out += [_start_code(rng), rng.choice(slices), _nal_body(rng, pay, share)]
    if rng.random() < 0.04:
        out.append(b"\x00" * rng.randint(1, 8))  # trailing zeros
    return b"".join(out)


def random_frame(rng: random.Random, pay: Payloads, codec: str) -> bytes:
    size = frame_size(rng)
    if codec in ("h264", "h265") and size and rng.random() < 0.92:
        return annexb(rng, pay, codec, size)
    return pay.take(size)


# --- engines side by side ---------------------------------------------------------------


@dataclass
class Reply:
    res: bytes
    out: bytes  # out[:used]
    spill: list[bytes]
    used: int

    def statuses(self) -> list[int]:
        return [s for s, _, _ in wire.RES.iter_unpack(self.res)]

    def outcome(self, k: int) -> bytes | int:
        status, off, ln = wire.RES.unpack_from(self.res, 12 * k)
        if status == wire.ST_OK:
            return self.out[off : off + ln]
        if status == wire.ST_INLINE:
            return b"".join(self.spill)[off : off + ln]
        return int(status)


def first_difference(a: Reply, b: Reply, n: int) -> str:
    for k in range(n):
        ra, rb = a.res[12 * k : 12 * k + 12], b.res[12 * k : 12 * k + 12]
        if ra != rb or a.outcome(k) != b.outcome(k):
            return (f"frame {k}: native {wire.RES.unpack(ra)} {_short(a.outcome(k))} vs pure "
                    f"{wire.RES.unpack(rb)} {_short(b.outcome(k))}")
    return f"used {a.used} vs {b.used}, {len(a.spill)} vs {len(b.spill)} spilled"


def _short(x: bytes | int) -> str:
    return str(x) if isinstance(x, int) else f"{len(x)}B {x[:24].hex()}…"


@dataclass
class Pair:
    """A native engine and a pure engine with the same config, driven identically."""

    config: EngineConfig
    kind: str = "auto"
    nat: Engine = field(init=False)
    ref: Engine = field(init=False)
    native_full: int = 0  # frames the native engine's C loop handed to the full path
    native_frames: int = 0

    def __post_init__(self) -> None:
        with native.using(self.kind):
            self.nat = Engine(self.config)
        with native.pure():
            self.ref = Engine(self.config)
        assert self.nat._rules and not self.ref._rules
        real = self.nat._full

        def counted(*args: Any, **kw: Any) -> tuple[int, int, int]:
            self.native_full += 1
            got: tuple[int, int, int] = real(*args, **kw)
            return got

        setattr(self.nat, "_full", counted)  # noqa: B010 (an instance attribute over the method)

    def both(self, fn: Callable[[Engine], Any]) -> tuple[Any, Any]:
        """``fn`` on each engine in its context; returns (native, pure) results or the
        exceptions they raised (type and args), for the caller to compare."""
        got: list[Any] = []
        for eng, ctx in ((self.nat, native.using(self.kind)), (self.ref, native.pure())):
            with ctx:
                try:
                    got.append(fn(eng))
                except Exception as e:
                    got.append((type(e), e.args))
        return got[0], got[1]

    def control(self, op: str, args: list[Any]) -> Any:
        a, b = self.both(lambda e: e.control(op, list(args)))
        assert a == b, f"control {op}: native {a!r} vs pure {b!r}"
        return a

    def run(self, op: int, pidx: int, counter0: int, epoch: int, lengths: Sequence[int],
            codecs: bytes, flags: bytes, ssrcs: Sequence[int], timestamps: Sequence[int],
            inp: bytes, out_size: int | None = None, stateless: bool = False,
            production: bool = False) -> Reply:
        """One ``run_packed`` call on both engines (each its own out buffer); asserts the
        replies are identical, returns the native one."""
        a, b = self.run_both(op, pidx, counter0, epoch, lengths, codecs, flags, ssrcs,
                             timestamps, inp, out_size, stateless, production)
        if a != b:
            raise AssertionError(f"op {op} pidx {pidx}: {first_difference(a, b, len(lengths))}")
        return a

    def run_both(self, op: int, pidx: int, counter0: int, epoch: int, lengths: Sequence[int],
                 codecs: bytes, flags: bytes, ssrcs: Sequence[int], timestamps: Sequence[int],
                 inp: bytes, out_size: int | None = None, stateless: bool = False,
                 production: bool = False) -> tuple[Reply, Reply]:
        """One ``run_packed`` call on both engines: (native reply, pure reply). The out
        buffer is ``bytearray(reply_size(…))`` (or of ``out_size`` bytes); with
        ``production`` it is the engine's own ``output_buffer`` (on the native path not
        zeroed up front: the heap is dirtied first, and the loop must clear what it
        did not write)."""
        n = len(lengths)
        size = reply_size(op, n, len(inp)) if out_size is None else out_size
        lens, ss, ts = array("I", lengths), array("I", ssrcs), array("I", timestamps)
        before = self.native_full
        tails: list[int] = []

        def call(e: Engine) -> Reply:
            if production and out_size is None:
                junk = bytearray(b"\xa5") * size
                del junk
                out = e.output_buffer(op, n, len(inp))
                assert len(out) == size
            else:
                out = bytearray(size)
            res, spill, used = e.run_packed(op, pidx, counter0, epoch, lens, codecs, flags, ss,
                                            ts, memoryview(inp), memoryview(out),
                                            stateless=stateless)
            tails.append(len(out) - used - out.count(0, used))
            return Reply(bytes(res), bytes(out[:used]), list(spill), used)

        a, b = self.both(call)
        if isinstance(a, tuple) or isinstance(b, tuple):
            raise AssertionError(f"run_packed raised: native {a!r}, pure {b!r}")
        if tails[0]:
            raise AssertionError(f"native: {tails[0]} non-zero bytes in out after the outputs")
        self.native_frames += n - (self.native_full - before)
        return a, b

    def state(self, pidx: int) -> tuple[Any, Any]:
        """Key ring state of a participant in both engines: (generation per slot,
        failures per slot, current index)."""

        def st(e: Engine) -> Any:
            p = e.participants.get(pidx)
            if p is None or p.cryptor is None:
                return None
            ring = p.cryptor.ring
            keys = [ring.get(i) for i in range(ring.size)]
            return ([None if ks is None else ks.generation for ks in keys],
                    [ring.failures(i) for i in range(ring.size)], ring.current_index)

        return st(self.nat), st(self.ref)

    def check_same_state(self, pidx: int) -> None:
        a, b = self.state(pidx)
        assert a == b, f"participant {pidx} key state: native {a} vs pure {b}"
        assert self.nat.events == self.ref.events, "engine.events differ"
        assert self.nat.counts == self.ref.counts, (self.nat.counts, self.ref.counts)


FORCED_PURE = os.environ.get("FRAMECRYPT_NATIVE") == "0"
CI = os.environ.get("CI") == "true"


def require_native(attr: str, what: str) -> None:
    """For a test of the extension's ``attr``: skipped only with FRAMECRYPT_NATIVE=0
    (make test's pure pass); a missing extension fails under CI and is skipped with
    the reason elsewhere."""
    if FORCED_PURE:
        pytest.skip("FRAMECRYPT_NATIVE=0: the pure core runs")
    if native.NATIVE is None or not hasattr(native.NATIVE, attr):
        if CI:
            pytest.fail(f"CI: the extension's {what} must run ({native.info()['why']})")
        pytest.skip(f"extension not running here: {native.info()['why']}")
