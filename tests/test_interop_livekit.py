"""Interop matrix: framecrypt.livekit against the REAL published livekit-client (npm 2.23.0).

Both directions, every frame compared byte for byte:

* livekit-client seals → framecrypt opens (and must equal what livekit-client itself
  decrypts), and framecrypt re-seals the same plaintext with livekit-client's send count
  into the *identical* bytes;
* framecrypt seals → livekit-client opens.

All livekit-client work runs in ONE node job (tests/interop/oracle.mjs) built here from
deterministic (seeded) frames; the module-scoped fixture runs it once.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import lk_oracle
import pytest

from framecrypt import livekit
from framecrypt.errors import AuthenticationFailed, DroppedFrame

pytestmark = pytest.mark.node

PASSPHRASE = "framecrypt interop passphrase ✓"
RAW_KEY = random.Random("raw-key").randbytes(32)


# ---- frames -------------------------------------------------------------------------------


def _body(tag: str, n: int, *, no_zero: bool = False) -> bytes:
    rng = random.Random(tag)
    if no_zero:
        return bytes(rng.randrange(1, 256) for _ in range(n))
    return rng.randbytes(n)


SC4 = b"\x00\x00\x00\x01"
SC3 = b"\x00\x00\x01"
H264_SPS = bytes.fromhex("6742c01f0fd91f888884")
H264_PPS = bytes.fromhex("68ce3c80")
H265_VPS = bytes.fromhex("40010c01ffff016000000300b0000003000003005d")
H265_SPS = bytes.fromhex("420101016000000300b0000003000003005da00280802d")
H265_PPS = bytes.fromhex("4401c172b46240")
# 00 00 00 / 00 00 01 / 00 00 02 / 00 00 03: bytes that need emulation prevention
EMULATION = bytes.fromhex("000000 000001 000002 000003 0000000000 00000103")


@dataclass(frozen=True)
class Case:
    name: str
    codec: str
    keyframe: bool
    data: bytes
    # what a receiver outputs: the sender rewrites 3-byte start codes in the clear header
    expect: bytes | None = None
    ssrc: int = 0x1A2B3C4D
    timestamp: int = 90_000
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def expected(self) -> bytes:
        return self.data if self.expect is None else self.expect


def _h264(nalus: list[bytes], sc: bytes) -> bytes:
    return b"".join(sc + n for n in nalus)


_IDR_BODY = b"\x65\x88" + _body("h264-idr", 1200)
_NONIDR_BODY = b"\x41\x9a" + _body("h264-p", 900)
_3B_BODY = b"\x65\x88" + _body("h264-3b", 600)

CODEC_CASES = [
    Case("vp8-key", "vp8", True, _body("vp8-key", 2000)),
    Case("vp8-delta", "vp8", False, _body("vp8-delta", 700)),
    Case("opus", "opus", False, _body("opus", 120), timestamp=48_000),
    Case("h264-idr", "h264", True, _h264([H264_SPS, H264_PPS, _IDR_BODY], SC4)),
    Case("h264-non-idr", "h264", False, _h264([_NONIDR_BODY], SC4)),
    Case(
        "h264-3byte-startcodes",
        "h264",
        True,
        _h264([H264_SPS, H264_PPS, _3B_BODY], SC3),
        expect=_h264([H264_SPS, H264_PPS, _3B_BODY], SC4),
    ),
    Case(
        # the body needs escaping and ssrc=1 / ts=0x100 put 00 00 00 01 00 00 01 00 into the
        # IV, so the escaped trailer differs from the raw one too
        "h264-emulation-prevention",
        "h264",
        True,
        _h264([H264_SPS, H264_PPS, b"\x65\x88" + EMULATION * 8 + _body("h264-e", 64)], SC4),
        ssrc=1,
        timestamp=0x100,
    ),
    Case(
        # no mimeType / codec given to livekit-client: it sniffs the NAL units
        "h264-sniffed",
        "h264",
        True,
        _h264([H264_SPS, H264_PPS, b"\x65\xb8" + _body("h264-s", 300)], SC4),
        extra={"codec_hint": "none"},
    ),
    Case(
        "h265-idr",
        "h265",
        True,
        _h264([H265_VPS, H265_SPS, H265_PPS, b"\x26\x01" + _body("h265", 1100)], SC4),
    ),
    Case("vp9", "vp9", True, _body("vp9", 1500)),
]


@dataclass(frozen=True)
class Scenario:
    """One key setup; each is its own participant identity in the oracle."""

    name: str
    material: bytes | str
    index: int = 0
    ratchets: int = 0

    @property
    def kdf(self) -> str:
        return "pbkdf2" if isinstance(self.material, str) else "hkdf"


SCENARIOS = [
    Scenario("pbkdf2", PASSPHRASE),
    Scenario("hkdf", RAW_KEY),
    Scenario("pbkdf2-kid5", PASSPHRASE, index=5),
    Scenario("hkdf-kid5", RAW_KEY, index=5),
    Scenario("pbkdf2-r1", PASSPHRASE, ratchets=1),
    Scenario("pbkdf2-r2", PASSPHRASE, ratchets=2),
    Scenario("hkdf-r1", RAW_KEY, ratchets=1),
    Scenario("hkdf-r2", RAW_KEY, ratchets=2, index=3),
]
_SC = {s.name: s for s in SCENARIOS}
_CC = {c.name: c for c in CODEC_CASES}

# (scenario, codec case) pairs: every codec under both KDFs, VP8 key + H.264 IDR elsewhere
MATRIX = [(s, c.name) for s in ("pbkdf2", "hkdf") for c in CODEC_CASES] + [
    (s.name, c) for s in SCENARIOS[2:] for c in ("vp8-key", "h264-idr")
]
MATRIX_IDS = [f"{s}-{c}" for s, c in MATRIX]


def chain_of(s: Scenario) -> bytes | str:
    """framecrypt's view of the scenario's current material (after its ratchets)."""
    material: bytes | str = s.material
    for _ in range(s.ratchets):
        material = livekit.ratchet(material, kdf=s.kdf)
    return material


def key_of(s: Scenario) -> bytes:
    return livekit.derive_key(chain_of(s), kdf=s.kdf)


# SIF blanks, as listed in livekit-client's src/e2ee/worker/sifPayload.ts (taken from
# livekit-server's downtrack.go). The bundle only carries their SHA-256; the tests check
# these bytes hash into that list before relying on them.
SIF_VP8_BLANK = bytes.fromhex("1002009d012a080008000047088585888584880202000c0d6000feffab5080")
SIF_OPUS_SILENCE = bytes.fromhex("f8fffe") + bytes(77)
SIF_H264_IDR = bytes.fromhex("6588840af2628000a7be")
SIF_TRAILER = random.Random("sif-trailer").randbytes(32)
SIF_JUNK = _body("sif-junk", 31)

SHARED_PASSPHRASE = "shared room passphrase"


# ---- the one oracle run -----------------------------------------------------------------


@dataclass
class Run:
    result: dict[str, Any]
    tags: dict[str, int]
    ours: dict[str, bytes | BaseException]

    def get(self, tag: str) -> dict[str, Any]:
        r: dict[str, Any] = self.result["results"][self.tags[tag]]
        return r


def _ours_or_exc(fn: Any, *args: Any, **kw: Any) -> bytes | BaseException:
    try:
        out: bytes = fn(*args, **kw)
        return out
    except Exception as exc:  # reported by the test that needs it
        return exc


def _build_job() -> tuple[dict[str, Any], dict[str, int], dict[str, bytes | BaseException]]:
    ops: list[dict[str, Any]] = []
    tags: dict[str, int] = {}
    ours: dict[str, bytes | BaseException] = {}

    def add(tag: str | None, op: dict[str, Any]) -> int:
        ops.append(op)
        if tag is not None:
            tags[tag] = len(ops) - 1
        return len(ops) - 1

    # keys on sender "a" and receiver "b" (per-participant key provider, livekit defaults)
    for s in SCENARIOS:
        for peer in ("a", "b"):
            add(
                f"setKey/{peer}/{s.name}",
                lk_oracle.set_key_op(peer, s.material, participant=s.name, index=s.index),
            )
        for i in range(s.ratchets):
            for peer in ("a", "b"):
                add(
                    f"ratchet/{peer}/{s.name}/{i}",
                    lk_oracle.ratchet_op(peer, participant=s.name, index=s.index),
                )

    rng = random.Random("send-counts")
    for s_name, c_name in MATRIX:
        s, c = _SC[s_name], _CC[c_name]
        tag = f"{s_name}-{c_name}"
        enc = add(
            f"lk-seal/{tag}",
            lk_oracle.encrypt_op(
                "a",
                c.data,
                codec=c.codec,
                keyframe=c.keyframe,
                ssrc=c.ssrc,
                timestamp=c.timestamp,
                participant=s.name,
                **c.extra,
            ),
        )
        add(
            f"lk-open-lk/{tag}",
            lk_oracle.decrypt_op(
                "b",
                codec=c.codec,
                keyframe=c.keyframe,
                participant=s.name,
                data_from=enc,
                **c.extra,
            ),
        )
        sealed = _ours_or_exc(
            lambda s=s, c=c: livekit.protect(
                c.data,
                key=key_of(s),
                codec=c.codec,
                keyframe=c.keyframe,
                ssrc=c.ssrc,
                timestamp=c.timestamp,
                send_count=rng.randrange(0xFFFF),
                key_index=s.index,
            )
        )
        ours[f"fc-seal/{tag}"] = sealed
        if isinstance(sealed, bytes):
            add(
                f"lk-open-fc/{tag}",
                lk_oracle.decrypt_op(
                    "b",
                    sealed,
                    codec=c.codec,
                    keyframe=c.keyframe,
                    participant=s.name,
                    **c.extra,
                ),
            )

    # negative controls: one flipped ciphertext byte each way (HKDF: cheap auto-ratchets)
    hk, vp8 = _SC["hkdf"], _CC["vp8-key"]
    sealed = _ours_or_exc(
        livekit.protect,
        vp8.data,
        key=key_of(hk),
        codec="vp8",
        keyframe=True,
        ssrc=7,
        timestamp=1,
        send_count=1,
    )
    if isinstance(sealed, bytes):
        bad = bytearray(sealed)
        bad[20] ^= 0x01
        add(
            "lk-open-fc/tampered",
            lk_oracle.decrypt_op("b", bytes(bad), codec="vp8", participant="hkdf"),
        )
    # a frame sealed by framecrypt with key r1 reaches a livekit receiver still at r0:
    # livekit-client's receive-side auto-ratchet must find it
    for name in ("hkdf", "pbkdf2"):
        s0 = _SC[name]
        r1 = Scenario(name + "-r1", s0.material, ratchets=1)
        ops_p = f"auto-{name}"
        add(None, lk_oracle.set_key_op("auto", s0.material, participant=ops_p))
        frame = _ours_or_exc(
            lambda r1=r1: livekit.protect(
                vp8.data,
                key=key_of(r1),
                codec="vp8",
                keyframe=True,
                ssrc=9,
                timestamp=5,
                send_count=3,
            )
        )
        ours[f"fc-seal/auto-{name}"] = frame
        if isinstance(frame, bytes):
            add(
                f"lk-open-fc/auto-{name}",
                lk_oracle.decrypt_op("auto", frame, codec="vp8", participant=ops_p),
            )

    # SIF and empty frames on a dedicated receiver
    add(None, lk_oracle.set_key_op("sif", RAW_KEY))
    add(None, {"op": "setSifTrailer", "peer": "sif", "hex": SIF_TRAILER.hex()})
    for tag, payload, codec in (
        ("sif-vp8-blank", SIF_VP8_BLANK, "vp8"),
        ("sif-opus-silence", SIF_OPUS_SILENCE, "opus"),
        ("sif-h264-idr", SIF_H264_IDR, "h264"),
        ("sif-junk", SIF_JUNK, "vp8"),
    ):
        add(f"lk-open/{tag}", lk_oracle.decrypt_op("sif", payload + SIF_TRAILER, codec=codec))
    for codec in ("vp8", "opus"):
        add(f"lk-open/empty-{codec}", lk_oracle.decrypt_op("sif", b"", codec=codec))
        add(f"lk-seal/empty-{codec}", lk_oracle.encrypt_op("a", b"", codec=codec))

    # ExternalE2EEKeyProvider (shared key, as most apps use it): sender "sa", receiver "sb"
    sh = Scenario("shared", SHARED_PASSPHRASE)
    sh1 = Scenario("shared-r1", SHARED_PASSPHRASE, ratchets=1)
    for peer in ("sa", "sb"):
        add(f"setKey/{peer}/shared", lk_oracle.set_key_op(peer, SHARED_PASSPHRASE, participant="x"))
    for step, s in enumerate((sh, sh1)):
        if step:
            for peer in ("sa", "sb"):
                add(f"ratchet/{peer}/shared", lk_oracle.ratchet_op(peer, participant="x"))
        add(
            f"lk-seal/shared-{step}",
            lk_oracle.encrypt_op("sa", vp8.data, codec="vp8", participant="bob"),
        )
        frame = _ours_or_exc(
            lambda s=s: livekit.protect(
                vp8.data,
                key=key_of(s),
                codec="vp8",
                keyframe=True,
                ssrc=11,
                timestamp=77,
                send_count=0,
            )
        )
        ours[f"fc-seal/shared-{step}"] = frame
        if isinstance(frame, bytes):
            add(
                f"lk-open-fc/shared-{step}",
                lk_oracle.decrypt_op("sb", frame, codec="vp8", participant="bob"),
            )

    # livekit-client refuses AV1 (it throws inside the transform)
    add(
        "lk-seal/av1", lk_oracle.encrypt_op("a", _body("av1", 200), codec="av1", participant="hkdf")
    )

    job = {
        "seed": 20240601,
        "options": {"peers": {"sa": {"shared_key": True}, "sb": {"shared_key": True}}},
        "ops": ops,
    }
    return job, tags, ours


@pytest.fixture(scope="module")
def run(lk: ModuleType) -> Run:
    job, tags, ours = _build_job()
    result = lk.run_job(job, timeout=90)
    return Run(result, tags, ours)


def _ours(run: Run, tag: str) -> bytes:
    v = run.ours[tag]
    if isinstance(v, BaseException):
        raise AssertionError(f"framecrypt could not seal {tag}: {v!r}") from v
    return v


# ---- the pinned bundle ------------------------------------------------------------------


def test_bundle_is_the_pinned_one(run: Run) -> None:
    assert run.result["livekit_client_version"] == lk_oracle.PINNED_VERSION
    assert run.result["worker_sha256"] == lk_oracle.WORKER_SHA256
    lock = json.loads((lk_oracle.INTEROP_DIR / "package-lock.json").read_text(encoding="utf-8"))
    assert lock["packages"]["node_modules/livekit-client"]["version"] == lk_oracle.PINNED_VERSION
    pkg = json.loads((lk_oracle.INTEROP_DIR / "package.json").read_text(encoding="utf-8"))
    assert pkg["dependencies"]["livekit-client"] == lk_oracle.PINNED_VERSION


# ---- livekit-client seals, framecrypt opens ---------------------------------------------


@pytest.mark.parametrize(("scenario", "case"), MATRIX, ids=MATRIX_IDS)
def test_livekit_sealed_framecrypt_opens(run: Run, scenario: str, case: str) -> None:
    s, c = _SC[scenario], _CC[case]
    sealed = run.get(f"lk-seal/{scenario}-{case}")
    assert "data_hex" in sealed, sealed
    frame = bytes.fromhex(sealed["data_hex"])
    assert frame[-1] == s.index % 16 and frame[-2] == 12
    # what livekit-client's own receiver makes of it
    lk_plain = lk_oracle.decrypted(run.get(f"lk-open-lk/{scenario}-{case}"))
    assert lk_plain == c.expected
    ours = livekit.unprotect(frame, key=key_of(s), codec=c.codec, keyframe=c.keyframe)
    assert ours == lk_plain


@pytest.mark.parametrize(("scenario", "case"), MATRIX, ids=MATRIX_IDS)
def test_framecrypt_reseals_identically(run: Run, scenario: str, case: str) -> None:
    """Same key, IV inputs and send count → framecrypt's bytes equal livekit-client's."""
    s, c = _SC[scenario], _CC[case]
    sealed = run.get(f"lk-seal/{scenario}-{case}")
    iv = livekit.livekit_iv(c.ssrc, c.timestamp, sealed["send_count"])
    assert iv.hex() == sealed["iv_hex"]
    ours = livekit.protect(
        c.data,
        key=key_of(s),
        codec=c.codec,
        keyframe=c.keyframe,
        ssrc=c.ssrc,
        timestamp=c.timestamp,
        send_count=sealed["send_count"],
        key_index=s.index,
    )
    assert ours.hex() == sealed["data_hex"]
    # the AAD livekit-client used is exactly the clear header on the wire
    assert ours.startswith(bytes.fromhex(sealed["aad_hex"]))


# ---- framecrypt seals, livekit-client opens ---------------------------------------------


@pytest.mark.parametrize(("scenario", "case"), MATRIX, ids=MATRIX_IDS)
def test_framecrypt_sealed_livekit_opens(run: Run, scenario: str, case: str) -> None:
    c = _CC[case]
    _ours(run, f"fc-seal/{scenario}-{case}")
    opened = run.get(f"lk-open-fc/{scenario}-{case}")
    assert lk_oracle.decrypted(opened) == c.expected
    # opened first time, with no ratchet retries
    assert [a["ok"] for a in opened["attempts"]] == [True]


def test_tampered_frames_are_rejected_both_ways(run: Run) -> None:
    _ours(run, "fc-seal/hkdf-vp8-key")
    assert run.get("lk-open-fc/tampered").get("dropped") is True
    frame = bytearray.fromhex(run.get("lk-seal/hkdf-vp8-key")["data_hex"])
    frame[20] ^= 0x01
    with pytest.raises(AuthenticationFailed):
        livekit.unprotect(bytes(frame), key=key_of(_SC["hkdf"]), codec="vp8", keyframe=True)


@pytest.mark.parametrize("kdf", ["hkdf", "pbkdf2"])
def test_livekit_receiver_auto_ratchets_to_framecrypt_r1(run: Run, kdf: str) -> None:
    _ours(run, f"fc-seal/auto-{kdf}")
    opened = run.get(f"lk-open-fc/auto-{kdf}")
    assert lk_oracle.decrypted(opened) == _CC["vp8-key"].data
    r1 = livekit.ratchet(_SC[kdf].material, kdf=kdf)
    assert opened["chains"][0] == r1.hex()


# ---- key derivation and ratchet chain keys, as observed inside livekit-client ----------


@pytest.mark.parametrize("scenario", [s.name for s in SCENARIOS])
def test_kdf_and_ratchet_match_library(run: Run, scenario: str) -> None:
    s = _SC[scenario]
    for peer in ("a", "b"):
        assert (
            run.get(f"setKey/{peer}/{s.name}")["aes_key_hex"]
            == livekit.derive_key(s.material, kdf=s.kdf).hex()
        )
    material: bytes | str = s.material
    for i in range(s.ratchets):
        material = livekit.ratchet(material, kdf=s.kdf)
        for peer in ("a", "b"):
            r = run.get(f"ratchet/{peer}/{s.name}/{i}")
            assert r["chain_hex"] == material.hex()
            assert r["event_chain_hex"] == material.hex()  # KeyRatcheted event
            assert r["aes_key_hex"] == livekit.derive_key(material, kdf=s.kdf).hex()
    # default kdf choice: str → PBKDF2, bytes → HKDF
    assert livekit.derive_key(s.material) == livekit.derive_key(s.material, kdf=s.kdf)


def test_shared_key_provider_both_ways(run: Run) -> None:
    sh = Scenario("shared", SHARED_PASSPHRASE)
    sh1 = Scenario("shared-r1", SHARED_PASSPHRASE, ratchets=1)
    data = _CC["vp8-key"].data
    for step, s in enumerate((sh, sh1)):
        sealed = bytes.fromhex(run.get(f"lk-seal/shared-{step}")["data_hex"])
        assert livekit.unprotect(sealed, key=key_of(s), codec="vp8", keyframe=True) == data
        _ours(run, f"fc-seal/shared-{step}")
        assert lk_oracle.decrypted(run.get(f"lk-open-fc/shared-{step}")) == data
    # the shared handler emits no KeyRatcheted event; the chain is seen via deriveBits
    r = run.get("ratchet/sa/shared")
    assert "event_chain_hex" not in r
    assert r["chain_hex"] == livekit.ratchet(SHARED_PASSPHRASE).hex()


# ---- SIF and empty frames ---------------------------------------------------------------


def test_sif_blanks_are_in_the_bundle_allowlist(run: Run) -> None:
    allow = set(run.result["sif_allowlist"].values())
    assert len(allow) == 5
    for blank in (SIF_VP8_BLANK, SIF_OPUS_SILENCE, SIF_H264_IDR):
        assert hashlib.sha256(blank).hexdigest() in allow
    assert hashlib.sha256(SIF_JUNK).hexdigest() not in allow


@pytest.mark.parametrize(
    ("tag", "payload", "codec"),
    [
        ("sif-vp8-blank", SIF_VP8_BLANK, "vp8"),
        ("sif-opus-silence", SIF_OPUS_SILENCE, "opus"),
        ("sif-h264-idr", SIF_H264_IDR, "h264"),
    ],
)
def test_sif_blank_passes_through(run: Run, tag: str, payload: bytes, codec: str) -> None:
    assert lk_oracle.decrypted(run.get(f"lk-open/{tag}")) == payload
    ours = livekit.unprotect(
        payload + SIF_TRAILER,
        key=key_of(_SC["hkdf"]),
        codec=codec,
        keyframe=True,
        sif_trailer=SIF_TRAILER,
    )
    assert ours == payload


def test_sif_non_blank_is_dropped(run: Run) -> None:
    assert run.get("lk-open/sif-junk").get("dropped") is True
    with pytest.raises(DroppedFrame):
        livekit.unprotect(
            SIF_JUNK + SIF_TRAILER,
            key=key_of(_SC["hkdf"]),
            codec="vp8",
            keyframe=True,
            sif_trailer=SIF_TRAILER,
        )


@pytest.mark.parametrize("codec", ["vp8", "opus"])
def test_empty_frame_passes_through(run: Run, codec: str) -> None:
    assert lk_oracle.decrypted(run.get(f"lk-open/empty-{codec}")) == b""
    assert lk_oracle.decrypted(run.get(f"lk-seal/empty-{codec}")) == b""
    key = key_of(_SC["hkdf"])
    assert livekit.unprotect(b"", key=key, codec=codec, keyframe=False) == b""


def test_livekit_refuses_av1(run: Run) -> None:
    """A fact about the pinned library (it throws in the transform); noticed if it changes."""
    r = run.get("lk-seal/av1")
    assert "data_hex" not in r
    assert any("av1 is not yet supported" in line for line in r.get("logs", [])) or "error" in r
