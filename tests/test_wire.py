"""The typed wire messages (transports/to_worker.py, to_broker.py): every kind round
trips, encodes byte for byte as ``wire.pack`` did, and anything malformed raises
ProtocolError and nothing else."""

from __future__ import annotations

import math
import struct
import typing
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framecrypt.errors import ProtocolError
from framecrypt.transports import wire
from framecrypt.transports.to_broker import (
    EVENT_KINDS,
    Ack,
    ControlDone,
    ControlFailed,
    Event,
    KeysetDone,
    Pong,
    RatchetDone,
    Ready,
    Result,
    parse_to_broker,
)
from framecrypt.transports.to_worker import (
    SETTINGS,
    Config,
    Control,
    ControlRejected,
    Packed,
    Ping,
    Rings,
    SegmentHead,
    Stop,
    parse_to_worker,
)
from framecrypt.workers.engine import EngineConfig
from framecrypt.workers.livekit import events as lk_events

P = wire.pack
CFG = EngineConfig().as_wire()
RINGS = Rings("fc-1-req", "fc-1-rep", 1 << 20, "/dev/shm")
# what an old peer sent in a (retired) BATCH: two 40-byte per-frame descriptors
OLD_REQ = struct.Struct("<BBBxIIIQIIII")
DESC = OLD_REQ.pack(1, 0, 1, 7, 0xDEADBEEF, 3000, 2**40, 0, 5, 0, 100) + \
    OLD_REQ.pack(2, 5, 0, 7, 1, 2, 3, 5, 4, 100, 4)
HEADS = [[wire.OP_ENCRYPT, 3, 2**47, 2, 0, 64], [wire.OP_DECRYPT, 4, 0, 1, 9, 4096]]
COLS = struct.pack("<3I", 4, 5, 6) + struct.pack("<3I", 1, 2, 3) * 2 + bytes([0, 2, 5]) + \
    bytes([1, 0, 1])
RES = wire.RES.pack(0, 0, 30) + wire.RES.pack(wire.ST_INLINE, 0, 7)
KEYSET = ("p", 3, b"k" * 32, "hkdf", 0, True)  # after pidx

# (message, the parts the code before the typed messages built for it)
TO_WORKER: list[tuple[Any, list[Any]]] = [
    (Config(CFG, RINGS), [P(wire.CONFIG, CFG, ["fc-1-req", "fc-1-rep", 1 << 20, "/dev/shm"])]),
    (Config({}, None), [P(wire.CONFIG, {}, None)]),
    (Packed(5, 3, 0xFFFFFFFF, tuple(SegmentHead(*h) for h in HEADS), COLS),
     [P(wire.PACKED, 5, 3, 0xFFFFFFFF, HEADS), COLS]),
    (Packed(6, 3, -1, tuple(SegmentHead(*h) for h in HEADS), COLS, b"p" * 15),
     [P(wire.PACKED, 6, 3, -1, HEADS), COLS, b"p" * 15]),
    (Control(1, "keyset", (7, *KEYSET)), [P(wire.CONTROL, 1, "keyset", 7, *KEYSET)]),
    (Control(2, "keyset", (7, "p", 2**64 - 1, "passphrase", None, 3, False)),
     [P(wire.CONTROL, 2, "keyset", 7, "p", 2**64 - 1, "passphrase", None, 3, False)]),
    (Control(3, "ratchet", (7, 3)), [P(wire.CONTROL, 3, "ratchet", 7, 3)]),
    (Control(4, "remove", (7,)), [P(wire.CONTROL, 4, "remove", 7)]),
    (Control(5, "replay_floor", (7, ((1, 2**48), (2, 0)))),
     [P(wire.CONTROL, 5, "replay_floor", 7, [[1, 2**48], [2, 0]])]),
    (Ping(0), [P(wire.PING, 0)]),
    (Ping(1.5), [P(wire.PING, 1.5)]),
    (Stop(), [P(wire.STOP)]),
]
TO_BROKER: list[tuple[Any, list[Any]]] = [
    (Ready(4242, 1), [P(wire.READY, 4242, 1)]),
    (Result(4, 2, RES, b"", (30, 0), ((), ((1, 2),)), 12.5),
     [P(wire.RESULT, 4, 2, [30, 0], [[], [[1, 2]]], 12.5), RES, b""]),
    (Result(4, 2, RES, b"o", (30,), ((),), 0.0, b"outputs"),
     [P(wire.RESULT, 4, 2, [30], [[]], 0.0), RES, b"o", b"outputs"]),
    (Result(2**64 - 1, 2, RES, b"overflow", (1, 2), ((), ()), 3.0),
     [P(wire.RESULT, 2**64 - 1, 2, [1, 2], [[], []], 3.0), RES, b"overflow"]),
    (Ack(1, True, ("hkdf",)), [P(wire.ACK, 1, True, "hkdf")]),
    (Ack(2, True, (4,)), [P(wire.ACK, 2, True, 4)]),
    (Ack(3, True, ()), [P(wire.ACK, 3, True)]),
    (Ack(4, False, ("UnknownKey", "no key for key id 3")),
     [P(wire.ACK, 4, False, "UnknownKey", "no key for key id 3")]),
    (Event("ratcheted", 7, (3, 2)), [P(wire.EVENT, ["ratcheted", 7, 3, 2])]),
    (Event("DecryptionFailed", 7, (3,)), [P(wire.EVENT, ["DecryptionFailed", 7, 3])]),
    (Event("SifDropped", 7, (-1,)), [P(wire.EVENT, ["SifDropped", 7, -1])]),
    (Pong(0), [P(wire.PONG, 0)]),
]


ALL = [(parse_to_worker, m, o) for m, o in TO_WORKER] + \
    [(parse_to_broker, m, o) for m, o in TO_BROKER]


@pytest.mark.parametrize(("parse", "msg", "old"), ALL,
                         ids=[f"{type(m).__name__}-{i}" for i, (_, m, _) in enumerate(ALL)])
def test_encode_is_what_wire_pack_made_and_parse_gives_it_back(parse: Any, msg: Any,
                                                               old: list[Any]) -> None:
    assert msg.encode() == old
    assert parse(old) == msg
    assert type(msg).parse(old) == msg
    # blobs arriving as memoryviews (as ZeroMQ hands them over) parse the same
    assert parse([memoryview(p) for p in old]) == msg


def test_each_direction_refuses_the_others_kinds() -> None:
    for _, old in TO_WORKER:
        with pytest.raises(ProtocolError):
            parse_to_broker(old)
    for _, old in TO_BROKER:
        with pytest.raises(ProtocolError):
            parse_to_worker(old)
    with pytest.raises(ProtocolError):
        Ping.parse(Stop().encode())


def test_the_retired_batch_is_refused() -> None:
    """Kind 2 (the per-frame BATCH) is retired: its number stays reserved, but no
    receiver takes it, so an old peer gets a clean ProtocolError; likewise the short
    RESULT that answered it."""
    assert wire.BATCH == 2 and wire.BATCH not in wire.KINDS
    assert not hasattr(wire, "REQ")
    old = [P(wire.BATCH, 9, 2), DESC, b"x" * 9]
    for parse in (wire.unpack, lambda h: wire.header_of([h])):
        with pytest.raises(ProtocolError, match="unknown message kind"):
            parse(old[0])
    for parts in (old, old[:2]):
        for parse_any in (parse_to_worker, parse_to_broker):
            with pytest.raises(ProtocolError) as e:
                parse_any(parts)
            assert not isinstance(e.value, ControlRejected)
    with pytest.raises(ProtocolError, match="RESULT: 2 header fields, expected 5"):
        parse_to_broker([P(wire.RESULT, 3, 2), RES, b"overflow"])
    with pytest.raises(ProtocolError):
        Result.parse([P(wire.RESULT, 3, 2), RES])


def test_blobs_are_not_copied() -> None:
    cols = memoryview(bytearray(COLS))
    msg = parse_to_worker([P(wire.PACKED, 5, 3, -1, HEADS), cols, b"p" * 15])
    assert isinstance(msg, Packed) and msg.columns is cols
    assert list(msg.u32_columns()) == [4, 5, 6, 1, 2, 3, 1, 2, 3]
    assert bytes(msg.codecs()) == bytes([0, 2, 5]) and bytes(msg.flags()) == bytes([1, 0, 1])
    assert msg.payload_sizes(msg.u32_columns()) == [9, 6]


def test_ack_outcome_is_checked_against_the_op_it_answers() -> None:
    assert Ack(1, True, ("pbkdf2",)).outcome("keyset") == KeysetDone("pbkdf2")
    assert Ack(1, True, (2,)).outcome("ratchet") == RatchetDone(2)
    assert Ack(1, True, ()).outcome("remove") == ControlDone()
    assert Ack(1, True, ()).outcome("replay_floor") == ControlDone()
    assert Ack(1, False, ("E", "d")).outcome("keyset") == ControlFailed("E", "d")
    for op, result in [("keyset", ("md5",)), ("keyset", (1,)), ("keyset", ()),
                       ("keyset", ("hkdf", "hkdf")), ("ratchet", ("2",)), ("ratchet", ()),
                       ("ratchet", (True,)), ("ratchet", (2**16 + 1,)), ("remove", (1,)),
                       ("replay_floor", ("x",)), ("nope", ())]:
        with pytest.raises(ProtocolError):
            Ack(1, True, result).outcome(op)


def test_the_wire_knows_every_engine_setting_and_event() -> None:
    """The wire's copies of what the engine sends and takes stay in step with it."""
    assert set(EngineConfig.__slots__) == SETTINGS
    for cls in typing.get_args(lk_events.Event):
        assert cls.__name__ in EVENT_KINDS
    assert parse_to_worker(Config(EngineConfig(format="sframe", suite=1).as_wire()).encode())


def _control(*fields: Any) -> list[bytes]:
    return [P(wire.CONTROL, *fields)]


# (name, parts) for each kind; each must raise ProtocolError
BAD_TO_WORKER: list[tuple[str, list[Any]]] = [
    ("empty", []),
    ("not msgpack", [b"\xc1"]),
    ("not an array", [msgpack.packb({"a": 1})]),
    ("version 2", [msgpack.packb([2, wire.STOP])]),
    ("version True", [msgpack.packb([True, wire.STOP])]),
    ("kind True", [msgpack.packb([1, True, {}, None])]),
    ("kind a list", [msgpack.packb([1, [], 1])]),
    ("unknown kind", [msgpack.packb([1, 77])]),
    ("a broker kind", [P(wire.READY, 1, 1)]),
    ("header not a buffer", [12345]),
    ("CONFIG arity", [P(wire.CONFIG, CFG)]),
    ("CONFIG extra part", [P(wire.CONFIG, CFG, None), b""]),
    ("CONFIG settings list", [P(wire.CONFIG, [], None)]),
    ("CONFIG unknown setting", [P(wire.CONFIG, {"colour": 1}, None)]),
    ("CONFIG bytes key", [msgpack.packb([1, wire.CONFIG, {b"format": "x"}, None])]),
    ("CONFIG format", [P(wire.CONFIG, {"format": "rot13"}, None)]),
    ("CONFIG window bool", [P(wire.CONFIG, {"ratchet_window": True}, None)]),
    ("CONFIG replay window huge", [P(wire.CONFIG, {"replay_window": 2**40}, None)]),
    ("CONFIG keyring 0", [P(wire.CONFIG, {"keyring_size": 0}, None)]),
    ("CONFIG salt str", [P(wire.CONFIG, {"ratchet_salt": "x"}, None)]),
    ("CONFIG shm 3", [P(wire.CONFIG, {}, ["a", "b", 4096])]),
    ("CONFIG shm size 0", [P(wire.CONFIG, {}, ["a", "b", 0, "/dev/shm"])]),
    ("CONFIG shm size 2**63", [P(wire.CONFIG, {}, ["a", "b", 2**63, "/dev/shm"])]),
    ("CONFIG shm same", [P(wire.CONFIG, {}, ["a", "a", 4096, "/dev/shm"])]),
    ("CONFIG shm NUL", [P(wire.CONFIG, {}, ["a\0", "b", 4096, "/dev/shm"])]),
    ("CONFIG shm name int", [P(wire.CONFIG, {}, [1, "b", 4096, "/dev/shm"])]),
    # the retired per-frame BATCH, well formed as old peers sent it
    ("BATCH (retired)", [P(wire.BATCH, 9, 2), DESC, b"x" * 9]),
    ("BATCH (retired) in shm", [P(wire.BATCH, 2**64 - 1, 2), DESC]),
    ("PACKED arity", [P(wire.PACKED, 5, 3, -1), COLS]),
    ("PACKED no columns", [P(wire.PACKED, 5, 3, -1, HEADS)]),
    ("PACKED count 0", [P(wire.PACKED, 5, 0, -1, []), b""]),
    ("PACKED epoch -2", [P(wire.PACKED, 5, 3, -2, HEADS), COLS]),
    ("PACKED epoch 2**32", [P(wire.PACKED, 5, 3, 2**32, HEADS), COLS]),
    ("PACKED heads dict", [P(wire.PACKED, 5, 3, -1, {}), COLS]),
    ("PACKED head arity", [P(wire.PACKED, 5, 3, -1, [[1, 0, 0, 3, 0]]), COLS]),
    ("PACKED op 0", [P(wire.PACKED, 5, 3, -1, [[0, 0, 0, 3, 0, 0]]), COLS]),
    ("PACKED op True", [P(wire.PACKED, 5, 3, -1, [[True, 0, 0, 3, 0, 0]]), COLS]),
    ("PACKED participant 2**32", [P(wire.PACKED, 5, 3, -1, [[1, 2**32, 0, 3, 0, 0]]), COLS]),
    ("PACKED counter wraps", [P(wire.PACKED, 5, 3, -1, [[1, 0, 2**64 - 2, 3, 0, 0]]), COLS]),
    ("PACKED n 0", [P(wire.PACKED, 5, 3, -1, [[1, 0, 0, 0, 0, 0], [1, 0, 0, 3, 0, 0]]),
                    COLS]),
    ("PACKED in_base negative", [P(wire.PACKED, 5, 3, -1, [[1, 0, 0, 3, -1, 0]]), COLS]),
    ("PACKED out_base float", [P(wire.PACKED, 5, 3, -1, [[1, 0, 0, 3, 0, 1.0]]), COLS]),
    ("PACKED n sum", [P(wire.PACKED, 5, 3, -1, [[1, 0, 0, 2, 0, 0]]), COLS]),
    ("PACKED columns short", [P(wire.PACKED, 5, 3, -1, HEADS), COLS[:-1]]),
    ("PACKED codec 6", [P(wire.PACKED, 5, 3, -1, HEADS), COLS[:36] + b"\x06" + COLS[37:]]),
    ("PACKED 4 parts", [P(wire.PACKED, 5, 3, -1, HEADS), COLS, b"", b""]),
    ("CONTROL no seq", _control()),
    ("CONTROL seq negative", _control(-1, "remove", 7)),
    ("CONTROL seq str", _control("1", "remove", 7)),
    ("PING arity", [P(wire.PING)]),
    ("PING t str", [P(wire.PING, "t")]),
    ("PING t nan", [P(wire.PING, math.nan)]),
    ("PING t bool", [P(wire.PING, False)]),
    ("STOP arity", [P(wire.STOP, 1)]),
    ("STOP extra part", [P(wire.STOP), b""]),
]
# CONTROLs whose seq (77) parsed: ControlRejected, so the worker can still ACK
BAD_CONTROLS: list[tuple[str, list[Any]]] = [
    ("no op", _control(77)),
    ("unknown op", _control(77, "explode", 7)),
    ("op bytes", _control(77, b"remove", 7)),
    ("extra part", [*_control(77, "remove", 7), b""]),
    ("remove arity", _control(77, "remove")),
    ("remove participant 2**32", _control(77, "remove", 2**32)),
    ("remove participant bool", _control(77, "remove", True)),
    ("ratchet index negative", _control(77, "ratchet", 7, -1)),
    ("keyset arity", _control(77, "keyset", 7, *KEYSET[:-1])),
    ("keyset name bytes", _control(77, "keyset", 7, b"p", *KEYSET[1:])),
    ("keyset material int", _control(77, "keyset", 7, "p", 3, 5, *KEYSET[3:])),
    ("keyset kdf md5", _control(77, "keyset", 7, "p", 3, b"k", "md5", 0, True)),
    ("keyset generation 2**16 + 1", _control(77, "keyset", 7, "p", 3, b"k", None, 2**16 + 1,
                                             True)),
    ("keyset make_current 1", _control(77, "keyset", 7, "p", 3, b"k", None, 0, 1)),
    ("keyset an AES key too", _control(77, "keyset", 7, "p", 3, b"k", None, 0, b"a" * 16,
                                       True)),
    ("replay_floor pairs", _control(77, "replay_floor", 7, [[1, 2, 3]])),
    ("replay_floor negative", _control(77, "replay_floor", 7, [[1, -2]])),
    ("replay_floor not list", _control(77, "replay_floor", 7, {"1": 2})),
]
BAD_TO_BROKER: list[tuple[str, list[Any]]] = [
    ("a worker kind", [P(wire.PING, 0)]),
    ("READY arity", [P(wire.READY, 1)]),
    ("READY pid negative", [P(wire.READY, -1, 0)]),
    ("READY slot 2**32", [P(wire.READY, 1, 2**32)]),
    # the short header that answered the retired BATCH, well formed as old workers sent it
    ("RESULT short (BATCH answer)", [P(wire.RESULT, 3, 2), RES]),
    ("RESULT short (BATCH answer), overflow", [P(wire.RESULT, 3, 2), RES, b"overflow"]),
    ("RESULT short (BATCH answer), empty overflow", [P(wire.RESULT, 3, 2), RES, b""]),
    ("RESULT no records", [P(wire.RESULT, 3, 2, [30], [[]], 1.0)]),
    ("RESULT arity", [P(wire.RESULT, 3, 2, [30]), RES, b""]),
    ("RESULT arity 7", [P(wire.RESULT, 3, 2, [30], [[]], 1.0, 0), RES, b""]),
    ("RESULT count mismatch", [P(wire.RESULT, 3, 3, [30], [[]], 1.0), RES, b""]),
    ("RESULT count 0", [P(wire.RESULT, 3, 0, [30], [[]], 1.0), b"", b""]),
    ("RESULT status 9", [P(wire.RESULT, 3, 1, [0], [[]], 1.0), wire.RES.pack(9, 0, 0), b""]),
    ("RESULT status retry", [P(wire.RESULT, 3, 1, [0], [[]], 1.0),
                             wire.RES.pack(wire.ST_RETRY, 0, 0), b""]),
    ("RESULT no overflow", [P(wire.RESULT, 4, 2, [30], [[]], 1.0), RES]),
    ("RESULT used negative", [P(wire.RESULT, 4, 2, [-1], [[]], 1.0), RES, b""]),
    ("RESULT used empty", [P(wire.RESULT, 4, 2, [], [], 1.0), RES, b""]),
    ("RESULT used > count", [P(wire.RESULT, 4, 2, [1, 1, 1], [[], [], []], 1.0), RES, b""]),
    ("RESULT used bool", [P(wire.RESULT, 4, 2, [True], [[]], 1.0), RES, b""]),
    ("RESULT used None", [P(wire.RESULT, 4, 2, None, [[]], 1.0), RES, b""]),
    ("RESULT floors short", [P(wire.RESULT, 4, 2, [1, 2], [[]], 1.0), RES, b""]),
    ("RESULT floors None", [P(wire.RESULT, 4, 2, [1], None, 1.0), RES, b""]),
    ("RESULT floor triple", [P(wire.RESULT, 4, 2, [1], [[[1, 2, 3]]], 1.0), RES, b""]),
    ("RESULT floor str", [P(wire.RESULT, 4, 2, [1], [[["k", 2]]], 1.0), RES, b""]),
    ("RESULT cpu negative", [P(wire.RESULT, 4, 2, [1], [[]], -1.0), RES, b""]),
    ("RESULT cpu inf", [P(wire.RESULT, 4, 2, [1], [[]], math.inf), RES, b""]),
    ("RESULT cpu str", [P(wire.RESULT, 4, 2, [1], [[]], "1"), RES, b""]),
    ("RESULT cpu None", [P(wire.RESULT, 4, 2, [1], [[]], None), RES, b""]),
    ("RESULT 5 parts", [P(wire.RESULT, 4, 2, [1], [[]], 1.0), RES, b"", b"", b""]),
    ("ACK arity", [P(wire.ACK, 1)]),
    ("ACK ok int", [P(wire.ACK, 1, 1)]),
    ("ACK seq negative", [P(wire.ACK, -1, True)]),
    ("ACK failure arity", [P(wire.ACK, 1, False, "E")]),
    ("ACK failure bytes", [P(wire.ACK, 1, False, b"E", "d")]),
    ("ACK result list", [P(wire.ACK, 1, True, [1])]),
    ("ACK result None", [P(wire.ACK, 1, True, None)]),
    ("ACK result bytes (key material)", [P(wire.ACK, 1, True, b"k" * 16)]),
    ("ACK result 2", [P(wire.ACK, 1, True, "hkdf", 2)]),
    ("ACK result negative", [P(wire.ACK, 1, True, -5)]),
    ("ACK extra part", [P(wire.ACK, 1, True), b""]),
    ("EVENT flat", [P(wire.EVENT, "DecryptionFailed", 7, 3)]),
    ("EVENT empty", [P(wire.EVENT, [])]),
    ("EVENT unknown", [P(wire.EVENT, ["Exploded", 7, 3])]),
    ("EVENT arity", [P(wire.EVENT, ["KeyMissing", 7])]),
    ("EVENT index -2", [P(wire.EVENT, ["KeyMissing", 7, -2])]),
    ("EVENT participant str", [P(wire.EVENT, ["KeyMissing", "7", 3])]),
    ("EVENT ratcheted arity", [P(wire.EVENT, ["ratcheted", 7, 3])]),
    ("EVENT ratcheted with keys", [P(wire.EVENT, ["ratcheted", 7, 3, b"m", 2, b"a" * 16])]),
    ("EVENT ratcheted generation", [P(wire.EVENT, ["ratcheted", 7, 3, -1])]),
    ("EVENT ratcheted past 2**16", [P(wire.EVENT, ["ratcheted", 7, 3, 2**16 + 1])]),
    ("PONG arity", [P(wire.PONG)]),
    ("PONG t list", [P(wire.PONG, [])]),
]


@pytest.mark.parametrize(("name", "parts"), BAD_TO_WORKER, ids=[n for n, _ in BAD_TO_WORKER])
def test_malformed_to_worker(name: str, parts: list[Any]) -> None:
    with pytest.raises(ProtocolError) as e:
        parse_to_worker(parts)
    assert not isinstance(e.value, ControlRejected)


@pytest.mark.parametrize(("name", "parts"), BAD_CONTROLS, ids=[n for n, _ in BAD_CONTROLS])
def test_malformed_control_still_names_its_seq(name: str, parts: list[Any]) -> None:
    with pytest.raises(ControlRejected) as e:
        parse_to_worker(parts)
    assert e.value.seq == 77


@pytest.mark.parametrize(("name", "parts"), BAD_TO_BROKER, ids=[n for n, _ in BAD_TO_BROKER])
def test_malformed_to_broker(name: str, parts: list[Any]) -> None:
    with pytest.raises(ProtocolError):
        parse_to_broker(parts)


# --- property: any input gives a typed message or ProtocolError, nothing else ------------

_ints = st.one_of(st.integers(-(2**63), 2**64 - 1), st.sampled_from(
    [0, 1, 2, 6, 255, 2**32 - 1, 2**32, 2**64 - 1, -1, -(2**63)]))
_leaves = st.one_of(st.none(), st.booleans(), _ints, st.floats(), st.text(max_size=8),
                    st.binary(max_size=16), st.sampled_from(["keyset", "ratchet", "remove",
                                                            "replay_floor", "ratcheted",
                                                            "KeyMissing", "hkdf"]),
                    st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=4)))
_values = st.recursive(_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=6),
    st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(sorted(SETTINGS))), inner,
                    max_size=4)), max_leaves=24)
_kinds = st.one_of(st.sampled_from(sorted(wire.KINDS | {wire.BATCH})), _ints)
_headers = st.one_of(
    st.builds(lambda k, rest: [wire.VERSION, k, *rest], _kinds, st.lists(_values, max_size=8)),
    _values)
_blobs = st.lists(st.one_of(st.binary(max_size=64),
                            st.sampled_from([DESC, COLS, RES, DESC[:40], COLS[:14], RES[:12]])),
                  max_size=4)


def _mutations() -> st.SearchStrategy[list[Any]]:
    """A valid message with one header field (or item of a nested list) replaced."""
    valid = [old for _, old in TO_WORKER + TO_BROKER]

    def mutate(old: list[Any], path: list[int], value: Any, extra: list[bytes]) -> list[Any]:
        header = msgpack.unpackb(old[0], raw=False)
        node = header
        for i in path[:-1]:
            if not isinstance(node, list) or not node:
                break
            node = node[i % len(node)]
        if isinstance(node, list) and node:
            node[path[-1] % len(node)] = value
        return [msgpack.packb(header, use_bin_type=True), *old[1:], *extra]

    return st.builds(mutate, st.sampled_from(valid), st.lists(st.integers(0, 12), min_size=1,
                                                              max_size=3),
                     _values, st.lists(st.binary(max_size=8), max_size=1))


_messages = st.one_of(
    st.builds(lambda h, b: [msgpack.packb(h, use_bin_type=True), *b], _headers, _blobs),
    _mutations(),
    st.lists(st.binary(max_size=48), max_size=3))


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_messages)
def test_any_input_parses_into_a_typed_message_or_raises_protocol_error(parts: list[Any]
                                                                        ) -> None:
    for parse, kinds in ((parse_to_worker, (Config, Packed, Control, Ping, Stop)),
                         (parse_to_broker, (Ready, Result, Ack, Event, Pong))):
        try:
            msg = parse(parts)
        except ProtocolError:
            continue
        assert isinstance(msg, kinds)
        # what parsed encodes back to a message that parses to the same
        assert parse(msg.encode()) == msg
