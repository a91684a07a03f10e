"""Broker → worker messages of :mod:`.wire`, typed: one frozen dataclass per kind.

Each has ``encode()`` (the message's parts: the msgpack header, byte for byte what
``wire.pack`` makes of the same fields, then its blobs) and ``parse(parts)``; a worker
calls :func:`parse_to_worker`, which dispatches on the kind.

The parse contract: a message either parses fully into its typed object, every field
checked, or :class:`~framecrypt.errors.ProtocolError` is raised, never another
exception. Checked: the number of parts and of header fields; types (``bool`` is not
an ``int``); ranges (u32 fields < 2³², u64 fields < 2⁶⁴, none negative unless said);
the columns blob's size against the count (14·count bytes); ops and codec ids against
their tables; segment sizes adding up to the count; the settings of a CONFIG and the
arguments of each CONTROL op. Blobs are not copied. What
only the worker can know stays its job: whether payloads and outputs lie inside the
buffers it holds (:meth:`Packed.payload_sizes`), whether named segments exist.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Final, NamedTuple, TypeAlias

from framecrypt.errors import ProtocolError
from framecrypt.transports import wire
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
    check_parts,
    check_str,
    check_u32,
    header_fields,
    header_of,
)

_CODEC_IDS: Final = bytes(range(len(wire.CODECS)))  # for bytes.translate
KDFS: Final = ("pbkdf2", "hkdf")
# the most ratchet steps a key may be at (Engine.control "keyset" refuses more): a worker
# re-derives that many steps when it is handed the key, so a later generation could not
# be handed to another worker anyway
MAX_GENERATION: Final = 1 << 16
DAVE_MAX_EPOCH: Final = (1 << 62) - 1  # (its replay-floor kids 2·epoch + 1 stay u64)


class ControlRejected(ProtocolError):
    """A CONTROL whose ``seq`` parsed but whose op or arguments did not. The worker
    still answers it (a failed ACK), so nothing in the broker waits forever."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(reason)
        self.seq = seq


# --- CONFIG ------------------------------------------------------------------------------

# The engine settings a CONFIG may carry: the wire's copy of EngineConfig's fields with
# the ranges conf/settings.py allows (tests/test_wire.py keeps the names in step).
_CHOICES: Final[Mapping[str, tuple[str, ...]]] = {
    "format": ("livekit", "jitsi", "sframe", "dave"), "iv": ("counter", "livekit")}
_INTS: Final[Mapping[str, tuple[int, int]]] = {
    "ratchet_window": (0, 256), "failure_tolerance": (-1, 1 << 31), "keyring_size": (1, 256),
    "suite": (1, 8), "replay_window": (0, 1 << 16)}
_BYTES: Final[Mapping[str, int]] = {"ratchet_salt": 256, "sif_trailer": 256}
SETTINGS: Final = frozenset((*_CHOICES, *_INTS, *_BYTES))


def _settings(v: object) -> Mapping[str, Any]:
    if type(v) is not dict:
        raise ProtocolError("CONFIG settings: not a map")
    for k, x in v.items():
        if type(k) is not str or k not in SETTINGS:
            raise ProtocolError("CONFIG settings: unknown setting")
        if k in _CHOICES:
            if type(x) is not str or x not in _CHOICES[k]:
                raise ProtocolError(f"CONFIG {k}: not one of {_CHOICES[k]}")
        elif k in _INTS:
            check_int(x, f"CONFIG {k}", *_INTS[k])
        elif type(x) is not bytes or len(x) > _BYTES[k]:
            raise ProtocolError(f"CONFIG {k}: not bytes of at most {_BYTES[k]}")
    return MappingProxyType(dict(v))


@dataclass(frozen=True, slots=True)
class Rings:
    """A worker's two shared-memory segments, the request and the reply ring:
    ``size``-byte segments in ``dir``. Attaching checks the rest (owner, mode, size)."""

    request: str
    reply: str
    size: int
    dir: str

    @classmethod
    def _from(cls, v: object) -> Rings:
        req, rep, size, d = check_list(v, "CONFIG shm", 4)
        for name in (check_str(req, "CONFIG ring name"), check_str(rep, "CONFIG ring name"),
                     check_str(d, "CONFIG shm dir")):
            if not name or "\0" in name:
                raise ProtocolError("CONFIG shm: an empty name or a NUL in a name")
        if req == rep:
            raise ProtocolError("CONFIG shm: one segment for both rings")
        return cls(req, rep, check_int(size, "CONFIG ring size", 1, (1 << 63) - 1), d)


@dataclass(frozen=True, slots=True)
class InheritedRings:
    """A worker's two rings as anonymous memory (memfd) it inherited from the broker
    at spawn: the descriptor numbers and the segments' size. Nothing has a name, so
    nothing is left behind when the processes die (transports/memfd.py)."""

    request_fd: int
    reply_fd: int
    size: int

    @classmethod
    def _from(cls, v: list[Any]) -> InheritedRings:
        req, rep, size = v
        req = check_int(req, "CONFIG ring fd", 0, (1 << 31) - 1)
        rep = check_int(rep, "CONFIG ring fd", 0, (1 << 31) - 1)
        if req == rep:
            raise ProtocolError("CONFIG shm: one descriptor for both rings")
        return cls(req, rep, check_int(size, "CONFIG ring size", 1, (1 << 63) - 1))


@dataclass(frozen=True, slots=True)
class Config(Message):
    """``[V, CONFIG, settings, shm]``: engine settings (names from :data:`SETTINGS`)
    and the rings — ``[request_fd, reply_fd, size]`` inherited memfds, or
    ``[request, reply, size, dir]`` named segments (the fallback) — or ``None``
    (payloads then travel in the messages)."""

    KIND: ClassVar[int] = wire.CONFIG
    settings: Mapping[str, Any]
    shm: Rings | InheritedRings | None = None

    def encode(self) -> Parts:
        s = self.shm
        shm: list[Any] | None = None
        if isinstance(s, Rings):
            shm = [s.request, s.reply, s.size, s.dir]
        elif s is not None:
            shm = [s.request_fd, s.reply_fd, s.size]
        return [wire.pack(wire.CONFIG, dict(self.settings), shm)]

    @classmethod
    def _from(cls, fields: list[Any], parts: Sequence[Any]) -> Config:
        settings, shm = header_fields(fields, 2, "CONFIG")
        check_parts(parts, 1, 1, "CONFIG")
        if shm is None:
            return cls(_settings(settings))
        if isinstance(shm, list) and len(shm) == 3:
            return cls(_settings(settings), InheritedRings._from(shm))
        return cls(_settings(settings), Rings._from(shm))


# --- frames ------------------------------------------------------------------------------


class SegmentHead(NamedTuple):
    """One segment of a PACKED batch: ``n`` frames of one participant and one op,
    payloads back to back from ``in_base``, outputs from ``out_base``, sealed with
    counters ``counter0, counter0 + 1, …``. (Immutable; a named tuple, not a frozen
    dataclass, because a batch has one per segment: it costs a third to make and
    msgpack packs it as the array it is on the wire.)"""

    op: int
    participant: int
    counter0: int
    n: int
    in_base: int
    out_base: int

    @classmethod
    def _from(cls, v: object) -> SegmentHead:
        op, pidx, counter0, n, in_base, out_base = check_list(v, "PACKED segment", 6)
        if type(op) is not int or type(pidx) is not int or type(counter0) is not int or \
                type(n) is not int or type(in_base) is not int or type(out_base) is not int or \
                (op != wire.OP_ENCRYPT and op != wire.OP_DECRYPT) or \
                not 0 <= pidx <= U32_MAX or not 1 <= n <= U32_MAX or \
                not 0 <= counter0 <= U64_MAX - n + 1 or not 0 <= in_base <= U64_MAX or \
                not 0 <= out_base <= U64_MAX:
            raise ProtocolError("PACKED segment: not [op, participant (u32), counter0 (u64, "
                                "no wrap), n (1..u32), in_base (u64), out_base (u64)]")
        return cls(op, pidx, counter0, n, in_base, out_base)


@dataclass(frozen=True, slots=True)
class Packed(Message):
    """``[V, PACKED, batch_id, count, epoch, [segment, …]]`` + the columns blob
    (lengths, ssrcs, timestamps: u32 little-endian; codec ids, flags: u8; ``count``
    each) + the payload blob without shm. ``epoch`` -1: none (timestamps are used)."""

    KIND: ClassVar[int] = wire.PACKED
    batch_id: int
    count: int
    epoch: int
    segments: tuple[SegmentHead, ...]
    columns: Blob
    payload: Blob | None = None

    def encode(self) -> Parts:
        out: Parts = [wire.pack(wire.PACKED, self.batch_id, self.count, self.epoch,
                                self.segments), self.columns]
        if self.payload is not None:
            out.append(self.payload)
        return out

    def u32_columns(self) -> Sequence[int]:
        """Lengths, ssrcs and timestamps as one sequence of ``3 * count`` ints (a cast
        of the columns blob on little-endian hosts, a swapped copy elsewhere)."""
        raw = memoryview(self.columns)[: 12 * self.count]
        if sys.byteorder == "little":
            return raw.cast("I")
        swapped = array("I")
        swapped.frombytes(raw)
        swapped.byteswap()
        return swapped

    def codecs(self) -> memoryview:
        return memoryview(self.columns)[12 * self.count : 13 * self.count]

    def flags(self) -> memoryview:
        return memoryview(self.columns)[13 * self.count :]

    def payload_sizes(self, u32: Sequence[int]) -> list[int]:
        """Payload bytes of each segment (``u32`` from :meth:`u32_columns`). Whether
        ``in_base + size`` lies in its buffer is for the receiver to check: only it
        knows the buffer (its request ring, or :attr:`payload`)."""
        sizes = []
        k = 0
        for s in self.segments:
            sizes.append(sum(u32[k : k + s.n]))
            k += s.n
        return sizes

    @classmethod
    def _from(cls, fields: list[Any], parts: Sequence[Any]) -> Packed:
        batch_id, count, epoch, heads = header_fields(fields, 4, "PACKED")
        check_parts(parts, 2, 3, "PACKED")
        check_int(batch_id, "PACKED batch_id")
        check_int(count, "PACKED count", 1, U32_MAX)
        check_int(epoch, "PACKED epoch", -1, U32_MAX)
        if type(heads) is not list or not 1 <= len(heads) <= count:
            raise ProtocolError("PACKED: no segments, or more segments than frames")
        segments = tuple(map(SegmentHead._from, heads))
        if sum(s.n for s in segments) != count:
            raise ProtocolError("PACKED: segment sizes do not add up to the count")
        cols = as_blob(parts[1], "PACKED columns")
        if len(cols) != 14 * count:
            raise ProtocolError("PACKED columns do not match the count")
        if memoryview(cols)[12 * count : 13 * count].tobytes().translate(None, _CODEC_IDS):
            raise ProtocolError("PACKED: unknown codec id")
        payload = as_blob(parts[2], "PACKED payload") if len(parts) == 3 else None
        return cls(batch_id, count, epoch, segments, cols, payload)


# --- key operations ------------------------------------------------------------------------


def _keyset_args(a: list[Any]) -> tuple[Any, ...]:
    # no derived key travels: material as the application gave it, ratcheted
    # ``generation`` steps by the worker itself
    pidx, name, index, material, kdf, generation, make_current = \
        check_list(a, "keyset arguments", 7)
    check_u32(pidx, "keyset participant")
    check_str(name, "keyset name")
    check_int(index, "keyset index")
    if type(material) is not bytes and type(material) is not str:
        raise ProtocolError("keyset material: not bytes or str")
    if kdf is not None and check_str(kdf, "keyset kdf") not in KDFS:
        raise ProtocolError("keyset kdf: unknown")
    check_int(generation, "keyset generation", hi=MAX_GENERATION)
    if type(make_current) is not bool:
        raise ProtocolError("keyset make_current: not a bool")
    return tuple(a)


def _ratchet_args(a: list[Any]) -> tuple[Any, ...]:
    pidx, index = check_list(a, "ratchet arguments", 2)
    return check_u32(pidx, "ratchet participant"), check_int(index, "ratchet index")


def _remove_args(a: list[Any]) -> tuple[Any, ...]:
    (pidx,) = check_list(a, "remove arguments", 1)
    return (check_u32(pidx, "remove participant"),)


def floor_pairs(v: object, what: str) -> tuple[tuple[int, int], ...]:
    """``[[kid, counter], …]`` (u64 each) as a tuple of pairs."""
    return tuple((check_int(kid, what), check_int(ctr, what))
                 for kid, ctr in (check_list(p, what, 2) for p in check_list(v, what)))


def _replay_floor_args(a: list[Any]) -> tuple[Any, ...]:
    pidx, floors = check_list(a, "replay_floor arguments", 2)
    return check_u32(pidx, "replay_floor participant"), floor_pairs(floors, "replay_floor pair")


def _dave_key_args(a: list[Any]) -> tuple[Any, ...]:
    # a DAVE sender's base secret (MLS exporter, 16 bytes) in an MLS epoch, sealing with
    # broker counters from ``base`` on (workers/dave/contexts.py)
    pidx, name, epoch, secret, base = check_list(a, "dave_key arguments", 5)
    check_u32(pidx, "dave_key participant")
    check_str(name, "dave_key name")
    check_int(epoch, "dave_key epoch", 0, DAVE_MAX_EPOCH)
    if type(secret) is not bytes or len(secret) != 16:
        raise ProtocolError("dave_key secret: not 16 bytes")
    check_int(base, "dave_key base counter")
    return tuple(a)


def _dave_passthrough_args(a: list[Any]) -> tuple[Any, ...]:
    pidx, name, enabled = check_list(a, "dave_passthrough arguments", 3)
    check_u32(pidx, "dave_passthrough participant")
    check_str(name, "dave_passthrough name")
    if type(enabled) is not bool:
        raise ProtocolError("dave_passthrough enabled: not a bool")
    return tuple(a)


# CONTROL ops and the checks of their arguments (Engine.control in workers/engine.py):
#   keyset        pidx, name, index, material (bytes | str), kdf (None | "pbkdf2" | "hkdf"),
#                 generation (ratchet steps from material), make_current (bool)
#   ratchet       pidx, index
#   remove        pidx
#   replay_floor  pidx, [[kid, counter], …]   (parsed as a tuple of pairs)
#   dave_key      pidx, name, epoch, base secret (16 bytes), base counter
#   dave_passthrough  pidx, name, enabled (bool)
CONTROL_ARGS: Final[Mapping[str, Callable[[list[Any]], tuple[Any, ...]]]] = {
    "keyset": _keyset_args, "ratchet": _ratchet_args, "remove": _remove_args,
    "replay_floor": _replay_floor_args, "dave_key": _dave_key_args,
    "dave_passthrough": _dave_passthrough_args}


@dataclass(frozen=True, slots=True)
class Control(Message):
    """``[V, CONTROL, seq, op, *args]``: a key operation (:data:`CONTROL_ARGS`),
    ordered with the batches. One whose ``seq`` parses but nothing else does raises
    :class:`ControlRejected`, which carries ``seq`` so the worker can still ACK."""

    KIND: ClassVar[int] = wire.CONTROL
    seq: int
    op: str
    args: tuple[Any, ...]

    def encode(self) -> Parts:
        return [wire.pack(wire.CONTROL, self.seq, self.op, *self.args)]

    @classmethod
    def _from(cls, fields: list[Any], parts: Sequence[Any]) -> Control:
        if len(fields) < 2:
            raise ProtocolError("CONTROL without seq")
        seq = check_int(fields[1], "CONTROL seq")
        try:
            check_parts(parts, 1, 1, "CONTROL")
            op = fields[2] if len(fields) > 2 else None
            if type(op) is not str or op not in CONTROL_ARGS:
                raise ProtocolError("CONTROL: no op, or an unknown one")
            return cls(seq, op, CONTROL_ARGS[op](fields[3:]))
        except ProtocolError as e:
            raise ControlRejected(seq, e.reason) from None


# --- heartbeats, stop ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ping(Heartbeat):
    """``[V, PING, t]``: heartbeat, answered with a PONG of the same ``t``."""

    KIND: ClassVar[int] = wire.PING


@dataclass(frozen=True, slots=True)
class Stop(Message):
    """``[V, STOP]``: the worker exits after answering what came before."""

    KIND: ClassVar[int] = wire.STOP

    def encode(self) -> Parts:
        return [wire.pack(wire.STOP)]

    @classmethod
    def _from(cls, fields: list[Any], parts: Sequence[Any]) -> Stop:
        header_fields(fields, 0, "STOP")
        check_parts(parts, 1, 1, "STOP")
        return cls()


ToWorker: TypeAlias = Config | Packed | Control | Ping | Stop
_KINDS: Final[Mapping[int, Any]] = {
    c.KIND: c for c in (Config, Packed, Control, Ping, Stop)}


def parse_to_worker(parts: Sequence[Any]) -> ToWorker:
    """A broker → worker message, every field checked: :class:`Config`,
    :class:`Packed`, :class:`Control`, :class:`Ping` or :class:`Stop` (the retired
    per-frame BATCH is refused like any unknown kind).
    Anything else raises :class:`ProtocolError` (:class:`ControlRejected` when a
    CONTROL's ``seq`` parsed: answer it with a failed ACK), never another exception."""
    fields = header_of(parts)
    cls = _KINDS.get(fields[0])
    if cls is None:
        raise ProtocolError("not a broker → worker message")
    msg: ToWorker = cls._from(fields, parts)
    return msg


__all__ = [
    "CONTROL_ARGS", "DAVE_MAX_EPOCH", "KDFS", "MAX_GENERATION", "SETTINGS", "Config", "Control",
    "ControlRejected", "Packed", "Ping", "Rings", "SegmentHead", "Stop", "ToWorker",
    "floor_pairs", "parse_to_worker",
]
