"""A worker never dies of a message (DESIGN invariant 6).

300,000 hostile messages go straight into an in-process WorkerService with a real
engine (150,000 with shm rings, 150,000 without): random bytes, random msgpack arrays
with the right version and kinds, valid messages with one field made wrong (a wrong
type, an int of 2³² or more, a negative one), a field dropped or added, a blob
truncated or grown, a part dropped or added, PACKED segments outside their buffers,
CONFIGs naming segments that cannot be attached, the broker's own kinds, and valid
messages in between; the retired per-frame BATCH (kind 2), well formed as old brokers
sent it, is garbage like the rest. handle() never raises; every message known to be malformed is
counted in protocol_errors and answered with nothing, except that every CONTROL whose
seq decodes gets exactly one ACK; the engine and the rings stay the ones configured;
every reply parses as a worker → broker message; and afterwards a PACKED batch still
seals frames that the pure core opens. One more test does the same to a real worker
process over ZeroMQ.
"""

from __future__ import annotations

import collections
import os
import random
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

from framecrypt import livekit
from framecrypt.transports import wire
from framecrypt.transports.shm import Segment
from framecrypt.transports.to_broker import Ack, Pong, Ready, Result, parse_to_broker
from framecrypt.transports.to_worker import Config, Control, Packed, Rings, SegmentHead
from framecrypt.workers.engine import EngineConfig
from framecrypt.workers.service import WorkerService

pytestmark = pytest.mark.timeout(240)

# per configuration (with and without shm): 300,000 in all
N = int(os.environ.get("FRAMECRYPT_HOSTILE_N", 150_000))
SIZE = 1 << 16  # ring size
KEY = b"hostile".ljust(32, b"#")
FINAL = 0xFFFF_FFF0  # the participant of the final check: no garbage names it
U32, U64 = 2**32 - 1, 2**64 - 1
HOSTILE: tuple[Any, ...] = (-1, -(2**63), 2**32, 2**32 + 7, 2**64 - 1, True, False, 0.5, "1",
                            b"1", None, [], {})
V = wire.VERSION
MUST, MUST_NOT, UNKNOWN = True, False, None  # counted as a protocol error?
# the per-frame descriptor of the retired BATCH (kind 2): what an old broker sends
OLD_REQ = struct.Struct("<BBBxIIIQIIII")


def le32(values: list[int]) -> bytes:
    return struct.pack(f"<{len(values)}I", *values)


@dataclass
class Template:
    """A valid message and where its int fields are (path into the header, lo, hi)."""

    header: list[Any]
    blobs: list[bytes]
    ints: list[tuple[tuple[Any, ...], int, int]]
    exact: tuple[int, ...] = ()  # blobs whose size the parser checks
    sendable: bool = True  # False: valid CONFIG (would replace the service's state)
    retired: bool = False  # a kind no worker takes any more: refused however well formed


def templates(shm: bool, rings: Rings) -> list[Template]:
    cols = le32([4, 5, 6]) + le32([1, 2, 3]) + le32([9, 9, 9]) + bytes([0, 5, 1, 1, 0, 0])
    heads = [[wire.OP_ENCRYPT, 5, 0, 2, 0, 0], [wire.OP_DECRYPT, 6, 0, 1, 9, 4096]]
    desc = OLD_REQ.pack(1, 0, 0, 5, 1, 2, 3, 0, 4, 0, 100) + \
        OLD_REQ.pack(2, 5, 0, 6, 1, 2, 3, 4, 4, 100, 4)
    payload = [] if shm else [bytes(range(15))]
    seq = ((2,), 0, U64)
    return [
        Template([V, wire.PACKED, 7, 3, -1, heads], [cols, *payload],
                 [((2,), 0, U64), ((3,), 3, 3), ((4,), -1, U32), ((5, 0, 0), 1, 2),
                  ((5, 0, 1), 0, U32), ((5, 0, 2), 0, U64), ((5, 0, 3), 2, 2),
                  ((5, 0, 4), 0, U64), ((5, 1, 3), 1, 1), ((5, 1, 5), 0, U64)], exact=(0,)),
        Template([V, wire.BATCH, 8, 2], [desc, *payload], [((2,), 0, U64), ((3,), 2, 2)],
                 exact=(0,), retired=True),
        Template([V, wire.CONTROL, 11, "keyset", 5, "five", 0, b"k" * 32, None, 0, True], [],
                 [seq, ((4,), 0, U32), ((6,), 0, U64), ((9,), 0, 1 << 16)]),
        Template([V, wire.CONTROL, 12, "ratchet", 5, 0], [], [seq, ((4,), 0, U32),
                                                            ((5,), 0, U64)]),
        Template([V, wire.CONTROL, 13, "remove", 6], [], [seq, ((4,), 0, U32)]),
        Template([V, wire.CONTROL, 14, "replay_floor", 5, [[1, 2]]], [],
                 [seq, ((4,), 0, U32), ((5, 0, 0), 0, U64), ((5, 0, 1), 0, U64)]),
        Template([V, wire.PING, 0], [], []),
        Template([V, wire.STOP], [], []),
        Template([V, wire.CONFIG, {"format": "livekit", "keyring_size": 16, "ratchet_window": 8},
                  [rings.request, rings.reply, rings.size, rings.dir]], [],
                 [((2, "keyring_size"), 1, 256), ((2, "ratchet_window"), 0, 256),
                  ((3, 2), SIZE, SIZE)], sendable=False),
    ]


def bad_configs(rings: Rings, d: Path) -> list[list[Any]]:
    """CONFIGs fine on the wire whose segments cannot be attached."""
    (d / "public").write_bytes(bytes(SIZE))
    os.chmod(d / "public", 0o644)
    (d / "empty").touch(0o600)
    (d / "link").symlink_to(d / rings.request)
    (d / "adir").mkdir()
    cfg = EngineConfig().as_wire()
    out: list[list[Any]] = []
    for req, rep, size, where in [
            ("nope-req", "nope-rep", SIZE, rings.dir), (rings.request, rings.reply, SIZE + 64,
                                                         rings.dir),
            (rings.request, rings.reply, SIZE, str(d / "missing")),
            (rings.request, "nope-rep", SIZE, rings.dir), ("../x", rings.reply, SIZE, rings.dir),
            ("a/b", rings.reply, SIZE, rings.dir), ("public", rings.reply, SIZE, rings.dir),
            ("empty", rings.reply, SIZE, rings.dir), ("link", rings.reply, SIZE, rings.dir),
            (rings.request, "adir", SIZE, rings.dir), (rings.request, rings.reply, SIZE,
                                                       str(d / "public")),
            ("." * 300, rings.reply, SIZE, rings.dir)]:
        out.append(Config(cfg, Rings(req, rep, size, where)).encode())
    return out


def _set(header: list[Any], path: tuple[Any, ...], value: Any) -> list[Any]:
    """A copy of ``header`` with the field at ``path`` replaced (containers on the path
    copied, the rest shared)."""
    top = list(header)
    node: Any = top
    for key in path[:-1]:
        child = node[key]
        node[key] = child = list(child) if isinstance(child, list) else dict(child)
        node = child
    node[path[-1]] = value
    return top


class Garbage:
    """Hostile messages, each with whether it must be counted (MUST / MUST_NOT /
    UNKNOWN), generated cheaply from a fixed seed."""

    def __init__(self, seed: int, shm: bool, rings: Rings, d: Path, *,
                 stop: bool = True) -> None:
        self.rng = random.Random(seed)
        self.shm = shm
        self.templates = templates(shm, rings)
        self.configs = bad_configs(rings, d)
        self.stop = stop  # may a valid STOP be sent (not to a process we still need)
        r = self.rng
        leaves: list[Any] = [*HOSTILE, 0, 1, 2, 3, 5, 6, 16, 255, 2**31, r.getrandbits(64),
                             "", "keyset", "ratchet", "remove", "replay_floor", "hkdf", "x" * 40,
                             b"", r.randbytes(40), 1.5, float("inf"), float("nan")]
        self.values = leaves + [[r.choice(leaves) for _ in range(r.randint(0, 6))]
                                for _ in range(40)] + [{"format": r.choice(leaves)}, {"": 1}]
        self.blobs = [b"", bytes(13), r.randbytes(40), r.randbytes(42), r.randbytes(300),
                      *self.templates[0].blobs, *self.templates[1].blobs]
        self.others = [Ready(1, 0).encode(), Pong(0).encode(), Ack(1, True).encode(),
                       Result(1, 1, wire.RES.pack(0, 0, 0), b"", (0,), ((),), 0.0).encode(),
                       [wire.pack(wire.RESULT, 1, 1), wire.RES.pack(0, 0, 0)],
                       [wire.pack(wire.EVENT, ["KeyMissing", 1, 0])]]
        self.kinds = [wire.BATCH, wire.PACKED, wire.CONTROL, wire.PING, wire.READY,
                      wire.RESULT, wire.ACK, 0, 7, 99, *([wire.STOP] if stop else [])]
        self.makers = [self.mutated_int, self.mutated_int, self.mutated_arity,
                       self.mutated_blob, self.mutated_parts, self.outside, self.config,
                       self.other_kind, self.valid, self.valid_packed, self.retired,
                       self.random_fields, self.random_fields, self.random_bytes]

    def __iter__(self) -> Iterator[tuple[list[Any], bool | None]]:
        makers, choice = self.makers, self.rng.choice
        while True:
            yield choice(makers)()

    def _pack(self, header: list[Any], blobs: list[bytes]) -> list[Any]:
        return [msgpack.packb(header, use_bin_type=True), *blobs]

    def mutated_int(self) -> tuple[list[Any], bool | None]:
        t = self.rng.choice([t for t in self.templates if t.ints])
        path, lo, hi = self.rng.choice(t.ints)
        value = self.rng.choice([v for v in HOSTILE if type(v) is not int or not lo <= v <= hi])
        return self._pack(_set(t.header, path, value), t.blobs), MUST

    def mutated_arity(self) -> tuple[list[Any], bool | None]:
        t = self.rng.choice(self.templates)
        h = list(t.header)
        if len(h) > 2 and self.rng.random() < 0.5:
            del h[self.rng.randrange(2, len(h))]
        else:
            h.insert(self.rng.randrange(2, len(h) + 1), self.rng.choice(self.values))
        return self._pack(h, t.blobs), MUST

    def mutated_blob(self) -> tuple[list[Any], bool | None]:
        t = self.rng.choice(self.templates[:2])
        i = self.rng.randrange(len(t.blobs))
        blobs = list(t.blobs)
        k = self.rng.randint(1, 20)
        blobs[i] = blobs[i][:-k] if self.rng.random() < 0.5 else blobs[i] + bytes(k)
        return self._pack(t.header, blobs), MUST if i in t.exact or t.retired else UNKNOWN

    def mutated_parts(self) -> tuple[list[Any], bool | None]:
        t = self.rng.choice(self.templates[:-1])
        blobs = list(t.blobs)
        if blobs and self.rng.random() < 0.5:
            blobs.pop()
        else:
            blobs.append(self.rng.choice(self.blobs))
        return self._pack(t.header, blobs), MUST

    def outside(self) -> tuple[list[Any], bool | None]:
        """PACKED frames whose payloads or outputs lie outside their buffer."""
        lengths = [self.rng.choice([4, 100, 70000, U32]) for _ in range(3)]
        room = SIZE if self.shm else 15
        in_base = self.rng.choice([0, room - 3, room, 2**40])
        out_base = self.rng.choice([0, SIZE - 10, SIZE, 2**63]) if self.shm else 0
        if sum(lengths) + in_base <= room and (not self.shm or out_base == 0):
            in_base = room  # keep it outside
        cols = le32(lengths) + bytes(24) + bytes([0, 1, 2, 0, 0, 0])
        head = [self.rng.choice([1, 2]), 5, 0, 3, in_base, out_base]
        return self._pack([V, wire.PACKED, 9, 3, -1, [head]],
                          [cols] + ([] if self.shm else [bytes(15)])), MUST

    def config(self) -> tuple[list[Any], bool | None]:
        return self.rng.choice(self.configs), MUST

    def other_kind(self) -> tuple[list[Any], bool | None]:
        return self.rng.choice(self.others), MUST

    def valid(self) -> tuple[list[Any], bool | None]:
        t = self.rng.choice([t for t in self.templates if t.sendable and not t.retired and
                             (self.stop or t.header[1] != wire.STOP)])
        return self._pack(t.header, t.blobs), MUST_NOT

    def retired(self) -> tuple[list[Any], bool | None]:
        """A message of a retired kind (BATCH), as well formed as it ever was."""
        t = self.rng.choice([t for t in self.templates if t.retired])
        return self._pack(t.header, t.blobs), MUST

    def valid_packed(self) -> tuple[list[Any], bool | None]:
        """A valid PACKED batch of random frames (garbage payloads to open, too)."""
        r = self.rng
        n = r.randint(1, 6)
        lengths = [r.randint(0, 60) for _ in range(n)]
        cols = le32(lengths) + le32([r.getrandbits(32) for _ in range(2 * n)]) + \
            bytes(r.randrange(len(wire.CODECS)) for _ in range(n)) + r.randbytes(n)
        head = [r.choice([1, 2]), r.randint(0, 9), r.getrandbits(40), n, 0, 0]
        payload = r.randbytes(sum(lengths))
        if self.shm:
            return self._pack([V, wire.PACKED, r.getrandbits(64), n, -1, [head]], [cols]), \
                MUST_NOT
        return self._pack([V, wire.PACKED, 9, n, r.choice([-1, 7]), [head]],
                          [cols, payload]), MUST_NOT

    def random_fields(self) -> tuple[list[Any], bool | None]:
        r = self.rng
        header = [V, r.choice(self.kinds), *(r.choice(self.values)
                                             for _ in range(r.randint(0, 7)))]
        blobs = [r.choice(self.blobs) for _ in range(r.randint(0, 3))]
        return self._pack(header, blobs), UNKNOWN

    def random_bytes(self) -> tuple[list[Any], bool | None]:
        return [self.rng.randbytes(self.rng.randint(0, 40))
                for _ in range(self.rng.randint(0, 3))], UNKNOWN


def control_seq(parts: list[Any]) -> int | None:
    """The seq of a CONTROL whose header decodes (the worker must ACK it), else None."""
    if not parts:
        return None
    try:
        h = msgpack.unpackb(parts[0], raw=False, strict_map_key=True)
    except Exception:
        return None
    if type(h) is list and len(h) > 2 and type(h[0]) is int and h[0] == V and \
            type(h[1]) is int and h[1] == wire.CONTROL and type(h[2]) is int and \
            0 <= h[2] <= U64:
        return h[2]
    return None


def final_batch(shm: bool, n: int = 24) -> tuple[list[bytes], Packed]:
    """A valid PACKED batch sealing ``n`` VP8 frames for :data:`FINAL`."""
    rng = random.Random(5)
    frames = [rng.randbytes(rng.randint(20, 2000)) for _ in range(n)]
    lengths = [len(f) for f in frames]
    cols = le32(lengths) + le32([0xABCD] * n) + le32([i * 3000 for i in range(n)]) + \
        bytes(n) + bytes([1] + [0] * (n - 1))
    head = SegmentHead(wire.OP_ENCRYPT, FINAL, 1000, n, 0, 0)
    return frames, Packed(2**64 - 1, n, -1, (head,), cols,
                          None if shm else b"".join(frames))


def check_sealed(frames: list[bytes], result: Result, outputs: bytes | memoryview) -> None:
    key = livekit.derive_key(KEY)
    for i, f in enumerate(frames):
        status, off, n = wire.RES.unpack_from(result.results, 12 * i)
        assert status == wire.ST_OK
        sealed = bytes(outputs[off : off + n])
        assert livekit.unprotect(sealed, key=key, codec="vp8", keyframe=i == 0) == f


@pytest.fixture
def rings(tmp_path: Path) -> Iterator[tuple[Segment, Segment, Rings]]:
    tag = f"fc-hostile-{os.getpid()}"
    req = Segment.create(f"{tag}-req", SIZE, dir=str(tmp_path))
    rep = Segment.create(f"{tag}-rep", SIZE, dir=str(tmp_path))
    try:
        yield req, rep, Rings(req.name, rep.name, SIZE, str(tmp_path))
    finally:
        for seg in (req, rep):
            seg.close()
            seg.unlink()


@pytest.mark.parametrize("shm", [False, True], ids=["payload-blobs", "shm-rings"])
def test_150k_hostile_messages_never_break_an_in_process_worker(
        shm: bool, rings: tuple[Segment, Segment, Rings], tmp_path: Path) -> None:
    req, rep, names = rings
    svc = WorkerService(0)
    assert svc.handle(Config(EngineConfig().as_wire(), names if shm else None).encode()) == []
    (ack,) = svc.handle(Control(2**63, "keyset", (FINAL, "final", 0, KEY, None, 0, True)
                                ).encode())
    assert parse_to_broker(ack) == Ack(2**63, True, ("hkdf",))
    engine, rings_before = svc.engine, (svc.req, svc.rep)
    assert engine is not None and svc.protocol_errors == 0

    counted = must = acks = 0
    seen: collections.Counter[bool | None] = collections.Counter()
    handle = svc.handle
    garbage = iter(Garbage(1 + shm, shm, names, tmp_path))
    for _ in range(N):
        parts, label = next(garbage)
        before = svc.protocol_errors
        replies = handle(parts)  # must not raise
        delta = svc.protocol_errors - before
        seen[label] += 1
        counted += delta
        assert delta in (0, 1)
        if label is MUST:
            must += 1
            assert delta == 1, parts
        elif label is MUST_NOT:
            assert delta == 0, parts
        seq = control_seq(parts)
        got = [parse_to_broker(r) for r in replies]  # what a worker says always parses
        acked = [m for m in got if isinstance(m, Ack)]
        if seq is None:
            assert not acked
            if delta:
                assert replies == []
        else:
            assert [a.seq for a in acked] == [seq], parts
            assert len(got) == 1
            acks += 1
            if delta:
                assert not acked[0].ok
    assert svc.protocol_errors == counted >= must > N // 3
    assert acks > N // 50 and seen[MUST_NOT] > N // 20 and seen[UNKNOWN] > N // 20
    # the state configured before is the state after: no CONFIG took, nothing closed
    assert svc.engine is engine and (svc.req, svc.rep) == rings_before
    assert all(s is None or not s.closed for s in rings_before)

    # and it still seals (with the key set before the garbage)
    frames, batch = final_batch(shm)
    if shm:
        req.view[: sum(map(len, frames))] = b"".join(frames)
    *_, reply = svc.handle(batch.encode())
    result = parse_to_broker(reply)
    assert isinstance(result, Result) and result.batch_id == 2**64 - 1 and result.count == 24
    check_sealed(frames, result, rep.view[: result.used[0]] if shm else result.outputs or b"")
    assert svc.protocol_errors == counted


def _recv(sock: zmq.Socket[bytes], timeout_s: float) -> list[bytes]:
    if not sock.poll(int(timeout_s * 1000), zmq.POLLIN):
        raise TimeoutError("no message from the worker")
    return sock.recv_multipart()


def test_a_worker_process_survives_garbage_and_still_serves_frames(
        rings: tuple[Segment, Segment, Rings], tmp_path: Path) -> None:
    """The process the pool spawns, on a ROUTER socket of our own: garbage, then a
    marker PING, then a batch; exactly one ACK per decodable CONTROL seq."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    endpoint = f"ipc://{tmp_path}/worker.sock"
    router.bind(endpoint)
    proc = subprocess.Popen([sys.executable, "-m", "framecrypt.workers.process", "--connect",
                             endpoint, "--slot", "3", "--identity", "hostile-w",
                             "--interval", "0.25", "--liveness", "400"],
                            stdin=subprocess.DEVNULL)
    try:
        ident, *hello = _recv(router, 60)
        assert parse_to_broker(hello) == Ready(proc.pid, 3)

        def send(parts: list[Any]) -> None:
            router.send_multipart([ident, *parts])

        send(Config(EngineConfig().as_wire(), None).encode())
        send(Control(2**63, "keyset", (FINAL, "final", 0, KEY, None, 0, True)).encode())
        expected: collections.Counter[int] = collections.Counter([2**63])
        garbage = iter(Garbage(3, False, rings[2], tmp_path, stop=False))
        for _ in range(5000):
            parts, _ = next(garbage)
            seq = control_seq(parts)
            if seq is not None:
                expected[seq] += 1
            send(parts)
        send([wire.pack(wire.PING, 424242)])
        acked: collections.Counter[int] = collections.Counter()
        while True:
            msg = parse_to_broker(_recv(router, 60)[1:])
            if isinstance(msg, Ack):
                acked[msg.seq] += 1
            if msg == Pong(424242):
                break
        assert acked == expected
        assert proc.poll() is None

        frames, batch = final_batch(False)
        send(batch.encode())
        while not isinstance(result := parse_to_broker(_recv(router, 60)[1:]), Result):
            pass
        check_sealed(frames, result, result.outputs or b"")
        send([wire.pack(wire.STOP)])
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        router.close(0)
        ctx.term()
