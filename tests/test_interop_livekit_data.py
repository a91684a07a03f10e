"""Interop: framecrypt's E2EE data packets (framecrypt.keys.datamsg) and LKTS packet
trailer (framecrypt.workers.livekit.lkts) against the REAL published livekit-client 2.23.0.

What of livekit-client runs (tests/interop/data_oracle.mjs, unmodified bundles):

* ``DataCryptor`` in ``dist/livekit-client.e2ee.worker.mjs``, driven with the messages
  ``E2eeManager.encryptData`` / ``handleEncryptedData`` post (``encryptDataRequest`` /
  ``decryptDataRequest``); around it the containers ``RTCEngine`` builds: the
  ``EncryptedPacketPayload`` of the library's exported ``asEncryptablePacket`` and
  ``livekit.EncryptedPacket`` of @livekit/protocol 1.52.1 (the version livekit-client
  pins and bundles; it does not export its bundled copy);
* the LKTS packet trailer in the e2ee worker (appended after encryption when the track
  publishes ``packetTrailer`` options, stripped before decryption when the track has
  ``hasPacketTrailer``) and in the packet-trailer worker ``dist/livekit-client.fm.worker.mjs``
  (unencrypted tracks).

Both directions: livekit-client seals → framecrypt opens (and re-seals the same bytes from
livekit-client's IV), framecrypt seals → livekit-client opens; tampered packets fail on both
sides. All livekit-client work is ONE node job, run once by the module fixture.
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

import lk_oracle
import pytest

from framecrypt import livekit
from framecrypt.errors import AuthenticationFailed, FramecryptError, UnknownKey
from framecrypt.keys.datamsg import (
    DataReceiver,
    DataSender,
    EncryptedPacket,
    chat_payload,
    data_iv,
    decrypt_data,
    encrypt_data,
    parse_payload,
    user_payload,
)
from framecrypt.keys.olm import MediaKey
from framecrypt.workers.livekit import lkts
from framecrypt.workers.livekit.cryptor import ParticipantCryptor
from framecrypt.workers.livekit.kdf import Kdf, KdfName
from framecrypt.workers.livekit.lkts import FrameMetadata

pytestmark = pytest.mark.node

RAW_KEY = random.Random("data-raw-key").randbytes(32)
OTHER_RAW = random.Random("data-other-key").randbytes(32)
PASSPHRASE = "framecrypt data passphrase ✓"
SIZES = [0, 1, 100, 16 * 1024, 64 * 1024]
DATE_NOW_MS = 1_700_000_000_123  # Date.now() pinned in the workers: LKTS user timestamp
FM_DATE_NOW_MS = 42_000


def _bytes(tag: str, n: int) -> bytes:
    return random.Random(tag).randbytes(n)


# ---- data-packet scenarios -------------------------------------------------------------


@functools.cache
def _chain(material: bytes | str, algorithm: KdfName, key_bytes: int, ratchets: int) -> bytes:
    m = material.encode() if isinstance(material, str) else material
    for _ in range(ratchets):
        m = Kdf.livekit(algorithm, key_size=key_bytes).ratchet(m)
    return m


@functools.cache
def _aes_key(chain: bytes, algorithm: KdfName, key_bytes: int) -> bytes:
    """(cached: PBKDF2 costs 100,000 iterations)"""
    return Kdf.livekit(algorithm, key_size=key_bytes).derive_key(chain)


@dataclass(frozen=True)
class Sc:
    """One key setup: sender peer ``tx``, receiver peer ``rx``, participant = ``name``."""

    name: str
    material: bytes | str
    index: int = 0
    ratchets: int = 0
    tx: str = "a"
    rx: str = "b"
    key_bytes: int = 16

    @property
    def algorithm(self) -> KdfName:
        return "pbkdf2" if isinstance(self.material, str) else "hkdf"

    @property
    def kdf(self) -> Kdf:
        return Kdf.livekit(self.algorithm, key_size=self.key_bytes)

    @property
    def chain(self) -> bytes:
        """The current material (after the ratchets) as framecrypt holds it."""
        return _chain(self.material, self.algorithm, self.key_bytes, self.ratchets)

    @property
    def aes_key(self) -> bytes:
        return _aes_key(self.chain, self.algorithm, self.key_bytes)

    @property
    def media_key(self) -> MediaKey:
        return MediaKey(self.chain, self.index)


SCENARIOS = [
    Sc("hkdf-kid0", RAW_KEY),
    Sc("hkdf-kid5", RAW_KEY, index=5),
    Sc("hkdf-kid15", RAW_KEY, index=15),
    Sc("pbkdf2-kid0", PASSPHRASE),
    Sc("pbkdf2-kid7", PASSPHRASE, index=7),
    Sc("hkdf-r1-kid3", RAW_KEY, index=3, ratchets=1),
    # ExternalE2EEKeyProvider (one shared key handler in the worker)
    Sc("shared-pbkdf2-kid2", PASSPHRASE, index=2, tx="sa", rx="sb"),
    # keySize 256: the data key is AES-256
    Sc("hkdf-aes256-kid1", RAW_KEY, index=1, tx="a256", rx="b256", key_bytes=32),
]
_SC = {s.name: s for s in SCENARIOS}
MATRIX = [(s.name, n) for s in SCENARIOS for n in SIZES]
MATRIX_IDS = [f"{s}-{n}" for s, n in MATRIX]

TAMPER_SC = _SC["hkdf-kid5"]
TAMPER_SIZE = 100
TAMPER_OTHER_INDEX = 6  # the receiver holds OTHER_RAW here
TAMPER_EMPTY_INDEX = 9  # and nothing here
TAMPERS: dict[str, dict[str, int]] = {
    "ciphertext-first-byte": {"payload_flip": 0},
    "ciphertext-middle-byte": {"payload_flip": 50},
    "tag-last-byte": {"payload_flip": -1},
    "iv-random-word": {"iv_flip": 0},
    "iv-time-word": {"iv_flip": 5},
    "iv-count-word": {"iv_flip": 11},
    "key-index-to-other-key": {"key_index": TAMPER_OTHER_INDEX},
    "key-index-to-missing-key": {"key_index": TAMPER_EMPTY_INDEX},
}


def tampered(pkt: EncryptedPacket, how: dict[str, int]) -> EncryptedPacket:
    """framecrypt's copy of data_oracle.mjs's ``tamper``: flip bit 0 of one byte."""

    def flip(b: bytes, i: int) -> bytes:
        out = bytearray(b)
        out[i] ^= 0x01
        return bytes(out)

    if "payload_flip" in how:
        pkt = replace(pkt, payload=flip(pkt.payload, how["payload_flip"]))
    if "iv_flip" in how:
        pkt = replace(pkt, iv=flip(pkt.iv, how["iv_flip"]))
    if "key_index" in how:
        pkt = replace(pkt, key_index=how["key_index"])
    return pkt


# IV clock cases: (performance.now() pinned in the worker, what framecrypt is given)
CLOCK_CASES: list[tuple[float, int]] = [
    (0, 0),
    (0, 0),  # send count 1: t − 1 wraps to 0xFFFFFFFF
    (5.75, 5),  # fractional ms: DataView.setUint32 truncates
    (2**32 + 7, 2**32 + 7),  # setUint32 takes the clock mod 2^32
    (2**32 - 1, 2**32 - 1),
    (123_456.999, 123_456),
]

# ---- LKTS ------------------------------------------------------------------------------

LKTS_SC = Sc("lkts", RAW_KEY, index=2)
VP8_KEY = _bytes("lkts-vp8-key", 800)
VP8_DELTA = _bytes("lkts-vp8-delta", 300)
OPUS = _bytes("lkts-opus", 90)
H264_IDR = (
    b"\x00\x00\x00\x01"
    + bytes.fromhex("6742c01f0fd91f888884")
    + b"\x00\x00\x00\x01"
    + bytes.fromhex("68ce3c80")
    + b"\x00\x00\x00\x01"
    + b"\x65\x88"
    + bytes(random.Random("h").randrange(1, 256) for _ in range(400))
)


@dataclass(frozen=True)
class LkFrame:
    """A frame livekit-client's e2ee worker seals on a track with ``packetTrailer``."""

    tag: str
    track: str
    options: tuple[tuple[str, bool], ...]
    codec: str
    keyframe: bool
    data: bytes
    ssrc: int = 0x0A0B0C0D
    timestamp: int = 90_000


LK_FRAMES = [
    LkFrame("both-0", "t-both", (("timestamp", True), ("frameId", True)), "vp8", True, VP8_KEY),
    LkFrame(
        "both-1",
        "t-both",
        (("timestamp", True), ("frameId", True)),
        "vp8",
        False,
        VP8_DELTA,
        timestamp=93_000,
    ),
    LkFrame(
        "both-2",
        "t-both",
        (("timestamp", True), ("frameId", True)),
        "vp8",
        False,
        VP8_DELTA[::-1],
        timestamp=96_000,
    ),
    LkFrame("fid-0", "t-fid", (("frameId", True),), "vp8", True, VP8_KEY),
    LkFrame("fid-1", "t-fid", (("frameId", True),), "vp8", False, VP8_DELTA),
    LkFrame("ts-0", "t-ts", (("timestamp", True),), "vp8", True, VP8_KEY),
    LkFrame("h264-0", "t-h264", (("timestamp", True), ("frameId", True)), "h264", True, H264_IDR),
    LkFrame(
        "opus-0",
        "t-opus",
        (("timestamp", True), ("frameId", True)),
        "opus",
        False,
        OPUS,
        timestamp=48_000,
    ),
]
_LF = {f.tag: f for f in LK_FRAMES}
# what livekit-client writes for each (frame ids count per track from 1)
LK_EXPECT: dict[str, FrameMetadata | None] = {
    "both-0": FrameMetadata(DATE_NOW_MS * 1000, 1),
    "both-1": FrameMetadata(DATE_NOW_MS * 1000, 2),
    "both-2": FrameMetadata(DATE_NOW_MS * 1000, 3),
    "fid-0": FrameMetadata(0, 1),
    "fid-1": FrameMetadata(0, 2),
    "ts-0": FrameMetadata(DATE_NOW_MS * 1000, 0),
    "h264-0": FrameMetadata(DATE_NOW_MS * 1000, 1),
    "opus-0": None,  # audio: no trailer
}

# framecrypt writes (ParticipantCryptor.encrypt(metadata=...)), livekit-client reads
FC_META: dict[str, FrameMetadata] = {
    "ts": FrameMetadata(1_699_999_999_999_999, 0),
    "fid": FrameMetadata(0, 0xFFFFFFFF),
    "ts-fid-user": FrameMetadata(2**63 + 5, 77, b"hello"),
    "user-200": FrameMetadata(0, 0, _bytes("user-200", 200)),
    "all-200": FrameMetadata(2**64 - 1, 1, _bytes("all-200", 200)),
}

# LKTS trailers tampered after livekit-client sealed frame "both-1" (21-byte trailer:
# timestamp TLV, frame-id TLV, length byte, "LKTS")
LKTS_TAMPERS = {
    "frame-id-value": -6,  # inside the frame-id TLV: unauthenticated metadata
    "timestamp-value": -13,  # inside the timestamp TLV
    "length-byte": -5,
    "magic": -1,
    "ciphertext": 12,
}


def _tlv(tag: int, value: bytes, length: int | None = None) -> bytes:
    return bytes((tag, len(value) if length is None else length)) + value


def _trailer(entries: bytes, total: int | None = None) -> bytes:
    total = len(entries) + 5 if total is None else total
    return bytes(b ^ 0xFF for b in entries) + bytes((total ^ 0xFF,)) + b"LKTS"


_TS = (1_234_567_890_123_456).to_bytes(8, "big")
_FID = (0xCAFEBABE).to_bytes(4, "big")
_BODY = bytes.fromhex("9d012a1020304050")
# hand-made inputs for the two parsers (framecrypt's lkts.extract and the library's)
CRAFTED: dict[str, bytes] = {
    "ts-fid": _BODY + _trailer(_tlv(1, _TS) + _tlv(2, _FID)),
    "fid-ts-order": _BODY + _trailer(_tlv(2, _FID) + _tlv(1, _TS)),
    "user-only": _BODY + _trailer(_tlv(3, b"xyz")),
    "user-empty": _BODY + _trailer(_tlv(3, b"")),
    "unknown-tag-only": _BODY + _trailer(_tlv(7, b"abc")),
    "unknown-then-fid": _BODY + _trailer(_tlv(7, b"ab") + _tlv(2, _FID)),
    "ts-wrong-length": _BODY + _trailer(_tlv(1, _TS[:7])),
    "fid-wrong-length-then-user": _BODY + _trailer(_tlv(2, _FID[:3]) + _tlv(3, b"u")),
    "truncated-tlv-after-fid": _BODY + _trailer(_tlv(2, _FID) + bytes((3, 50)) + b"xy"),
    "duplicate-fid": _BODY + _trailer(_tlv(2, _FID) + _tlv(2, b"\x00\x00\x00\x09")),
    "length-too-small": _BODY + _trailer(_tlv(2, _FID), total=4),
    "length-exactly-envelope": _BODY + _trailer(b"", total=5),
    "length-beyond-frame": b"\x01" + _trailer(_tlv(2, _FID), total=200),
    "whole-frame-is-trailer": _trailer(_tlv(2, _FID)),
    "no-magic": _BODY + _trailer(_tlv(2, _FID))[:-1] + b"s",
    "magic-only": b"LKTS",
    "too-short": b"KTS",
    "plain-frame": _BODY,
}


# ---- the one oracle run ----------------------------------------------------------------


@dataclass
class Run:
    result: dict[str, Any]
    tags: dict[str, int]
    ours: dict[str, Any]
    counts: dict[str, int]

    def get(self, tag: str) -> dict[str, Any]:
        r: dict[str, Any] = self.result["results"][self.tags[tag]]
        return r


def _build_job() -> tuple[dict[str, Any], dict[str, int], dict[str, Any], dict[str, int]]:
    ops: list[dict[str, Any]] = []
    tags: dict[str, int] = {}
    ours: dict[str, Any] = {}
    counts: dict[str, int] = {}  # tag -> livekit-client's send count for that packet
    sent: dict[str, int] = {}  # peer -> encryptData requests so far (DataCryptor.sendCount)
    perf = [10_000]

    def add(tag: str | None, op: dict[str, Any]) -> int:
        ops.append(op)
        if tag is not None:
            assert tag not in tags, tag
            tags[tag] = len(ops) - 1
        return len(ops) - 1

    def set_key(
        peer: str, participant: str, material: bytes | str, index: int, tag: str | None = None
    ) -> None:
        add(tag, lk_oracle.set_key_op(peer, material, participant=participant, index=index))

    def lk_seal(
        tag: str,
        peer: str,
        participant: str,
        data: bytes | None = None,
        *,
        perf_now: float | None = None,
        data_from: int | None = None,
    ) -> int:
        if perf_now is None:
            perf[0] += 17
            perf_now = perf[0]
        op: dict[str, Any] = {
            "op": "encryptData",
            "peer": peer,
            "participant": participant,
            "perf_now": perf_now,
        }
        if data_from is not None:
            op["data_from"] = data_from
        else:
            op["data_hex"] = (data or b"").hex()
        counts[tag] = sent.get(peer, 0)
        sent[peer] = counts[tag] + 1
        return add(tag, op)

    def lk_open(
        tag: str,
        peer: str,
        participant: str,
        *,
        packet_from: int | None = None,
        packet: bytes | None = None,
        tamper: dict[str, int] | None = None,
    ) -> None:
        op: dict[str, Any] = {"op": "decryptData", "peer": peer, "participant": participant}
        if packet_from is not None:
            op["packet_from"] = packet_from
        else:
            assert packet is not None
            op["packet_hex"] = packet.hex()
        if tamper:
            op["tamper"] = tamper
        add(tag, op)

    # --- keys ---
    for s in SCENARIOS:
        for peer in (s.tx, s.rx):
            set_key(peer, s.name, s.material, s.index, tag=f"setKey/{peer}/{s.name}")
            for i in range(s.ratchets):
                add(
                    f"ratchet/{peer}/{s.name}/{i}",
                    lk_oracle.ratchet_op(peer, participant=s.name, index=s.index),
                )
    # the tamper receiver also holds a different key at another index
    set_key(TAMPER_SC.rx, TAMPER_SC.name, OTHER_RAW, TAMPER_OTHER_INDEX)

    # --- both directions, every scenario and size ---
    fc_rng = random.Random("fc-data")
    for s in SCENARIOS:
        sender = DataSender(s.kdf)
        for n in SIZES:
            tag = f"{s.name}-{n}"
            data = _bytes(f"data-{tag}", n)
            seal = lk_seal(f"lk-seal/{tag}", s.tx, s.name, data)
            lk_open(f"lk-open-lk/{tag}", s.rx, s.name, packet_from=seal)
            pkt = sender.seal(data, s.media_key, now_ms=50_000 + n, random32=fc_rng.getrandbits(32))
            ours[f"fc-seal/{tag}"] = pkt
            lk_open(f"lk-open-fc/{tag}", s.rx, s.name, packet=pkt.to_bytes())

    # --- tampered packets, both sources, on the library's receiver ---
    t = TAMPER_SC
    for name, how in TAMPERS.items():
        lk_open(
            f"lk-open-lk-tampered/{name}",
            t.rx,
            t.name,
            packet_from=tags[f"lk-seal/{t.name}-{TAMPER_SIZE}"],
            tamper=how,
        )
        lk_open(
            f"lk-open-fc-tampered/{name}",
            t.rx,
            t.name,
            packet=ours[f"fc-seal/{t.name}-{TAMPER_SIZE}"].to_bytes(),
            tamper=how,
        )

    # --- the key index is not authenticated: same key at 8 and 9 ---
    set_key("a", "alias", RAW_KEY, 8)
    for idx in (8, 9):
        set_key("b", "alias", RAW_KEY, idx)
    alias = lk_seal("lk-seal/alias", "a", "alias", b"relabelled")
    lk_open("lk-open-lk/alias-as-9", "b", "alias", packet_from=alias, tamper={"key_index": 9})
    ours["fc-seal/alias"] = DataSender(Kdf.livekit("hkdf")).seal(
        b"relabelled", MediaKey(RAW_KEY, 8), now_ms=1, random32=2
    )
    lk_open(
        "lk-open-fc/alias-as-9",
        "b",
        "alias",
        packet=ours["fc-seal/alias"].to_bytes(),
        tamper={"key_index": 9},
    )

    # --- ratchet gap: sender at r1, receiver at r0 (livekit-client's default window 8) ---
    set_key("a", "gap", RAW_KEY, 0)
    add("ratchet/a/gap", lk_oracle.ratchet_op("a", participant="gap", index=0))
    set_key("b", "gap", RAW_KEY, 0)
    gap = lk_seal("lk-seal/gap", "a", "gap", b"after a ratchet")
    r1 = Kdf.livekit("hkdf").ratchet(RAW_KEY)
    ours["fc-seal/gap"] = DataSender(Kdf.livekit("hkdf")).seal(
        b"after a ratchet", MediaKey(r1, 0), now_ms=7, random32=8
    )
    lk_open("lk-open-lk/gap-r0", "b", "gap", packet_from=gap)
    lk_open("lk-open-fc/gap-r0", "b", "gap", packet=ours["fc-seal/gap"].to_bytes())
    add("ratchet/b/gap", lk_oracle.ratchet_op("b", participant="gap", index=0))
    lk_open("lk-open-lk/gap-r1", "b", "gap", packet_from=gap)
    lk_open("lk-open-fc/gap-r1", "b", "gap", packet=ours["fc-seal/gap"].to_bytes())

    # --- IV clock and counter (a fresh worker: DataCryptor.sendCount starts at 0) ---
    set_key("clk", "clk", RAW_KEY, 0)
    for i, (perf_now, _) in enumerate(CLOCK_CASES):
        lk_seal(f"lk-seal/clock-{i}", "clk", "clk", b"tick", perf_now=perf_now)

    # --- EncryptedPacketPayload: the library's protobuf vs framecrypt's ---
    big = _bytes("user-payload", 100)
    add(
        "build/user",
        {"op": "buildPayload", "case": "user", "payload_hex": big.hex(), "topic": "chat"},
    )
    add("build/user-empty", {"op": "buildPayload", "case": "user", "payload_hex": ""})
    add(
        "build/user-empty-topic",
        {"op": "buildPayload", "case": "user", "payload_hex": "01", "topic": ""},
    )
    add(
        "build/chat",
        {
            "op": "buildPayload",
            "case": "chatMessage",
            "id": "m-1",
            "timestamp": 1_700_000_000_000,
            "message": "héllo ✓",
        },
    )
    add(
        "build/chat-defaults",
        {"op": "buildPayload", "case": "chatMessage", "id": "", "timestamp": 0, "message": "x"},
    )
    for tag, raw in (
        ("user", user_payload(big, "chat")),
        ("chat", chat_payload("héllo ✓", id="m-1", timestamp_ms=1_700_000_000_000)),
        ("chat-defaults", chat_payload("x", id="", timestamp_ms=0)),
    ):
        add(f"parse/{tag}", {"op": "parsePayload", "hex": raw.hex()})
    # a chat message end to end: built and sealed by the library, and by framecrypt
    lk_seal("lk-seal/chat", "a", "hkdf-kid5", data_from=tags["build/chat"])
    chat = chat_payload("from framecrypt ✓", id="fc-1", timestamp_ms=1_700_000_000_001)
    ours["fc-seal/chat"] = DataSender(Kdf.livekit("hkdf")).seal(
        chat, MediaKey(RAW_KEY, 5), now_ms=99, random32=1
    )
    lk_open("lk-open-fc/chat", "b", "hkdf-kid5", packet=ours["fc-seal/chat"].to_bytes())
    add("parse/fc-chat", {"op": "parsePayload", "hex": chat.hex()})

    # --- LKTS through the e2ee worker ---
    ls = LKTS_SC
    for peer in ("a", "b"):
        set_key(peer, ls.name, ls.material, ls.index)

    def frame_op(
        op: str,
        peer: str,
        track: str,
        codec: str,
        keyframe: bool,
        *,
        data: bytes | None = None,
        data_from: int | None = None,
        ssrc: int = 1,
        timestamp: int = 9000,
        **extra: Any,
    ) -> dict[str, Any]:
        d: dict[str, Any] = {
            "op": op,
            "peer": peer,
            "participant": ls.name,
            "track": track,
            "codec": codec,
            "keyframe": keyframe,
            "ssrc": ssrc,
            "timestamp": timestamp,
            **extra,
        }
        if data_from is not None:
            d["data_from"] = data_from
        else:
            d["data_hex"] = (data or b"").hex()
        return d

    for f in LK_FRAMES:
        enc = add(
            f"lk-enc/{f.tag}",
            frame_op(
                "encodeFrame",
                "a",
                f.track,
                f.codec,
                f.keyframe,
                data=f.data,
                ssrc=f.ssrc,
                timestamp=f.timestamp,
                packet_trailer=dict(f.options),
                date_now=DATE_NOW_MS,
            ),
        )
        add(
            f"lk-dec/{f.tag}",
            frame_op(
                "decodeFrame",
                "b",
                f.track,
                f.codec,
                f.keyframe,
                data_from=enc,
                ssrc=f.ssrc,
                timestamp=f.timestamp,
                has_packet_trailer=True,
            ),
        )

    fc = ParticipantCryptor()
    fc.set_key(RAW_KEY, ls.index)
    for i, (tag, meta) in enumerate([*FC_META.items(), ("none", FrameMetadata())]):
        frame = fc.encrypt(
            VP8_KEY,
            codec="vp8",
            keyframe=True,
            ssrc=77,
            timestamp=1000 + i,
            send_count=i,
            metadata=meta,
        )
        ours[f"fc-enc/{tag}"] = frame
        add(
            f"lk-dec-fc/{tag}",
            frame_op(
                "decodeFrame",
                "b",
                "fc-lkts",
                "vp8",
                True,
                data=frame,
                ssrc=77,
                timestamp=1000 + i,
                has_packet_trailer=True,
            ),
        )
    # a receiver track without hasPacketTrailer does not strip it
    add(
        "lk-dec-fc-no-pt/ts-fid-user",
        frame_op(
            "decodeFrame",
            "b",
            "no-pt",
            "vp8",
            True,
            data=ours["fc-enc/ts-fid-user"],
            has_packet_trailer=False,
        ),
    )
    add(
        "lk-dec-fc-no-pt/none",
        frame_op(
            "decodeFrame",
            "b",
            "no-pt",
            "vp8",
            True,
            data=ours["fc-enc/none"],
            has_packet_trailer=False,
        ),
    )
    for name, at in LKTS_TAMPERS.items():
        add(
            f"lk-dec-tampered/{name}",
            frame_op(
                "decodeFrame",
                "b",
                "tampered",
                "vp8",
                False,
                data_from=tags["lk-enc/both-1"],
                has_packet_trailer=True,
                tamper={"flip": at},
            ),
        )
    for name, raw in CRAFTED.items():
        add(
            f"lk-dec-crafted/{name}",
            frame_op(
                "decodeFrame", "b", "crafted", "vp8", False, data=raw, has_packet_trailer=True
            ),
        )

    # --- LKTS through the packet-trailer worker (no E2EE) ---
    plain = [_bytes("fm-plain-0", 500), _bytes("fm-plain-1", 40), b"", _bytes("fm-plain-3", 9)]
    for i, p in enumerate(plain):
        add(
            f"fm-enc/{i}",
            {
                "op": "encodeFrame",
                "peer": "fa",
                "track": "v",
                "codec": "vp8",
                "keyframe": i == 0,
                "data_hex": p.hex(),
                "ssrc": 5,
                "timestamp": 100 + i,
                "date_now": FM_DATE_NOW_MS,
                "packet_trailer": {"timestamp": True, "frameId": True},
            },
        )
    for tag, meta in FC_META.items():
        data = lkts.append(plain[0], meta)
        ours[f"fc-append/{tag}"] = data
        add(
            f"fm-dec-fc/{tag}",
            {
                "op": "decodeFrame",
                "peer": "fb",
                "track": "v",
                "codec": "vp8",
                "data_hex": data.hex(),
                "has_packet_trailer": True,
            },
        )
    for name, raw in CRAFTED.items():
        add(
            f"fm-dec-crafted/{name}",
            {
                "op": "decodeFrame",
                "peer": "fb",
                "track": "v",
                "codec": "vp8",
                "data_hex": raw.hex(),
                "has_packet_trailer": True,
            },
        )

    peers: dict[str, dict[str, Any]] = {
        "sa": {"shared_key": True},
        "sb": {"shared_key": True},
        "a256": {"key_size": 256},
        "b256": {"key_size": 256},
        "fa": {"bundle": "fm"},
        "fb": {"bundle": "fm"},
    }
    return {"options": {"peers": peers}, "ops": ops}, tags, ours, counts


@pytest.fixture(scope="module")
def run(lk: ModuleType) -> Run:
    job, tags, ours, counts = _build_job()
    result = lk.run_data_job(job, timeout=120)
    return Run(result, tags, ours, counts)


def _fc(run: Run, tag: str) -> EncryptedPacket:
    pkt: EncryptedPacket = run.ours[tag]
    return pkt


def _lk_packet(r: dict[str, Any]) -> EncryptedPacket:
    assert "packet_hex" in r, r
    return EncryptedPacket.from_bytes(bytes.fromhex(r["packet_hex"]))


def _lk_plain(r: dict[str, Any]) -> bytes:
    if "data_hex" not in r:
        raise AssertionError(f"livekit-client did not deliver: {r}")
    return bytes.fromhex(r["data_hex"])


def _receiver(s: Sc, sender: str = "peer") -> DataReceiver:
    rx = DataReceiver(s.kdf)
    rx.set_key(sender, s.media_key)
    return rx


# ---- the pinned bundles ----------------------------------------------------------------


def test_bundles_are_the_pinned_ones(run: Run) -> None:
    res = run.result
    assert res["livekit_client_version"] == lk_oracle.PINNED_VERSION
    assert res["bundles"]["e2ee"]["sha256"] == lk_oracle.WORKER_SHA256
    assert res["bundles"]["fm"]["sha256"] == lk_oracle.FM_WORKER_SHA256
    assert res["bundles"]["e2ee"]["path"] == str(lk_oracle.WORKER_BUNDLE)
    assert res["bundles"]["fm"]["path"] == str(lk_oracle.FM_WORKER_BUNDLE)
    assert res["protocol_version"] == lk_oracle.PROTOCOL_VERSION
    lock = json.loads((lk_oracle.INTEROP_DIR / "package-lock.json").read_text(encoding="utf-8"))
    assert lock["packages"]["node_modules/@livekit/protocol"]["version"] == (
        lk_oracle.PROTOCOL_VERSION
    )
    # the protocol package's message definitions are the ones livekit-client bundles
    assert res["payload_fields"]["bundled"] == res["payload_fields"]["protocol"]
    assert res["encrypted_packet_fields"] == [
        "1:encryption_type",
        "2:iv",
        "3:key_index",
        "4:encrypted_value",
    ]


# ---- key derivation --------------------------------------------------------------------


@pytest.mark.parametrize("scenario", [s.name for s in SCENARIOS])
def test_data_key_is_the_frame_key(run: Run, scenario: str) -> None:
    """The AES key livekit-client derives on setKey (used for frames and data alike) is
    framecrypt's Kdf.livekit(...).derive_key of the same material."""
    s = Sc(scenario, _SC[scenario].material, key_bytes=_SC[scenario].key_bytes)
    for peer in (_SC[scenario].tx, _SC[scenario].rx):
        assert run.get(f"setKey/{peer}/{scenario}")["aes_key_hex"] == s.aes_key.hex()


# ---- livekit-client seals, framecrypt opens ---------------------------------------------


@pytest.mark.parametrize(("scenario", "size"), MATRIX, ids=MATRIX_IDS)
def test_livekit_sealed_framecrypt_opens(run: Run, scenario: str, size: int) -> None:
    s = _SC[scenario]
    data = _bytes(f"data-{scenario}-{size}", size)
    sealed = run.get(f"lk-seal/{scenario}-{size}")
    assert _lk_plain(run.get(f"lk-open-lk/{scenario}-{size}")) == data  # library round trip
    pkt = _lk_packet(sealed)
    assert pkt.key_index == s.index == sealed["key_index"]
    assert pkt.iv.hex() == sealed["iv_hex"] == sealed["gcm_iv_hex"]
    assert sealed["aad_hex"] is None  # livekit-client passes no additionalData
    assert len(pkt.payload) == size + 16
    assert decrypt_data(pkt, key=s.aes_key) == data
    assert _receiver(s).open("peer", bytes.fromhex(sealed["packet_hex"])) == data


@pytest.mark.parametrize(("scenario", "size"), MATRIX, ids=MATRIX_IDS)
def test_framecrypt_reseals_identically(run: Run, scenario: str, size: int) -> None:
    """livekit-client's IV = random ‖ t ‖ t − sendCount; framecrypt given the same three
    inputs produces the same IV, ciphertext and EncryptedPacket bytes."""
    s = _SC[scenario]
    tag = f"lk-seal/{scenario}-{size}"
    sealed = run.get(tag)
    iv = bytes.fromhex(sealed["iv_hex"])
    random32, t = int.from_bytes(iv[:4], "big"), int.from_bytes(iv[4:8], "big")
    count = run.counts[tag]
    assert iv == data_iv(random32, t, count)
    ours = encrypt_data(
        _bytes(f"data-{scenario}-{size}", size),
        key=s.aes_key,
        key_index=s.index,
        random32=random32,
        now_ms=t,
        send_count=count,
    )
    assert ours.to_bytes().hex() == sealed["packet_hex"]


# ---- framecrypt seals, livekit-client opens ---------------------------------------------


@pytest.mark.parametrize(("scenario", "size"), MATRIX, ids=MATRIX_IDS)
def test_framecrypt_sealed_livekit_opens(run: Run, scenario: str, size: int) -> None:
    s = _SC[scenario]
    pkt = _fc(run, f"fc-seal/{scenario}-{size}")
    assert pkt.key_index == s.index
    opened = run.get(f"lk-open-fc/{scenario}-{size}")
    assert _lk_plain(opened) == _bytes(f"data-{scenario}-{size}", size)
    # first try, no ratchet retry, no AAD
    assert opened["attempts"] == [{"iv_hex": pkt.iv.hex(), "aad_hex": None, "ok": True}]
    assert opened["chains"] == []


def test_iv_clock_and_send_counter(run: Run) -> None:
    """IV = random32 ‖ ToUint32(performance.now()) ‖ ToUint32(now − sendCount % 0xFFFF),
    sendCount one static counter per worker starting at 0 (not random, unlike frames)."""
    for i, (_, now_ms) in enumerate(CLOCK_CASES):
        tag = f"lk-seal/clock-{i}"
        assert run.counts[tag] == i
        iv = bytes.fromhex(run.get(tag)["iv_hex"])
        assert iv == data_iv(int.from_bytes(iv[:4], "big"), now_ms, i), (i, iv.hex())
    # wrap-around seen in the library's own output: t = 0, sendCount 1
    assert run.get("lk-seal/clock-1")["iv_hex"][8:] == "00000000ffffffff"
    # the counter is per worker, shared by every participant it encrypts for: peer "a"
    # sealed hkdf-kid0's packets first, so hkdf-kid5's first packet has sendCount 5
    iv = bytes.fromhex(run.get(f"lk-seal/hkdf-kid5-{SIZES[0]}")["iv_hex"])
    t, w3 = int.from_bytes(iv[4:8], "big"), int.from_bytes(iv[8:12], "big")
    assert t - w3 == len(SIZES)
    randoms = {run.get(f"lk-seal/clock-{i}")["iv_hex"][:8] for i in range(len(CLOCK_CASES))}
    assert len(randoms) == len(CLOCK_CASES)  # crypto.getRandomValues per packet


# ---- tampering -------------------------------------------------------------------------


def _tamper_receiver() -> DataReceiver:
    rx = _receiver(TAMPER_SC)
    rx.set_key("peer", MediaKey(OTHER_RAW, TAMPER_OTHER_INDEX))
    return rx


@pytest.mark.parametrize("how", list(TAMPERS))
def test_tampered_packets_fail_on_both_sides(run: Run, how: str) -> None:
    t = TAMPER_SC
    expected: type[FramecryptError] = (
        UnknownKey if TAMPERS[how].get("key_index") == TAMPER_EMPTY_INDEX else AuthenticationFailed
    )
    lk_sealed = _lk_packet(run.get(f"lk-seal/{t.name}-{TAMPER_SIZE}"))
    fc_sealed = _fc(run, f"fc-seal/{t.name}-{TAMPER_SIZE}")
    for source, pkt in (("lk", lk_sealed), ("fc", fc_sealed)):
        # the untampered packet opens on both sides (controls)
        assert _tamper_receiver().open("peer", pkt) == _bytes(
            f"data-{t.name}-{TAMPER_SIZE}", TAMPER_SIZE
        )
        bad = tampered(pkt, TAMPERS[how])
        with pytest.raises(expected):
            _tamper_receiver().open("peer", bad)
        with pytest.raises(expected):
            _tamper_receiver().open("peer", bad.to_bytes())
        if expected is AuthenticationFailed and "key_index" not in TAMPERS[how]:
            with pytest.raises(AuthenticationFailed):
                decrypt_data(bad, key=t.aes_key)
        r = run.get(f"lk-open-{source}-tampered/{how}")
        assert "data_hex" not in r and "error" in r, (source, r)
        if expected is UnknownKey:
            assert r["error"] == "No key set found"
        else:
            assert all(not a["ok"] for a in r["attempts"]) and len(r["attempts"]) == 9
    assert _lk_plain(run.get(f"lk-open-lk/{t.name}-{TAMPER_SIZE}"))  # same receiver, intact


def test_key_index_is_not_authenticated(run: Run) -> None:
    """No AAD: the key index only selects a key. Relabelled to an index holding the same key,
    a packet opens on both sides (so the tampered-index failures above come from the key)."""
    rx = DataReceiver(Kdf.livekit("hkdf"))
    for idx in (8, 9):
        rx.set_key("peer", MediaKey(RAW_KEY, idx))
    lk_pkt = _lk_packet(run.get("lk-seal/alias"))
    assert lk_pkt.key_index == 8
    assert rx.open("peer", replace(lk_pkt, key_index=9)) == b"relabelled"
    assert rx.open("peer", replace(_fc(run, "fc-seal/alias"), key_index=9)) == b"relabelled"
    assert _lk_plain(run.get("lk-open-lk/alias-as-9")) == b"relabelled"
    assert _lk_plain(run.get("lk-open-fc/alias-as-9")) == b"relabelled"


def test_livekit_data_receiver_does_not_follow_a_ratchet(run: Run) -> None:
    """livekit-client 2.23.0 bug: DataCryptor.decrypt's retries derive the next key
    (chain r1, eight times) but decrypt again with the stored r0 key, so a receiver at r0
    never opens a packet sealed at r1 — not even one sealed by livekit-client itself.
    framecrypt's DataReceiver follows the ratchet. After an explicit ratchet both open."""
    r1 = Kdf.livekit("hkdf").ratchet(RAW_KEY)
    for source in ("lk", "fc"):
        r = run.get(f"lk-open-{source}/gap-r0")
        assert "data_hex" not in r and "valid key missing" in r["error"], r
        assert len(r["attempts"]) == 9 and not any(a["ok"] for a in r["attempts"])
        assert r["chains"] == [r1.hex()] * 8
        assert _lk_plain(run.get(f"lk-open-{source}/gap-r1")) == b"after a ratchet"
    rx = DataReceiver(Kdf.livekit("hkdf"))
    rx.set_key("peer", MediaKey(RAW_KEY, 0))
    assert rx.open("peer", _lk_packet(run.get("lk-seal/gap"))) == b"after a ratchet"
    assert rx.open("peer", _fc(run, "fc-seal/gap")) == b"after a ratchet"


# ---- EncryptedPacketPayload ------------------------------------------------------------


def test_payload_bytes_match_the_library(run: Run) -> None:
    big = _bytes("user-payload", 100)
    assert run.get("build/user")["hex"] == user_payload(big, "chat").hex()
    assert run.get("build/user-empty")["hex"] == user_payload(b"").hex()
    assert run.get("build/user-empty-topic")["hex"] == user_payload(b"\x01", "").hex()
    assert (
        run.get("build/chat")["hex"]
        == chat_payload("héllo ✓", id="m-1", timestamp_ms=1_700_000_000_000).hex()
    )
    # proto3 defaults: livekit-client omits id "" and timestamp 0, framecrypt writes them;
    # different bytes, same message on both sides
    lk_default = bytes.fromhex(run.get("build/chat-defaults")["hex"])
    fc_default = chat_payload("x", id="", timestamp_ms=0)
    assert lk_default != fc_default
    p = parse_payload(lk_default)
    assert (p.kind, p.text, p.id, p.timestamp_ms) == ("chat", "x", "", 0)
    assert run.get("parse/chat-defaults") == {
        "op": "parsePayload",
        "case": "chatMessage",
        "id": "",
        "timestamp": "0",
        "message": "x",
    }


def test_library_parses_framecrypt_payloads(run: Run) -> None:
    assert run.get("parse/user") == {
        "op": "parsePayload",
        "case": "user",
        "payload_hex": _bytes("user-payload", 100).hex(),
        "topic": "chat",
    }
    assert run.get("parse/chat") == {
        "op": "parsePayload",
        "case": "chatMessage",
        "id": "m-1",
        "timestamp": "1700000000000",
        "message": "héllo ✓",
    }
    assert run.get("parse/fc-chat")["message"] == "from framecrypt ✓"


def test_chat_message_end_to_end(run: Run) -> None:
    s = _SC["hkdf-kid5"]
    opened = _receiver(s).open("peer", _lk_packet(run.get("lk-seal/chat")))
    p = parse_payload(opened)
    assert (p.kind, p.text, p.id, p.timestamp_ms) == ("chat", "héllo ✓", "m-1", 1_700_000_000_000)
    assert _lk_plain(run.get("lk-open-fc/chat")) == chat_payload(
        "from framecrypt ✓", id="fc-1", timestamp_ms=1_700_000_000_001
    )


# ---- LKTS: livekit-client writes, framecrypt reads --------------------------------------


def _meta_of(t: dict[str, Any]) -> FrameMetadata:
    user = bytes.fromhex(t["user_data_hex"]) if "user_data_hex" in t else None
    return FrameMetadata(int(t["user_timestamp_us"]), t["frame_id"], user)


@pytest.mark.parametrize("tag", list(_LF))
def test_livekit_lkts_trailer_framecrypt_strips(run: Run, tag: str) -> None:
    f = _LF[tag]
    out = bytes.fromhex(run.get(f"lk-enc/{tag}")["data_hex"])
    sealed, meta = lkts.extract(out)
    assert meta == LK_EXPECT[tag]
    if meta is not None:
        # byte for byte: framecrypt's writer reproduces livekit-client's trailer
        assert lkts.append(sealed, meta) == out
        assert out[-4:] == b"LKTS"
    else:
        assert sealed == out and out[-4:] != b"LKTS"
    # framecrypt opens the frame with the trailer still attached (strips it first) ...
    key = LKTS_SC.aes_key
    want = _lk_plain(run.get(f"lk-dec/{tag}"))  # ... as livekit-client's receiver does
    assert livekit.unprotect(out, key=key, codec=f.codec, keyframe=f.keyframe) == want
    rx = ParticipantCryptor()
    rx.set_key(RAW_KEY, LKTS_SC.index)
    assert rx.decrypt(out, codec=f.codec, keyframe=f.keyframe) == want
    if f.codec != "h264":
        assert want == f.data
    # and livekit-client's receiver reported the same metadata framecrypt parsed
    trailers = run.get(f"lk-dec/{tag}")["trailers"]
    if meta is None:
        assert trailers == []
    else:
        assert [_meta_of(t) for t in trailers] == [meta]
        assert trailers[0]["rtp_timestamp"] == f.timestamp and trailers[0]["ssrc"] == f.ssrc


# ---- LKTS: framecrypt writes, livekit-client reads --------------------------------------


@pytest.mark.parametrize("tag", list(FC_META))
def test_framecrypt_lkts_trailer_livekit_strips(run: Run, tag: str) -> None:
    meta = FC_META[tag]
    frame = run.ours[f"fc-enc/{tag}"]
    assert lkts.extract(frame)[1] == meta
    r = run.get(f"lk-dec-fc/{tag}")
    assert _lk_plain(r) == VP8_KEY
    assert [_meta_of(t) for t in r["trailers"]] == [meta]
    # the packet-trailer worker (unencrypted tracks) reads it the same way
    fm = run.get(f"fm-dec-fc/{tag}")
    assert _lk_plain(fm) == _bytes("fm-plain-0", 500)
    assert [_meta_of(t) for t in fm["trailers"]] == [meta]


def test_empty_metadata_writes_no_trailer(run: Run) -> None:
    frame = run.ours["fc-enc/none"]
    assert frame[-4:] != b"LKTS"
    r = run.get("lk-dec-fc/none")
    assert _lk_plain(r) == VP8_KEY and r["trailers"] == []


def test_receiver_without_packet_trailer_feature_does_not_strip(run: Run) -> None:
    """livekit-client strips LKTS only on tracks whose TrackInfo lists packet-trailer
    features (``hasPacketTrailer``); elsewhere a frame carrying one is dropped.
    framecrypt strips it on every video frame."""
    assert run.get("lk-dec-fc-no-pt/ts-fid-user").get("dropped") is True
    assert _lk_plain(run.get("lk-dec-fc-no-pt/none")) == VP8_KEY  # control
    frame = run.ours["fc-enc/ts-fid-user"]
    assert livekit.unprotect(frame, key=LKTS_SC.aes_key, codec="vp8", keyframe=True) == VP8_KEY


def test_packet_trailer_worker_writes_what_framecrypt_reads(run: Run) -> None:
    plain = [_bytes("fm-plain-0", 500), _bytes("fm-plain-1", 40)]
    for i, p in enumerate(plain):
        out = bytes.fromhex(run.get(f"fm-enc/{i}")["data_hex"])
        rest, meta = lkts.extract(out)
        assert rest == p
        assert meta == FrameMetadata(FM_DATE_NOW_MS * 1000, i + 1)
        assert lkts.append(p, meta) == out
    # an empty (DTX) frame gets no trailer, but this worker still counts it: the next
    # frame id is 4 (the e2ee worker skips empty frames before counting; its frame ids in
    # LK_EXPECT run 1, 2, 3 with an empty sentinel frame after each)
    assert run.get("fm-enc/2")["data_hex"] == ""
    out = bytes.fromhex(run.get("fm-enc/3")["data_hex"])
    assert lkts.extract(out) == (_bytes("fm-plain-3", 9), FrameMetadata(FM_DATE_NOW_MS * 1000, 4))


# ---- LKTS: tampering and parser parity --------------------------------------------------


@pytest.mark.parametrize("how", list(LKTS_TAMPERS))
def test_tampered_lkts_frames(run: Run, how: str) -> None:
    """The trailer is appended after encryption and is NOT authenticated: altered metadata
    values are accepted by both sides with the frame; a broken envelope (length, magic)
    leaves the trailer on the frame, which then fails to decrypt on both sides."""
    out = bytearray.fromhex(run.get("lk-enc/both-1")["data_hex"])
    out[LKTS_TAMPERS[how]] ^= 0x01
    bad = bytes(out)
    r = run.get(f"lk-dec-tampered/{how}")
    _, fc_meta = lkts.extract(bad)
    lk_meta = [_meta_of(t) for t in r["trailers"]]
    assert lk_meta == ([] if fc_meta is None else [fc_meta])  # same parse on both sides

    def fc_open() -> bytes:
        return livekit.unprotect(bad, key=LKTS_SC.aes_key, codec="vp8", keyframe=False)

    if how.endswith("-value"):
        assert fc_meta is not None and fc_meta != LK_EXPECT["both-1"]
        assert _lk_plain(r) == VP8_DELTA
        assert fc_open() == VP8_DELTA
    else:
        assert "data_hex" not in r, r
        with pytest.raises(FramecryptError):
            fc_open()
        if how == "ciphertext":
            assert fc_meta == LK_EXPECT["both-1"]


@pytest.mark.parametrize("name", list(CRAFTED))
def test_lkts_parser_parity(run: Run, name: str) -> None:
    """framecrypt's lkts.extract and livekit-client's extractPacketTrailer (both bundles)
    agree on hand-made trailers: stripped bytes and metadata."""
    raw = CRAFTED[name]
    rest, meta = lkts.extract(raw)
    fm = run.get(f"fm-dec-crafted/{name}")
    assert _lk_plain(fm) == rest
    assert [_meta_of(t) for t in fm["trailers"]] == ([] if meta is None else [meta])
    e2ee = run.get(f"lk-dec-crafted/{name}")
    assert [_meta_of(t) for t in e2ee["trailers"]] == ([] if meta is None else [meta])


def test_lkts_parity_cases_cover_both_outcomes() -> None:
    """The crafted set is not one-sided: some inputs carry a trailer, some do not."""
    found = {name: lkts.extract(raw)[1] is not None for name, raw in CRAFTED.items()}
    assert 5 <= sum(found.values()) <= len(found) - 5
