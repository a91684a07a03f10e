"""Worker → broker messages of :mod:`.wire`, typed: one frozen dataclass per kind.

Each has ``encode()`` (the message's parts: the msgpack header, byte for byte what
``wire.pack`` makes of the same fields, then its blobs) and ``parse(parts)``; the
broker calls :func:`parse_to_broker`, which dispatches on the kind.

The parse contract is the one of :mod:`.to_worker`: a message parses fully into its
typed object or :class:`~framecrypt.errors.ProtocolError` is raised, never another
exception. It is strict enough that the broker can trust every field it reads:
ints are ints in their range (``bool`` is not one), a RESULT's record blob is
``12 · count`` bytes with only the statuses a worker writes, a RESULT has one ``used``
and one floor list per segment, ``cpu_us`` is finite and not negative, an
EVENT has the arguments of its kind. Two things only the broker knows stay its job,
with help from here: which op an ACK answers (:meth:`Ack.outcome` checks the result
against it) and where its reply regions are (result record offsets are not checked
against buffers; slicing a ``bytes`` never raises).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, TypeAlias

from framecrypt.errors import ProtocolError
from framecrypt.transports import wire
from framecrypt.transports.to_worker import KDFS, MAX_GENERATION, floor_pairs
from framecrypt.transports.wire import (
    U32_MAX,
    U64_MAX,
    Blob,
    Heartbeat,
    Message,
    Parts,
    as_blob,
    check_int,
    check_list,
    check_number,
    check_parts,
    check_str,
    check_u32,
    column,
    header_fields,
    header_of,
)

# the statuses a worker writes (ST_RETRY is the broker's own stateless pass, never a
# worker's); for bytes.translate
_STATUSES: Final = bytes((wire.ST_OK, wire.ST_AUTH, wire.ST_UNKNOWN_KEY, wire.ST_MALFORMED,
                          wire.ST_KEY_INVALID, wire.ST_DROPPED, wire.ST_REPLAYED,
                          wire.ST_COUNTER, wire.ST_INTERNAL, wire.ST_INLINE))


@dataclass(frozen=True, slots=True)
class Ready(Message):
    """``[V, READY, pid, slot]``: a worker is up (the first message of each one)."""

    KIND: ClassVar[int] = wire.READY
    pid: int
    slot: int

    def encode(self) -> Parts:
        return [wire.pack(wire.READY, self.pid, self.slot)]

    @classmethod
    def _from(cls, fields: list[Any], parts: Sequence[Any]) -> Ready:
        pid, slot = header_fields(fields, 2, "READY")
        check_parts(parts, 1, 1, "READY")
        return cls(check_u32(pid, "READY pid"), check_u32(slot, "READY slot"))


@dataclass(frozen=True, slots=True)
class Result(Message):
    """The answer to a PACKED batch: ``[V, RESULT, batch_id, count, used, floors,
    cpu_us]`` + ``results`` (``count`` :data:`wire.RES` records) + ``overflow``
    (outputs that did not fit their reply region; always there, maybe empty) +
    ``outputs`` without shm (the segments' outputs back to back). Per segment:
    ``used`` reply bytes written, ``floors`` the SFrame ``(kid, highest counter
    opened)`` pairs of its participant (empty unless opening SFrame); ``cpu_us`` the
    worker's CPU time for the message. (The short header that answered the retired
    BATCH, ``[V, RESULT, batch_id, count]``, does not parse.)
    """

    KIND: ClassVar[int] = wire.RESULT
    batch_id: int
    count: int
    results: Blob
    overflow: Blob
    used: tuple[int, ...]
    floors: tuple[tuple[tuple[int, int], ...], ...]
    cpu_us: float
    outputs: Blob | None = None

    def encode(self) -> Parts:
        out: Parts = [wire.pack(wire.RESULT, self.batch_id, self.count, self.used, self.floors,
                                self.cpu_us),
                      self.results, self.overflow]
        if self.outputs is not None:
            out.append(self.outputs)
        return out

    @classmethod
    def _from(cls, fields: list[Any], parts: Sequence[Any]) -> Result:
        batch_id, count, used, floors, cpu_us = header_fields(fields, 5, "RESULT")
        check_parts(parts, 3, 4, "RESULT")
        check_int(batch_id, "RESULT batch_id")
        check_int(count, "RESULT count", 1, U32_MAX)
        res = as_blob(parts[1], "RESULT records")
        if len(res) != wire.RES.size * count:
            raise ProtocolError("RESULT records do not match the count")
        if column(res, 0, wire.RES.size).translate(None, _STATUSES):
            raise ProtocolError("RESULT: a status no worker writes")
        overflow = as_blob(parts[2], "RESULT overflow")
        check_list(used, "RESULT used")
        if not 1 <= len(used) <= count or \
                not all(type(u) is int and 0 <= u <= U64_MAX for u in used):
            raise ProtocolError("RESULT used: not one u64 per segment")
        if len(check_list(floors, "RESULT floors")) != len(used):
            raise ProtocolError("RESULT floors: not one list per segment")
        cpu = check_number(cpu_us, "RESULT cpu_us")
        if cpu < 0:
            raise ProtocolError("RESULT cpu_us: negative")
        outputs = as_blob(parts[3], "RESULT outputs") if len(parts) > 3 else None
        return cls(batch_id, count, res, overflow, tuple(used),
                   tuple(() if f == [] else floor_pairs(f, "RESULT floor") for f in floors),
                   float(cpu), outputs)


# --- ACK ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ControlFailed:
    """A key operation the worker could not apply: the error's class name (e.g.
    ``UnknownKey``; ``ProtocolError`` when the CONTROL itself was malformed) and a
    short detail (never key bytes)."""

    error: str
    detail: str


@dataclass(frozen=True, slots=True)
class KeysetDone:
    """``keyset`` applied, with this KDF (``pbkdf2`` or ``hkdf``)."""

    algorithm: str


@dataclass(frozen=True, slots=True)
class RatchetDone:
    """``ratchet`` applied: the key's generation now (at most
    :data:`~.to_worker.MAX_GENERATION`, which a later keyset can hand on)."""

    generation: int


@dataclass(frozen=True, slots=True)
class ControlDone:
    """``remove`` or ``replay_floor`` applied (no result)."""


Outcome: TypeAlias = ControlFailed | KeysetDone | RatchetDone | ControlDone


@dataclass(frozen=True, slots=True)
class Ack(Message):
    """``[V, ACK, seq, ok, *result]``: the answer to CONTROL ``seq``. ``ok`` False:
    ``result`` is ``(error name, detail)``. ``ok`` True: the op's result, at most one
    ``str`` or ``int`` (never key bytes: a ``bytes`` result does not parse), whose
    meaning depends on the op, which only the broker knows: :meth:`outcome`."""

    KIND: ClassVar[int] = wire.ACK
    seq: int
    ok: bool
    result: tuple[Any, ...] = ()

    def encode(self) -> Parts:
        return [wire.pack(wire.ACK, self.seq, self.ok, *self.result)]

    def outcome(self, op: str) -> Outcome:
        """The result as the answer to a CONTROL of ``op``, shape checked
        (:class:`ControlFailed` when not ``ok``); :class:`ProtocolError` if it is not
        what ``op`` returns (see ``Engine.control`` in workers/engine.py)."""
        r = self.result
        if not self.ok:
            return ControlFailed(r[0], r[1])  # (checked by parse)
        if op == "keyset" and len(r) == 1:
            if type(r[0]) is not str or r[0] not in KDFS:
                raise ProtocolError("ACK keyset algorithm: unknown")
            return KeysetDone(r[0])
        if op == "ratchet" and len(r) == 1:
            return RatchetDone(check_int(r[0], "ACK ratchet generation", 0, MAX_GENERATION))
        if op in ("remove", "replay_floor", "dave_key", "dave_passthrough") and not r:
            return ControlDone()
        raise ProtocolError("ACK: not the result of its op")

    @classmethod
    def _from(cls, fields: list[Any], parts: Sequence[Any]) -> Ack:
        if len(fields) < 3:
            raise ProtocolError("ACK without seq or ok")
        check_parts(parts, 1, 1, "ACK")
        seq, ok, *result = fields[1:]
        check_int(seq, "ACK seq")
        if type(ok) is not bool:
            raise ProtocolError("ACK ok: not a bool")
        if not ok:
            if len(result) != 2:
                raise ProtocolError("ACK failure: not (error, detail)")
            check_str(result[0], "ACK error")
            check_str(result[1], "ACK detail")
        elif len(result) > 1:
            raise ProtocolError("ACK: more than one result")
        elif result and type(result[0]) is not str:
            check_int(result[0], "ACK result")
        return cls(seq, ok, tuple(result))


# --- EVENT, PONG -------------------------------------------------------------------------

# EVENT kinds and their arguments after pidx (Engine.open in workers/engine.py):
#   "ratcheted"      key index, generation   (a receiver ratchet on decrypt; no key bytes)
#   the class names of workers/livekit/events.py: key index (-1: the event has none)
_RATCHETED: Final = "ratcheted"
EVENT_KINDS: Final = frozenset((_RATCHETED, "KeyRatcheted", "DecryptionFailed", "KeyMissing",
                                "KeyMarkedInvalid", "SifDropped"))


@dataclass(frozen=True, slots=True)
class Event(Message):
    """``[V, EVENT, [kind, pidx, *args]]``: an event of participant ``pidx``
    (:data:`EVENT_KINDS`): ``args`` is ``(key index, generation)`` for ``ratcheted``,
    ``(key index,)`` for the others (-1: the event names no key)."""

    KIND: ClassVar[int] = wire.EVENT
    kind: str
    pidx: int
    args: tuple[int, ...]

    def encode(self) -> Parts:
        return [wire.pack(wire.EVENT, [self.kind, self.pidx, *self.args])]

    @classmethod
    def _from(cls, fields: list[Any], parts: Sequence[Any]) -> Event:
        (ev,) = header_fields(fields, 1, "EVENT")
        check_parts(parts, 1, 1, "EVENT")
        check_list(ev, "EVENT")
        kind = ev[0] if ev else None
        if type(kind) is not str or kind not in EVENT_KINDS:
            raise ProtocolError("EVENT: unknown kind")
        if kind == _RATCHETED:
            _, pidx, index, generation = check_list(ev, "EVENT ratcheted", 4)
            return cls(kind, check_u32(pidx, "EVENT participant"),
                       (check_int(index, "EVENT key index"),
                        check_int(generation, "EVENT generation", 0, MAX_GENERATION)))
        _, pidx, index = check_list(ev, "EVENT", 3)
        return cls(kind, check_u32(pidx, "EVENT participant"),
                   (check_int(index, "EVENT key index", -1, U64_MAX),))


@dataclass(frozen=True, slots=True)
class Pong(Heartbeat):
    """``[V, PONG, t]``: heartbeat (a PING's ``t``, or 0 when unasked)."""

    KIND: ClassVar[int] = wire.PONG


ToBroker: TypeAlias = Ready | Result | Ack | Event | Pong
_KINDS: Final[Mapping[int, Any]] = {c.KIND: c for c in (Ready, Result, Ack, Event, Pong)}


def parse_to_broker(parts: Sequence[Any]) -> ToBroker:
    """A worker → broker message, every field checked: :class:`Ready`,
    :class:`Result`, :class:`Ack`, :class:`Event` or :class:`Pong`.

    Contract for the broker: the message either parses fully into one of these, or
    :class:`ProtocolError` is raised (for any input: no ``TypeError``, ``IndexError``,
    ``struct.error``…); catch that alone, count it, carry on. After it returns, every
    field is what its class says (types and ranges above), so nothing the broker does
    with the fields can raise, except what needs the broker's own state: match the
    RESULT's ``batch_id`` and ``count`` (and ``len(used)`` against the segments) with
    what is in flight, and call :meth:`Ack.outcome` with the op of CONTROL ``seq``.
    """
    fields = header_of(parts)
    cls = _KINDS.get(fields[0])
    if cls is None:
        raise ProtocolError("not a worker → broker message")
    msg: ToBroker = cls._from(fields, parts)
    return msg


__all__ = [
    "EVENT_KINDS", "Ack", "ControlDone", "ControlFailed", "Event", "KeysetDone", "Outcome",
    "Pong", "RatchetDone", "Ready", "Result", "ToBroker", "parse_to_broker",
]
