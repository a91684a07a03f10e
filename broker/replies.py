"""What a worker may say to the broker, parsed whole or refused with ProtocolError
(every field the broker reads is checked here: types, ranges, arity).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from framecrypt.errors import ProtocolError
from framecrypt.transports import wire

U32 = 0xFFFFFFFF


def _int(v: object, hi: int = 1 << 64) -> int:
    if type(v) is not int or not 0 <= v < hi:
        raise ProtocolError("bad integer field")
    return v


@dataclass(frozen=True, slots=True)
class Ready:
    pid: int
    slot: int


@dataclass(frozen=True, slots=True)
class Pong:
    pass


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int
    ok: bool
    result: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    pidx: int
    args: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Result:
    batch_id: int
    count: int
    used: tuple[int, ...]
    floors: tuple[tuple[tuple[int, int], ...], ...]
    cpu_us: float
    res: bytes
    spill: bytes
    outputs: bytes | None


Reply = Ready | Pong | Ack | Event | Result


def parse_reply(parts: Sequence[bytes | memoryview]) -> Reply:
    """One worker message, fully checked."""
    if not parts:
        raise ProtocolError("empty message")
    msg = wire.unpack(parts[0])
    kind, f = msg[0], msg[1:]
    if kind == wire.RESULT:
        if len(f) != 5 or len(parts) not in (3, 4):
            raise ProtocolError("bad RESULT")
        batch_id, count, used, floors, cpu = f
        count = _int(count, 1 << 32)
        if not isinstance(used, list) or not isinstance(floors, list) or \
                len(floors) != len(used) or not used:
            raise ProtocolError("bad RESULT sizes")
        pairs = []
        for seg in floors:
            if not isinstance(seg, list):
                raise ProtocolError("bad RESULT floors")
            pairs.append(tuple((_int(p[0], 1 << 64), _int(p[1], 1 << 64)) if
                               isinstance(p, list) and len(p) == 2 else _bad() for p in seg))
        if type(cpu) not in (int, float) or not math.isfinite(cpu) or cpu < 0:
            raise ProtocolError("bad RESULT cpu time")
        res = bytes(parts[1])
        if len(res) != wire.RES.size * count:
            raise ProtocolError("RESULT records do not match the count")
        return Result(_int(batch_id), count, tuple(_int(u, 1 << 63) for u in used),
                      tuple(pairs), float(cpu), res, bytes(parts[2]),
                      bytes(parts[3]) if len(parts) == 4 else None)
    if kind == wire.ACK:
        if len(f) < 2 or type(f[1]) is not bool:
            raise ProtocolError("bad ACK")
        return Ack(_int(f[0]), f[1], tuple(f[2:]))
    if kind == wire.EVENT:
        if len(f) != 1 or not isinstance(f[0], list) or len(f[0]) < 2 or \
                not isinstance(f[0][0], str):
            raise ProtocolError("bad EVENT")
        ev = f[0]
        args = tuple(_sint(a) for a in ev[2:])
        if ev[0] == "ratcheted" and len(args) != 2:
            raise ProtocolError("bad ratcheted EVENT")
        if ev[0] != "ratcheted" and len(args) != 1:
            raise ProtocolError("bad EVENT arity")
        return Event(ev[0], _int(ev[1], 1 << 32), args)
    if kind == wire.READY:
        if len(f) != 2:
            raise ProtocolError("bad READY")
        return Ready(_int(f[0], 1 << 32), _int(f[1], 1 << 32))
    if kind == wire.PONG:
        return Pong()
    raise ProtocolError("unexpected kind from a worker")


def _sint(v: object) -> int:
    """An event's key index (-1: none)."""
    if type(v) is not int or not -1 <= v <= U32:
        raise ProtocolError("bad EVENT field")
    return v


def _bad() -> tuple[int, int]:
    raise ProtocolError("bad RESULT floors")
