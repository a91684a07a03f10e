"""H.264/H.265 RBSP escaping against the REAL published livekit-client (npm 2.23.0).

In LiveKit's H.26x frames everything after the clear NAL header is RBSP-escaped: the
ciphertext, the GCM tag, the IV, ``0x0C`` and the KID. ``00 00 0x`` with x ≤ 3 becomes
``00 00 03 0x``, and the receiver unescapes before it parses the trailer. The bytes that
matter are ones nobody writes directly (ciphertext, tag, IV), so every case here is
*constructed* so that the pre-escape body ``ct(40) ‖ tag(16) ‖ IV(12) ‖ 0C ‖ KID``
holds one pattern at one offset, with escape-neutral filler around it:

* ciphertext bytes: plaintext = wanted ciphertext XOR the AES-GCM keystream of (key, IV);
* tag bytes: GHASH is linear in each ciphertext block, so one free block is solved in
  GF(2^128) to give the wanted tag (checked against ``cryptography``'s AES-GCM);
* IV bytes: ssrc and RTP timestamp are chosen, and ``ts − count mod 0xFFFF`` is solved
  byte by byte for the send count. framecrypt's send count is free; livekit-client's comes
  from its seeded ``Math.random``, so a first (probe) run of the same job reads the counts
  and the second run seals the crafted frames (the test checks the counts repeated).

Patterns ``00 00 00``, ``00 00 01``, ``00 00 02``, ``00 00 03``, ``00 00 03 03``,
``00 00 00 00 03``, ``00 00 00 00`` and the controls ``00 00`` (then a byte > 3, or the
IV's end before ``0C``) and ``00 00 04`` go at every offset of those 68 bytes (ciphertext
0–39, tag 40–55, IV 56–67; so across the ciphertext/tag and tag/IV boundaries), at offset
−1 where the clear header ends in ``00`` (straddling header and ciphertext), and at every
offset of the 40-byte plaintext payload. H.264 and H.265, both directions:

* framecrypt seals → livekit-client opens to the same plaintext, first try;
* livekit-client seals → framecrypt opens it (stateless and ``ParticipantCryptor``) to
  what livekit-client's own receiver outputs, and framecrypt re-seals it with
  livekit-client's send count into the *identical* bytes.

``test_rbsp_functions_match_the_bundle`` runs the bundle's own ``writeRbsp`` /
``parseRbsp`` / ``needsRbspUnescaping`` on every short byte string: off-by-ones at a
buffer's end cannot show in a well-formed frame (it always ends ``0C KID``).

Everything livekit-client does runs in two node jobs (probe, then crafted frames).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

import lk_oracle
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from framecrypt import livekit
from framecrypt.errors import FramecryptError
from framecrypt.workers.livekit import h26x

pytestmark = pytest.mark.node

RAW_KEY = random.Random("escaping-raw-key").randbytes(32)
SEED = 20240616

BODY = 40  # plaintext payload after the clear header
CT_END = BODY  # pre-escape body: ciphertext 0..39
TAG_END = CT_END + 16  # tag 40..55
IV_END = TAG_END + 12  # IV 56..67, then 0C, KID
U32 = 0xFFFFFFFF

# filler: no byte ≤ 3 (never escaped, never completes an escape after 00 00) and no
# byte that would read as an H.264 slice NAL header (type 1 or 5) after a start code
SAFE = bytes(b for b in range(4, 256) if b & 0x1F not in (1, 5))
_SAFE_SET = frozenset(SAFE)

SC4 = b"\x00\x00\x00\x01"
H264_SPS = bytes.fromhex("6742c01f0fd91f888884")
H264_PPS = bytes.fromhex("68ce3c80")
H265_VPS = bytes.fromhex("40010c01ffff016000000300b0000003000003005d")
H265_SPS = bytes.fromhex("420101016000000300b0000003000003005da00280802d")
H265_PPS = bytes.fromhex("4401c172b46240")
# the clear header ends with the slice NAL's first two bytes; "65 00" (H.264 IDR) and
# "26 00" (H.265 IDR_W_RADL, tid byte 0) end in 00, so a ciphertext starting "00 0x" makes
# a 00 00 0x that straddles the clear/escaped boundary
H264_HDR = SC4 + H264_SPS + SC4 + H264_PPS + SC4 + b"\x65\x00"
H265_HDR = SC4 + H265_VPS + SC4 + H265_SPS + SC4 + H265_PPS + SC4 + b"\x26\x01"
H265Z_HDR = SC4 + H265_VPS + SC4 + H265_SPS + SC4 + H265_PPS + SC4 + b"\x26\x00"

WIRE_PATTERNS: dict[str, bytes] = {
    "000000": bytes.fromhex("000000"),
    "000001": bytes.fromhex("000001"),
    "000002": bytes.fromhex("000002"),
    "000003": bytes.fromhex("000003"),
    "00000303": bytes.fromhex("00000303"),
    "0000000003": bytes.fromhex("0000000003"),
    "00000000": bytes.fromhex("00000000"),
    "0000": bytes.fromhex("0000"),  # control: followed by a byte > 3 (or by 0C at the IV end)
    "000004": bytes.fromhex("000004"),  # control: never escaped
}
PLAIN_PATTERNS: dict[str, bytes] = {
    k: v for k, v in WIRE_PATTERNS.items() if k not in ("00000000", "000004")
} | {"00": b"\x00"}

# A 00 00 00 00 03 run at IV bytes 4–8 or 5–9 needs ts = t 00 00 00 (or 00 00 00 00) and
# word = ts − count with a 03 where the subtraction can only give 00 or FF: no IV that
# livekit-client (or framecrypt's livekit scheme) makes can hold it.
IMPOSSIBLE = frozenset({("0000000003", TAG_END + 4), ("0000000003", TAG_END + 5)})


# ---- GF(2^128) (GCM's bit order) ----------------------------------------------------------

_GF_R = 0xE1 << 120
_GF_ONE = 1 << 127


def _gf_mul(x: int, y: int) -> int:
    z = 0
    for i in range(127, -1, -1):
        if (y >> i) & 1:
            z ^= x
        x = (x >> 1) ^ _GF_R if x & 1 else x >> 1
    return z


def _gf_pow(x: int, n: int) -> int:
    r = _GF_ONE
    while n:
        if n & 1:
            r = _gf_mul(r, x)
        x = _gf_mul(x, x)
        n >>= 1
    return r


@cache
def _h_inv_pow(key: bytes, e: int) -> int:
    """H^-e, H = AES_K(0^128) (the multiplicative group has order 2^128 − 1)."""
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    h = int.from_bytes(enc.update(bytes(16)) + enc.finalize())
    return _gf_pow(h, (1 << 128) - 1 - e)


# ---- cases ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    name: str
    codec: str
    header: bytes
    participant: str
    key_index: int = 0
    ratchets: int = 0

    @property
    def material(self) -> bytes:
        m = RAW_KEY
        for _ in range(self.ratchets):
            m = livekit.ratchet(m, kdf="hkdf")
        return m

    @property
    def key(self) -> bytes:
        return livekit.derive_key(self.material, kdf="hkdf")


GROUPS = {
    g.name: g
    for g in (
        Group("h264", "h264", H264_HDR, "esc"),
        Group("h265", "h265", H265_HDR, "esc"),
        Group("h265z", "h265", H265Z_HDR, "esc"),
        # KID 3: the body ends 0C 03
        Group("kid3", "h264", H264_HDR, "kid3", key_index=3),
        # sealed with the ratchet step r1, opened by receivers that hold r0
        Group("ratchet", "h264", H264_HDR, "ratchet", ratchets=1),
        # bytes that change which codec the NAL sniffing picks (see SNIFF_SPECS)
        Group("sniff", "h265", H265_HDR, "sniff"),
        Group("sniffz", "h265", H265Z_HDR, "sniff"),
    )
}
# (participant, index, ratchets) on both peers; the receiver "b" never ratchets
KEYS = [("esc", 0, 0), ("kid3", 3, 0), ("sniff", 0, 0), ("ratchet", 0, 1)]


@dataclass(frozen=True)
class Spec:
    """One frame: ``cons`` fixes bytes of the pre-escape body (region "wire") or of the
    plaintext payload (region "plain"); everything else is filler."""

    group: str
    region: str
    label: str
    pos: int
    cons: tuple[tuple[int, int], ...]
    expect_open: bool = True

    @property
    def name(self) -> str:
        return f"{self.group}/{self.region}/{self.label}@{self.pos}"

    @property
    def track(self) -> str:
        return f"{self.group}-{self.region}-{self.label}"


def _at(pattern: bytes, pos: int) -> tuple[tuple[int, int], ...]:
    return tuple((pos + i, b) for i, b in enumerate(pattern) if pos + i >= 0)


def _wire(group: str, label: str, pos: int) -> Spec:
    pat = WIRE_PATTERNS[label]
    if pos < 0:  # the header supplies the leading zeros
        assert GROUPS[group].header.endswith(bytes(-pos)) and not any(pat[:-pos])
    return Spec(group, "wire", label, pos, _at(pat, pos))


def _plain(group: str, label: str, pos: int) -> Spec:
    return Spec(group, "plain", label, pos, _at(PLAIN_PATTERNS[label], pos))


def _dense(group: str, label: str, region: str, cons: dict[int, int]) -> Spec:
    return Spec(group, region, label, 0, tuple(sorted(cons.items())))


def _fill(pattern: bytes, n: int, start: int = 0) -> dict[int, int]:
    return {start + i: pattern[i % len(pattern)] for i in range(n)}


_IV_WORD_ZERO = _fill(b"\x00", 4, TAG_END + 8)


def _sweep(group: str, lead: int) -> list[Spec]:
    out = []
    for label, pat in WIRE_PATTERNS.items():
        out += [_wire(group, label, p) for p in range(-lead, IV_END - len(pat) + 1)]
    for label, pat in PLAIN_PATTERNS.items():
        out += [_plain(group, label, p) for p in range(BODY - len(pat) + 1)]
    dense = {
        # tag free (comes out of the cipher); the IV's last word 00 00 00 00
        "ct-zeros": ("wire", _fill(b"\x00", BODY) | _IV_WORD_ZERO),
        # ciphertext 16..39 and the whole tag zero (ciphertext block 0 is solved)
        "ct-tag-zeros": ("wire", _fill(b"\x00", TAG_END - 16, 16) | _IV_WORD_ZERO),
        "ct-escaped-look": ("wire", _fill(b"\x00\x00\x03", BODY)),
        "ct-start-codes": ("wire", _fill(b"\x00\x00\x01", BODY)),
        "ct-mixed": ("wire", _fill(bytes.fromhex("0000020000030000000103"), BODY)),
        "ct-zeros-then-03": ("wire", _fill(b"\x00", BODY - 1) | {BODY - 1: 3}),
        "pt-zeros": ("plain", _fill(b"\x00", BODY)),
        "pt-escaped-look": ("plain", _fill(b"\x00\x00\x03", BODY)),
    }
    out += [_dense(group, label, region, cons) for label, (region, cons) in dense.items()]
    return out


def _specs() -> list[Spec]:
    specs = _sweep("h264", 1) + _sweep("h265", 0)
    specs += [_wire("h265z", label, p) for label in WIRE_PATTERNS for p in (-1, 0, 1)]
    specs += [
        _wire("kid3", "0000", IV_END - 2),  # ... 00 00 0C 03
        _wire("kid3", "000003", IV_END - 3),
        _wire("kid3", "000000", IV_END - 3),
        _wire("kid3", "000001", 0),
        _wire("kid3", "000003", CT_END - 3),
        _wire("kid3", "0000000003", TAG_END - 5),
        _plain("kid3", "00", BODY - 1),
    ]
    return specs


# the receiver's livekit-client at r0 retries r1 on these and un-escapes the body again
RATCHET_SPECS = [
    _wire("ratchet", "000003", 5),
    _wire("ratchet", "00000303", 20),
    _wire("ratchet", "0000000003", 30),
    Spec("ratchet", "wire", "clean", 0, ()),  # nothing to unescape: the r1 retry works
    _wire("ratchet", "000003", 10),  # the receiver is at r1 by now: first try
]
SNIFF_SPECS = [
    # H.265 frame whose plaintext payload holds "00 00 01 25": a start code and a byte that
    # reads as an H.264 IDR slice. Sniffing tries H.264 first, so both senders clear the
    # frame up to that "slice" + 2 and rewrite its 3-byte start code to 4 bytes.
    Spec("sniff", "plain", "h264-slice-in-payload", 10, _at(bytes.fromhex("00000125"), 10)),
    # header ending "26 00" and ciphertext starting "00 01 25": the sealed frame holds a
    # start code + H.264 slice the plaintext did not, so the receiver's clear header is
    # longer than the sender's and NO receiver can open it (a livekit-client format limit)
    Spec("sniffz", "wire", "h264-slice-straddle", -1, _at(bytes.fromhex("000125"), 0), False),
]
SPECS = _specs()
FC_SPECS = SPECS + SNIFF_SPECS
LK_SPECS = SPECS + SNIFF_SPECS + RATCHET_SPECS
CODEC_GROUPS = ["h264", "h265", "h265z", "kid3"]


# ---- crafting ---------------------------------------------------------------------------


def _safe(rng: random.Random) -> int:
    return rng.choice(SAFE)


def _solve_iv(cons: dict[int, int], count: int, rng: random.Random) -> tuple[int, int] | None:
    """``(ssrc, timestamp)`` whose livekit IV ``ssrc ‖ ts ‖ ts − count`` has the bytes
    ``cons`` (IV offsets 0..11), filler elsewhere; None if ``count`` cannot give them."""
    ts, word = bytearray(4), bytearray(4)
    carry = 0
    for j in (3, 2, 1, 0):  # ts = word + count, byte by byte from the low end
        cj = (count >> (8 * (3 - j))) & 0xFF
        t_con, w_con = cons.get(4 + j), cons.get(8 + j)
        if w_con is not None:
            w, t = w_con, (w_con + cj + carry) & 0xFF
            if t_con is not None and t != t_con:
                return None
        elif t_con is not None:
            t, w = t_con, (t_con - cj - carry) & 0xFF
        else:
            w = _safe(rng)
            for _ in range(32):
                if (w + cj + carry) & 0xFF in _SAFE_SET:
                    break
                w = _safe(rng)
            t = (w + cj + carry) & 0xFF
        carry = (w + cj + carry) >> 8
        ts[j], word[j] = t, w
    ssrc = int.from_bytes(bytes(cons.get(i, _safe(rng)) for i in range(4)))
    t32 = int.from_bytes(ts)
    assert (t32 - count) & U32 == int.from_bytes(word)
    return ssrc, t32


@dataclass(frozen=True)
class Frame:
    spec: Spec
    data: bytes  # the plaintext frame: clear header ‖ payload
    ssrc: int
    timestamp: int
    count: int  # livekit's sendCount % 0xFFFF
    body: bytes | None  # the pre-escape sealed body (wire cases)
    track: str

    @property
    def group(self) -> Group:
        return GROUPS[self.spec.group]

    @property
    def iv(self) -> bytes:
        return struct.pack(">III", self.ssrc, self.timestamp, (self.timestamp - self.count) & U32)


def _has_sniffed_slice(data: bytes, start: int) -> bool:
    """A 3-byte start code at or after ``start`` followed by an H.264 slice type."""
    i = data.find(b"\x00\x00\x01", start)
    while 0 <= i < len(data) - 3:
        if data[i + 3] & 0x1F in (1, 5):
            return True
        i = data.find(b"\x00\x00\x01", i + 1)
    return False


def _craft(spec: Spec, ssrc: int, ts: int, count: int, track: str, rng: random.Random) -> Frame:
    g = GROUPS[spec.group]
    key, aad = g.key, g.header
    aead = AESGCM(key)
    cons = dict(spec.cons)
    iv = struct.pack(">III", ssrc, ts, (ts - count) & U32)
    if spec.region == "plain":
        payload = bytes(cons.get(i, _safe(rng)) for i in range(BODY))
        return Frame(spec, aad + payload, ssrc, ts, count, None, track)
    ct = bytearray(cons.get(i, _safe(rng)) for i in range(CT_END))
    keystream = aead.encrypt(iv, bytes(CT_END), aad)[:CT_END]
    pt = bytearray(a ^ b for a, b in zip(ct, keystream, strict=True))
    tag_cons = {p - CT_END: v for p, v in cons.items() if CT_END <= p < TAG_END}
    if tag_cons:
        # ciphertext block b changed by D changes the tag by D·H^(n − b + 1) (n = 3 blocks)
        free = [b for b in (0, 1) if not any(16 * b <= p < 16 * b + 16 for p in cons)]
        assert free, f"{spec.name}: no free ciphertext block to solve the tag with"
        b = free[0]
        inv = _h_inv_pow(key, 3 - b + 1)
        for _ in range(400):
            want = bytes(tag_cons.get(i, _safe(rng)) for i in range(16))
            cur = aead.encrypt(iv, bytes(pt), aad)[CT_END:]
            d = _gf_mul(int.from_bytes(cur) ^ int.from_bytes(want), inv).to_bytes(16)
            block = bytes(x ^ y for x, y in zip(ct[16 * b : 16 * b + 16], d, strict=True))
            # (a fully fixed tag leaves nothing to vary: take the block as solved)
            if len(tag_cons) == 16 or all(x in _SAFE_SET for x in block):
                ct[16 * b : 16 * b + 16] = block
                pt[16 * b : 16 * b + 16] = bytes(
                    x ^ y for x, y in zip(pt[16 * b : 16 * b + 16], d, strict=True)
                )
                break
        else:
            raise AssertionError(f"{spec.name}: no escape-free solved block in 400 tries")
    sealed = aead.encrypt(iv, bytes(pt), aad)
    body = sealed + iv + bytes((12, g.key_index))
    assert sealed[:CT_END] == ct
    assert all(body[p] == v for p, v in cons.items()), spec.name
    return Frame(spec, aad + bytes(pt), ssrc, ts, count, body, track)


def _iv_cons(spec: Spec) -> dict[int, int]:
    if spec.region != "wire":
        return {}
    return {p - TAG_END: v for p, v in spec.cons if TAG_END <= p < IV_END}


def _usable(f: Frame) -> bool:
    """The plaintext must not hold a start code the spec did not ask for (it would change
    the sender's NAL parse), and an H.265 one must not sniff as H.264."""
    if f.spec.group in ("sniff", "sniffz"):
        return True
    n = len(f.group.header)
    if f.spec.region == "wire" and b"\x00\x00\x01" in f.data[n - 2 :]:
        return False
    return not (f.group.codec == "h265" and _has_sniffed_slice(f.data, n - 2))


def _frame_for(
    spec: Spec, counts: Iterator[int], track: str, used: set[int], rng: random.Random
) -> Frame | None:
    """The spec crafted with the first count that gives its IV bytes (bounded)."""
    ivc = _iv_cons(spec)
    for count in counts:
        for _ in range(64):  # a fresh ssrc per cryptor, a plaintext without stray NALs
            solved = _solve_iv(ivc, count, rng)
            if solved is None:
                break
            ssrc, ts = solved
            if ssrc in used:
                continue
            f = _craft(spec, ssrc, ts, count, track, rng)
            if _usable(f):
                used.add(ssrc)
                return f
        else:
            raise AssertionError(f"{spec.name}: no usable frame in 64 tries")
    return None


# ---- framecrypt's side ------------------------------------------------------------------


def _fc_protect(f: Frame) -> bytes:
    return livekit.protect(
        f.data,
        key=f.group.key,
        codec=f.group.codec,
        keyframe=True,
        ssrc=f.ssrc,
        timestamp=f.timestamp,
        send_count=f.count,
        key_index=f.group.key_index,
    )


def _fc_open(frame: bytes, g: Group) -> bytes | FramecryptError:
    try:
        return livekit.unprotect(frame, key=g.key, codec=g.codec, keyframe=True)
    except FramecryptError as exc:
        return exc


def _fc_cryptor_open(frame: bytes, g: Group) -> bytes | FramecryptError:
    """A fresh ParticipantCryptor holding r0 (it must ratchet to r1 for the "ratchet" group)."""
    pc = livekit.ParticipantCryptor()
    pc.set_key(RAW_KEY, g.key_index, kdf="hkdf")
    try:
        return pc.decrypt(frame, codec=g.codec, keyframe=True)
    except FramecryptError as exc:
        return exc


# ---- the two oracle runs ----------------------------------------------------------------


@dataclass
class Run:
    fc: list[Frame]  # framecrypt-sealed, opened by livekit-client
    fc_opened: list[dict[str, Any]]
    lk: list[Frame]  # crafted for livekit-client's predicted send counts
    lk_sealed: list[dict[str, Any]]
    lk_opened: list[dict[str, Any]]
    predicted: list[int]
    fc_infeasible: set[tuple[str, str, int]]
    lk_infeasible: set[tuple[str, str, int]]
    bundles: list[tuple[str, str]]  # (livekit_client_version, worker_sha256) of each job


def _key_ops() -> list[dict[str, Any]]:
    ops = []
    for participant, index, ratchets in KEYS:
        for peer in ("a", "b"):
            ops.append(lk_oracle.set_key_op(peer, RAW_KEY, participant=participant, index=index))
        ops += [
            lk_oracle.ratchet_op("a", participant=participant, index=index) for _ in range(ratchets)
        ]
    return ops


def _enc(f: Frame) -> dict[str, Any]:
    g = f.group
    return lk_oracle.encrypt_op(
        "a",
        f.data,
        codec=g.codec,
        keyframe=True,
        ssrc=f.ssrc,
        timestamp=f.timestamp,
        participant=g.participant,
        track=f.track,
    )


def _dec(g: Group, data: bytes | None = None, data_from: int | None = None) -> dict[str, Any]:
    return lk_oracle.decrypt_op(
        "b", data, codec=g.codec, keyframe=True, participant=g.participant, data_from=data_from
    )


def _pool(spec: Spec) -> tuple[str, str]:
    g = GROUPS[spec.group]
    return g.participant, g.codec


def _build(lk: ModuleType) -> Run:
    # framecrypt → livekit-client: the send count is ours to choose
    fc: list[Frame] = []
    fc_infeasible: set[tuple[str, str, int]] = set()
    used: dict[str, set[int]] = {}
    for spec in FC_SPECS:
        rng = random.Random(f"fc/{spec.name}")
        counts = itertools.chain((rng.randrange(0xFFFF) for _ in range(4)), range(0xFFFF))
        f = _frame_for(spec, counts, spec.track, used.setdefault(spec.track, set()), rng)
        if f is None:
            fc_infeasible.add((spec.group, spec.label, spec.pos))
        else:
            fc.append(f)

    # livekit-client → framecrypt: one encrypt "slot" per spec (plus a spare per spec
    # that needs a particular send count), each on a fresh SSRC of its cryptor, so slot k
    # gets the k-th draw of peer a's seeded Math.random as its send count
    hard = [s for s in LK_SPECS if _needs_count(s)]
    slots = [(_pool(s), s.track) for s in LK_SPECS]
    slots += [(_pool(s), f"spare-{i}") for i, s in enumerate(hard)]
    probe_rng = random.Random("probe")
    probe_ops = _key_ops()
    first_slot = len(probe_ops)
    for k, ((participant, codec), track) in enumerate(slots):
        header = H264_HDR if codec == "h264" else H265_HDR
        probe_ops.append(
            lk_oracle.encrypt_op(
                "a",
                header + bytes(_safe(probe_rng) for _ in range(BODY)),
                codec=codec,
                keyframe=True,
                ssrc=0x5EED0000 + k,
                timestamp=1000 + k,
                participant=participant,
                track=track,
            )
        )
    fc_first = len(probe_ops)
    probe_ops += [_dec(f.group, _fc_protect(f)) for f in fc]
    probe_result = lk.run_job({"seed": SEED, "ops": probe_ops}, timeout=120)
    probe = probe_result["results"]
    predicted = [int(probe[first_slot + k]["send_count"]) for k in range(len(slots))]
    fc_opened = probe[fc_first:]

    # specs that need a particular count take any slot of their participant/codec whose
    # count fits; the others keep their own slot, or take a spare if theirs was taken
    assigned: dict[int, Frame] = {}
    lk_infeasible: set[tuple[str, str, int]] = set()
    lk_used: dict[str, set[int]] = {}

    def place(spec: Spec, candidates: list[int], rng: random.Random) -> bool:
        for k in candidates:
            if k in assigned or slots[k][0] != _pool(spec):
                continue
            track = slots[k][1]
            f = _frame_for(spec, iter([predicted[k]]), track, lk_used.setdefault(track, set()), rng)
            if f is not None:
                assigned[k] = f
                return True
        return False

    for spec in hard:
        if not place(spec, list(range(len(slots))), random.Random(f"lk/{spec.name}")):
            lk_infeasible.add((spec.group, spec.label, spec.pos))
    spares = list(range(len(LK_SPECS), len(slots)))
    for i, spec in enumerate(LK_SPECS):
        if not _needs_count(spec):
            assert place(spec, [i, *spares], random.Random(f"lk/{spec.name}")), spec.name
    for k in range(len(slots)):  # slots left over get a clean frame
        if k not in assigned:
            (participant, codec), track = slots[k]
            group = next(
                g.name for g in GROUPS.values() if (g.participant, g.codec) == (participant, codec)
            )
            clean = Spec(group, "wire", "clean", k, ())
            assert place(clean, [k], random.Random(f"clean/{k}"))
    lk_frames = [assigned[k] for k in range(len(slots))]

    ops = _key_ops()
    first = len(ops)
    for f in lk_frames:
        ops.append(_enc(f))
        ops.append(_dec(f.group, data_from=len(ops) - 1))
    result = lk.run_job({"seed": SEED, "ops": ops}, timeout=120)
    results = result["results"]
    return Run(
        fc=fc,
        fc_opened=fc_opened,
        lk=lk_frames,
        lk_sealed=results[first::2],
        lk_opened=results[first + 1 :: 2],
        predicted=predicted,
        fc_infeasible=fc_infeasible,
        lk_infeasible=lk_infeasible,
        bundles=[(r["livekit_client_version"], r["worker_sha256"]) for r in (probe_result, result)],
    )


def _needs_count(spec: Spec) -> bool:
    """Whether the spec fixes a byte of the timestamp and the same byte of the IV's last
    word (then only some send counts can give it)."""
    ivc = _iv_cons(spec)
    return any(4 + j in ivc and 8 + j in ivc for j in range(4))


@pytest.fixture(scope="module")
def run(lk: ModuleType) -> Run:
    return _build(lk)


def _expected(f: Frame) -> bytes:
    """What every receiver outputs: the plaintext, except that the sniff case's clear
    header got its 3-byte start code rewritten to 4 bytes."""
    if f.spec.label == "h264-slice-in-payload":
        cut = len(f.group.header) + f.spec.pos
        return f.data[:cut] + b"\x00" + f.data[cut:]
    return f.data


def _report(bad: list[str]) -> str:
    return f"{len(bad)} frame(s) disagree, e.g.:\n" + "\n".join(bad[:15])


# ---- coverage and the oracle's own facts ------------------------------------------------


def test_bundle_is_the_pinned_one(run: Run) -> None:
    pinned = (lk_oracle.PINNED_VERSION, lk_oracle.WORKER_SHA256)
    assert run.bundles == [pinned, pinned]


def test_livekit_send_counts_were_predicted(run: Run) -> None:
    """The second run drew the same send counts as the probe, so every crafted frame was
    sealed under the IV it was crafted for (and the AAD is the clear header)."""
    bad = []
    for f, r in zip(run.lk, run.lk_sealed, strict=True):
        if r.get("iv_hex") != f.iv.hex() or r.get("send_count") != f.count:
            bad.append(f"{f.spec.name}: iv {r.get('iv_hex')} != {f.iv.hex()}")
        elif f.spec.group != "sniff" and r.get("aad_hex") != f.group.header.hex():
            bad.append(f"{f.spec.name}: aad {r.get('aad_hex')}")
    assert not bad, _report(bad)
    assert [f.count for f in run.lk] == run.predicted


def test_every_pattern_at_every_position(run: Run) -> None:
    for group, lead in (("h264", 1), ("h265", 0)):
        want = {
            (label, p)
            for label, pat in WIRE_PATTERNS.items()
            for p in range(-lead, IV_END - len(pat) + 1)
        }
        fc = {(f.spec.label, f.spec.pos) for f in run.fc if f.spec.group == group}
        lk = {(f.spec.label, f.spec.pos) for f in run.lk if f.spec.group == group}
        assert {(lb, p) for g, lb, p in run.fc_infeasible if g == group} == IMPOSSIBLE
        assert want - fc == IMPOSSIBLE
        # a 00 00 00 00 03 at IV bytes 6–10 / 7–11 needs a send count in a 1/256 window;
        # any other miss means the slot search broke
        lk_miss = want - lk - IMPOSSIBLE
        assert lk_miss <= {("0000000003", TAG_END + 6), ("0000000003", TAG_END + 7)}, lk_miss
        plain = {(lb, p) for lb, pat in PLAIN_PATTERNS.items() for p in range(BODY - len(pat) + 1)}
        for frames in (run.fc, run.lk):
            got = {
                (f.spec.label, f.spec.pos)
                for f in frames
                if f.spec.group == group and f.spec.region == "plain"
            }
            assert got >= plain
    # the escaping really happened: sealed frames grew by the inserted 03 bytes
    grown = [
        f
        for f, r in zip(run.lk, run.lk_sealed, strict=True)
        if f.body is not None and len(r["data_hex"]) // 2 > len(f.group.header) + len(f.body)
    ]
    assert len(grown) > len(run.lk) // 2


# ---- framecrypt seals, livekit-client opens ---------------------------------------------


@pytest.mark.parametrize("group", [*CODEC_GROUPS, "sniff", "sniffz"])
def test_framecrypt_sealed_livekit_opens(run: Run, group: str) -> None:
    bad = []
    frames = [(f, r) for f, r in zip(run.fc, run.fc_opened, strict=True) if f.spec.group == group]
    assert frames
    for f, r in frames:
        if not f.spec.expect_open:
            if r.get("dropped") is not True:
                bad.append(f"{f.spec.name}: livekit-client opened a frame nobody can: {r}")
        elif r.get("data_hex") != _expected(f).hex():
            bad.append(f"{f.spec.name}: {r.get('data_hex') or r}")
        elif [a["ok"] for a in r["attempts"]] != [True]:
            bad.append(f"{f.spec.name}: opened only after retries {r['attempts']}")
    assert not bad, _report(bad)


# ---- livekit-client seals, framecrypt opens (and re-seals identically) ------------------


def _lk_frames(run: Run, group: str) -> list[tuple[Frame, bytes, dict[str, Any]]]:
    out = []
    for f, s, o in zip(run.lk, run.lk_sealed, run.lk_opened, strict=True):
        if f.spec.group == group:
            assert "data_hex" in s, f"{f.spec.name}: livekit-client did not seal: {s}"
            out.append((f, bytes.fromhex(s["data_hex"]), o))
    assert out
    return out


@pytest.mark.parametrize("group", [*CODEC_GROUPS, "sniff", "sniffz"])
def test_livekit_sealed_framecrypt_opens(run: Run, group: str) -> None:
    bad = []
    for f, sealed, own in _lk_frames(run, group):
        g = f.group
        ours, pc = _fc_open(sealed, g), _fc_cryptor_open(sealed, g)
        if not f.spec.expect_open:
            if own.get("dropped") is not True:
                bad.append(f"{f.spec.name}: livekit-client opened its own frame: {own}")
            if isinstance(ours, bytes) or isinstance(pc, bytes):
                bad.append(f"{f.spec.name}: framecrypt opened a frame nobody can")
            continue
        want = _expected(f)
        if own.get("data_hex") != want.hex():
            bad.append(f"{f.spec.name}: livekit-client's own receiver: {own}")
        if ours != want:
            bad.append(f"{f.spec.name}: unprotect gave {ours!r}")
        if pc != want:
            bad.append(f"{f.spec.name}: ParticipantCryptor gave {pc!r}")
    assert not bad, _report(bad)


@pytest.mark.parametrize("group", [*CODEC_GROUPS, "sniff", "sniffz", "ratchet"])
def test_framecrypt_reseals_identically(run: Run, group: str) -> None:
    bad = []
    for f, sealed, _ in _lk_frames(run, group):
        ours = _fc_protect(f)
        if ours != sealed:
            bad.append(f"{f.spec.name}:\n  lk {sealed.hex()}\n  fc {ours.hex()}")
        if group != "ratchet":
            pc = livekit.ParticipantCryptor()
            pc.set_key(RAW_KEY, f.group.key_index, kdf="hkdf")
            again = pc.encrypt(
                f.data,
                codec=f.group.codec,
                keyframe=True,
                ssrc=f.ssrc,
                timestamp=f.timestamp,
                send_count=f.count,
            )
            if again != sealed:
                bad.append(f"{f.spec.name}: ParticipantCryptor.encrypt differs")
    assert not bad, _report(bad)


def test_ratchet_retry_with_escaped_bodies(run: Run) -> None:
    """livekit-client sealed with r1; receivers hold r0. framecrypt parses and unescapes
    once and retries the ratchet on that, so every frame opens. The pinned livekit-client
    un-escapes again on each retry: bodies with 00 00 03 after unescaping are dropped until
    a frame without one lets its receiver reach r1 (then it opens on the first try)."""
    frames = _lk_frames(run, "ratchet")
    for f, sealed, _ in frames:
        assert _fc_cryptor_open(sealed, f.group) == f.data, f.spec.name
        assert _fc_open(sealed, f.group) == f.data, f.spec.name
    assert [f.spec.label for f, _, _ in frames] == [s.label for s in RATCHET_SPECS]
    own = [o.get("data_hex") == f.data.hex() for f, _, o in frames]
    assert own == [False, False, False, True, True], [o for _, _, o in frames]


# ---- the bundle's own RBSP functions ----------------------------------------------------

_RBSP_JS = r"""
const fs = require('fs');
const src = fs.readFileSync(process.argv[1], 'utf8');
function grab(name) {
  const start = src.indexOf('function ' + name + '(');
  if (start < 0) throw new Error(name + ' not in the bundle');
  let i = src.indexOf('{', start);
  for (let depth = 0; i < src.length; i++) {
    if (src[i] === '{') depth++;
    else if (src[i] === '}' && --depth === 0) break;
  }
  return src.slice(start, i + 1);
}
const consts = ['kZerosInStartSequence', 'kEmulationByte'].map((n) => {
  const m = src.match(new RegExp('const ' + n + ' = (\\d+);'));
  if (!m) throw new Error(n + ' not in the bundle');
  return 'const ' + n + ' = ' + m[1] + ';';
});
const f = new Function(consts.join('\n') + '\n' + grab('needsRbspUnescaping') + '\n' +
  grab('parseRbsp') + '\n' + grab('writeRbsp') +
  '\nreturn { needsRbspUnescaping, parseRbsp, writeRbsp };')();
const hex = (u) => Buffer.from(u).toString('hex');
const out = JSON.parse(fs.readFileSync(0, 'utf8')).map((h) => {
  const b = Uint8Array.from(Buffer.from(h, 'hex'));
  return [f.needsRbspUnescaping(b), hex(f.parseRbsp(b)), hex(f.writeRbsp(b))];
});
process.stdout.write(JSON.stringify(out));
"""


def _rbsp_inputs() -> list[bytes]:
    alphabet = (0x00, 0x01, 0x02, 0x03, 0x04, 0x0C)
    out = [bytes(t) for n in range(7) for t in itertools.product(alphabet, repeat=n)]
    rng = random.Random("rbsp")
    weights = [8, 2, 2, 3, 1, 1]
    for _ in range(3000):
        out.append(bytes(rng.choices(alphabet, weights, k=rng.randrange(7, 48))))
    return out


def test_rbsp_functions_match_the_bundle(lk: ModuleType) -> None:
    """h26x.escape / unescape / needs_unescape against the bundle's writeRbsp / parseRbsp
    / needsRbspUnescaping on every string of ≤ 6 bytes over {00 01 02 03 04 0C} and 3000
    longer zero-heavy ones (the ends of buffers, where framed tests cannot reach)."""
    bundle = lk_oracle.WORKER_BUNDLE
    assert hashlib.sha256(bundle.read_bytes()).hexdigest() == lk_oracle.WORKER_SHA256
    node = lk_oracle.node_binary()
    assert node is not None
    inputs = _rbsp_inputs()
    proc = subprocess.run(
        [node, "-e", _RBSP_JS, str(bundle)],
        input=json.dumps([b.hex() for b in inputs]),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout)
    assert len(results) == len(inputs)
    bad = []
    for b, (needs, parsed, written) in zip(inputs, results, strict=True):
        ours: list[Any] = []
        try:
            ours = [h26x.needs_unescape(b), h26x.unescape(b).hex(), h26x.escape(b).hex()]
        except Exception as exc:  # a crash is a disagreement too
            bad.append(f"{b.hex()}: {exc!r}")
            continue
        if ours != [needs, parsed, written]:
            bad.append(f"{b.hex()}: framecrypt {ours} livekit {[needs, parsed, written]}")
    assert not bad, _report(bad)
