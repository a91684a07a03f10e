"""The broker ↔ worker wire protocol (version 1).

Every ZeroMQ message is multipart: ``[header, *blobs]``. ``header`` is a msgpack
array ``[VERSION, kind, ...]``; blobs are raw bytes. Frames never get a Python object
each on the wire: PACKED is the only message that carries frames, a batch of columnar
segments (one columns blob, 14 bytes a frame), and its RESULT one packed result array
(:data:`RES`, 12 bytes a frame). Payloads travel in the per-worker shared-memory rings
(``shm``) or in one payload blob (``ipc``/``tcp``); segments hold their base offsets
into whichever it is. (Kind 2, the per-frame BATCH of 40-byte descriptors, is retired:
:func:`unpack` refuses it.)

broker → worker (typed: :mod:`.to_worker`)
  ``[V, CONFIG, settings: {name: value}, shm: [req_name, rep_name, size, dir] | None]``
  ``[V, PACKED, batch_id, count, epoch, [[op, participant, counter0, n, in_base,
  out_base], …]]`` + one columns blob: lengths, ssrcs, timestamps (u32 little-endian,
  ``count`` each), codecs, flags (u8, ``count`` each), the segments' frames in order
  (+ payload blob without shm): columnar segments, one participant and one op each,
  payloads back to back from ``in_base``, outputs from ``out_base`` (see
  :meth:`framecrypt.workers.engine.Engine.run_packed`); answered with RESULT
  ``[V, CONTROL, seq, op, *args]``   key operations, ordered with the batches
  ``[V, PING, t]`` heartbeat          ``[V, STOP]``
worker → broker (typed: :mod:`.to_broker`)
  ``[V, READY, pid, slot]``
  ``[V, RESULT, batch_id, count, [used, …], [floors, …], cpu_us]`` (per segment:
  reply bytes written; SFrame opening: ``[[kid, highest counter opened], …]`` of its
  participant, else ``[]``; the worker's CPU time for the message, for placement)
  + result blob + overflow blob (+ without shm: the segments' outputs, back to back)
  ``[V, ACK, seq, ok, *result]``   ``[V, EVENT, [kind, pidx, *args]]``   ``[V, PONG, t]``

Parsing is strict: receivers parse with :func:`.to_worker.parse_to_worker` and
:func:`.to_broker.parse_to_broker`, which return a typed message (one frozen dataclass
per kind) or raise :class:`~framecrypt.errors.ProtocolError` (the receiver counts it
and carries on). This module holds the constants, the records, the header codec and
the field checks both directions share.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Self, TypeAlias

import msgpack

from framecrypt.errors import ProtocolError

VERSION: Final = 1

# kinds
CONFIG: Final = 1
BATCH: Final = 2  # retired (the per-frame form): not in KINDS, so unpack refuses it
CONTROL: Final = 3
PING: Final = 4
STOP: Final = 5
PACKED: Final = 6
READY: Final = 16
RESULT: Final = 17
ACK: Final = 18
EVENT: Final = 19
PONG: Final = 20
KINDS: Final = frozenset((CONFIG, PACKED, CONTROL, PING, STOP, READY, RESULT, ACK, EVENT,
                          PONG))

# frame ops
OP_ENCRYPT: Final = 1
OP_DECRYPT: Final = 2

# codec numbers on the wire
CODECS: Final = ("vp8", "vp9", "h264", "h265", "av1", "opus")
CODEC_ID: Final = {c: i for i, c in enumerate(CODECS)}

FLAG_KEYFRAME: Final = 0x01

# result descriptor: status, pad, out_off, out_len (status 0 = ok)
RES: Final = struct.Struct("<BxxxII")

# result status codes (0 = ok); INLINE marks an output carried in the reply's blob
ST_OK: Final = 0
ST_AUTH: Final = 1
ST_UNKNOWN_KEY: Final = 2
ST_MALFORMED: Final = 3
ST_KEY_INVALID: Final = 4
ST_DROPPED: Final = 5
ST_REPLAYED: Final = 6
ST_COUNTER: Final = 7
ST_INTERNAL: Final = 8
ST_RETRY: Final = 0x40  # the broker's state-free inline pass: let a worker open this one
ST_INLINE: Final = 0x80

_packer = msgpack.Packer(use_bin_type=True)


def pack(*fields: Any) -> bytes:
    """A header: ``[VERSION, *fields]``."""
    out: bytes = _packer.pack([VERSION, *fields])
    return out


def unpack(header: bytes | memoryview) -> list[Any]:
    """Parse and check a header; returns ``[kind, ...]`` without the version."""
    try:
        msg = msgpack.unpackb(header, raw=False, strict_map_key=True, use_list=True)
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise ProtocolError("header is not msgpack") from e
    if type(msg) is not list or len(msg) < 2:
        raise ProtocolError("header is not an array")
    if type(msg[0]) is not int or msg[0] != VERSION:  # (True == 1: bool is no version)
        raise ProtocolError("unknown protocol version")
    if type(msg[1]) is not int or msg[1] not in KINDS:
        raise ProtocolError("unknown message kind")
    return msg[1:]


# --- field checks shared by the typed messages (.to_worker, .to_broker) ---------------
# Each returns the checked value or raises ProtocolError whose reason names the field,
# never its value (values may be key bytes).

Blob: TypeAlias = bytes | memoryview
Parts: TypeAlias = list[Blob]
U32_MAX: Final = 0xFFFF_FFFF
U64_MAX: Final = 0xFFFF_FFFF_FFFF_FFFF
I64_MIN: Final = -(1 << 63)


def check_int(v: object, what: str, lo: int = 0, hi: int = U64_MAX) -> int:
    """An ``int`` (not a ``bool``) in ``[lo, hi]``; u64 by default."""
    if type(v) is not int or not lo <= v <= hi:
        raise ProtocolError(f"{what}: not an int in [{lo}, {hi}]")
    return v


def check_u32(v: object, what: str) -> int:
    return check_int(v, what, 0, U32_MAX)


def check_str(v: object, what: str) -> str:
    if type(v) is not str:
        raise ProtocolError(f"{what}: not a str")
    return v


def check_bytes(v: object, what: str) -> bytes:
    if type(v) is not bytes:
        raise ProtocolError(f"{what}: not bytes")
    return v


def check_list(v: object, what: str, n: int | None = None) -> list[Any]:
    """A list, of exactly ``n`` items when ``n`` is given."""
    if type(v) is not list or (n is not None and len(v) != n):
        raise ProtocolError(f"{what}: not a list" + ("" if n is None else f" of {n}"))
    return v


def check_number(v: object, what: str) -> int | float:
    """A finite ``float`` or an ``int`` that msgpack carries (i64 or u64)."""
    if type(v) is float and math.isfinite(v):
        return v
    return check_int(v, what, I64_MIN)


def header_fields(fields: list[Any], n: int, what: str) -> list[Any]:
    """The fields after the kind of an unpacked header, exactly ``n`` of them."""
    if len(fields) != n + 1:
        raise ProtocolError(f"{what}: {len(fields) - 1} header fields, expected {n}")
    return fields[1:]


def check_parts(parts: Sequence[Any], lo: int, hi: int, what: str) -> None:
    """``lo..hi`` parts in the message (header included)."""
    if not lo <= len(parts) <= hi:
        raise ProtocolError(f"{what}: {len(parts)} parts, expected {lo}..{hi}")


def as_blob(part: object, what: str) -> Blob:
    """A part as itself (``bytes``) or a one-dimensional memoryview of unsigned bytes;
    never a copy."""
    if type(part) is bytes:
        return part
    try:
        mv = part if type(part) is memoryview else memoryview(part)  # type: ignore[arg-type]
        if mv.format != "B" or mv.ndim != 1 or not mv.c_contiguous:
            mv = mv.cast("B")  # (TypeError when not contiguous)
    except (TypeError, ValueError) as e:
        raise ProtocolError(f"{what}: not a contiguous buffer") from e
    return mv


def column(blob: Blob, start: int, step: int) -> bytes:
    """Byte ``start`` of every ``step``-byte record of ``blob`` (one C-level pass; check
    it with ``bytes.translate(None, allowed)``, which is empty when all are allowed)."""
    return memoryview(blob)[start::step].tobytes()


def header_of(parts: Sequence[Any], kind: int | None = None) -> list[Any]:
    """The unpacked header of a message (``[kind, ...]``), of ``kind`` when given."""
    if not parts:
        raise ProtocolError("empty message")
    fields = unpack(parts[0])
    if kind is not None and fields[0] != kind:
        raise ProtocolError("not the expected message kind")
    return fields


class Message:
    """Base of the typed messages (:mod:`.to_worker`, :mod:`.to_broker`): each is a
    frozen dataclass with its ``KIND`` and a ``_from(fields, parts)`` that checks every
    field; :meth:`parse` takes a whole message of that kind or raises ProtocolError."""

    __slots__ = ()
    KIND: ClassVar[int]

    @classmethod
    def parse(cls, parts: Sequence[Any]) -> Self:
        return cls._from(header_of(parts, cls.KIND), parts)

    @classmethod
    def _from(cls, fields: list[Any], parts: Sequence[Any]) -> Self:
        raise ProtocolError(f"{cls.__name__} has no parser")


@dataclass(frozen=True, slots=True)
class Heartbeat(Message):
    """``[V, PING|PONG, t]``: the two heartbeats share one shape (``t``: a PING's
    value echoed by its PONG, or 0 when unasked)."""

    t: int | float = 0

    def encode(self) -> Parts:
        return [pack(self.KIND, self.t)]

    @classmethod
    def _from(cls, fields: list[Any], parts: Sequence[Any]) -> Self:
        what = cls.__name__.upper()
        (t,) = header_fields(fields, 1, what)
        check_parts(parts, 1, 1, what)
        return cls(check_number(t, f"{what} t"))
