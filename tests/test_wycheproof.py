"""Project Wycheproof vectors through our own wrappers: AES-GCM (96-bit IVs, the
only size SFrame uses) through :class:`GcmAead`, and HKDF-SHA-256/512 through the
HKDF functions the SFrame key schedule uses.

The files are copies in tests/vectors/wycheproof/ (C2SP/wycheproof, Apache-2.0;
see the README there).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from framecrypt.errors import AuthenticationFailed, InvalidKeyMaterial
from framecrypt.sframe import GcmAead, hkdf, hkdf_expand, hkdf_extract

VECTORS = Path(__file__).parent / "vectors" / "wycheproof"


def _tests(name: str, **group_filter: int) -> list[dict[str, Any]]:
    data = json.loads((VECTORS / name).read_text())
    out: list[dict[str, Any]] = []
    for group in data["testGroups"]:
        if all(group[k] == want for k, want in group_filter.items()):
            out.extend({**t, "_group": group} for t in group["tests"])
    return out


GCM = _tests("aes_gcm_test.json", ivSize=96, tagSize=128)
HKDF256 = _tests("hkdf_sha256_test.json")
HKDF512 = _tests("hkdf_sha512_test.json")


def h(s: str) -> bytes:
    return bytes.fromhex(s)


def test_vector_counts() -> None:
    assert len(GCM) == 197
    assert {t["result"] for t in GCM} <= {"valid", "invalid"}
    assert sum(t["result"] == "invalid" for t in GCM) > 0
    assert len(HKDF256) == 86 and len(HKDF512) == 83
    too_large = [t for t in HKDF256 + HKDF512 if "SizeTooLarge" in t["flags"]]
    assert too_large and all(t["result"] == "invalid" for t in too_large)


@pytest.mark.parametrize("t", GCM, ids=lambda t: f"tc{t['tcId']}")
def test_aes_gcm(t: dict[str, Any]) -> None:
    key, iv, aad, msg = h(t["key"]), h(t["iv"]), h(t["aad"]), h(t["msg"])
    sealed = h(t["ct"]) + h(t["tag"])
    aead = GcmAead(key)
    if t["result"] == "valid":
        assert aead.seal(iv, aad, msg) == sealed
        assert aead.open(iv, aad, sealed) == msg
        out = bytearray(len(sealed))
        assert aead.seal_into(iv, aad, msg, out) == len(sealed) and bytes(out) == sealed
        back = bytearray(len(msg))
        assert aead.open_into(iv, memoryview(aad), memoryview(sealed), back) == len(msg)
        assert bytes(back) == msg
    else:
        with pytest.raises(AuthenticationFailed):
            aead.open(iv, aad, sealed)
        with pytest.raises(AuthenticationFailed):
            aead.open_into(iv, aad, sealed, bytearray(max(len(sealed) - 16, 0)))


@pytest.mark.parametrize(
    ("hash_name", "t"),
    [("sha256", t) for t in HKDF256] + [("sha512", t) for t in HKDF512],
    ids=lambda x: x if isinstance(x, str) else f"tc{x['tcId']}",
)
def test_hkdf(hash_name: str, t: dict[str, Any]) -> None:
    ikm, salt, info, size = h(t["ikm"]), h(t["salt"]), h(t["info"]), t["size"]
    if t["result"] == "valid":
        okm = h(t["okm"])
        assert hkdf(hash_name, salt, ikm, info, size) == okm
        prk = hkdf_extract(hash_name, salt, ikm)
        assert hkdf_expand(hash_name, prk, info, size) == okm
    else:
        assert "SizeTooLarge" in t["flags"]
        with pytest.raises(InvalidKeyMaterial):
            hkdf(hash_name, salt, ikm, info, size)
