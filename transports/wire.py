"""The broker ↔ worker wire protocol (version 1).

Every ZeroMQ message is multipart: ``[header, *blobs]``. ``header`` is a msgpack
array ``[VERSION, kind, ...]``; blobs are raw bytes. Frames never get a Python object
each on the wire: a batch carries one packed descriptor array (:data:`REQ`, 40 bytes a
frame) and a reply one packed result array (:data:`RES`, 12 bytes a frame). Payloads
travel in the per-worker shared-memory rings (``shm``) or in one payload blob
(``ipc``/``tcp``); descriptors hold (offset, length) into whichever it is.

broker → worker
  ``[V, CONFIG, settings: dict, shm: [req_name, rep_name, size] | None]``
  ``[V, BATCH, batch_id, count]`` + descriptor blob (+ payload blob without shm)
  ``[V, PACKED, batch_id, count, epoch, [[op, participant, counter0, n, in_base,
  out_base], …]]`` + one columns blob: lengths, ssrcs, timestamps (u32 little-endian,
  ``count`` each), codecs, flags (u8, ``count`` each), the segments' frames in order
  (+ payload blob without shm): columnar segments, one participant and one op each,
  payloads back to back from ``in_base``, outputs from ``out_base`` (see
  :meth:`framecrypt.workers.engine.Engine.run_packed`); answered with RESULT
  ``[V, CONTROL, seq, op, *args]``   key operations, ordered with the batches
  ``[V, PING, t]`` heartbeat          ``[V, STOP]``
worker → broker
  ``[V, READY, pid, slot]``
  ``[V, RESULT, batch_id, count]`` + result blob (+ payload blob: outputs that did not
  fit their reserved reply region, or every output without shm); a PACKED batch's
  ``[V, RESULT, batch_id, count, [used, …], [floors, …], cpu_us]`` (per segment:
  reply bytes written; SFrame opening: ``[[kid, highest counter opened], …]`` of its
  participant, else ``[]``; the worker's CPU time for the message, for placement)
  + result blob + overflow blob (+ without shm: the segments' outputs, back to back)
  ``[V, ACK, seq, ok, *result]``     ``[V, EVENT, kind, *args]``     ``[V, PONG, t]``

Parsing is strict: anything else raises :class:`~framecrypt.errors.ProtocolError`
(the receiver counts it and carries on).
"""

from __future__ import annotations

import struct
from typing import Any, Final

import msgpack

from framecrypt.errors import ProtocolError

VERSION: Final = 1

# kinds
CONFIG: Final = 1
BATCH: Final = 2
CONTROL: Final = 3
PING: Final = 4
STOP: Final = 5
PACKED: Final = 6
READY: Final = 16
RESULT: Final = 17
ACK: Final = 18
EVENT: Final = 19
PONG: Final = 20
KINDS: Final = frozenset((CONFIG, BATCH, PACKED, CONTROL, PING, STOP, READY, RESULT, ACK,
                          EVENT, PONG))

# frame ops
OP_ENCRYPT: Final = 1
OP_DECRYPT: Final = 2

# codec numbers on the wire
CODECS: Final = ("vp8", "vp9", "h264", "h265", "av1", "opus")
CODEC_ID: Final = {c: i for i, c in enumerate(CODECS)}

FLAG_KEYFRAME: Final = 0x01

# request descriptor: op, codec, flags, pad, participant, ssrc, timestamp, counter,
# in_off, in_len, out_off, out_cap
REQ: Final = struct.Struct("<BBBxIIIQIIII")
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
    if not isinstance(msg, list) or len(msg) < 2:
        raise ProtocolError("header is not an array")
    if msg[0] != VERSION:
        raise ProtocolError("unknown protocol version")
    if msg[1] not in KINDS:
        raise ProtocolError("unknown message kind")
    return msg[1:]


def check_blob(blob: bytes | memoryview, record: struct.Struct, count: int) -> None:
    if count < 0 or len(blob) != record.size * count:
        raise ProtocolError("descriptor blob size does not match the count")
