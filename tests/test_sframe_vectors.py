"""Every official SFrame test vector (RFC 9605 Appendix C; draft-barnes-sframe-iana-256
Appendix A.2 for the provisional suites 6–8), with every intermediate value.

The vector files are copies in tests/vectors/sframe/ (see the README there for
their provenance); nothing here reads /work/shared.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from framecrypt import sframe
from framecrypt.errors import AuthenticationFailed
from framecrypt.sframe import (
    CtrHmacAead,
    ReceiverContext,
    SenderContext,
    SFrameKey,
    decode_header,
    derive_key_salt,
    encode_header,
    encode_header_into,
    get_suite,
    header_length,
    key_label,
    make_aead,
    parse_header,
    salt_label,
    sframe_secret,
)

VECTORS = Path(__file__).parent / "vectors" / "sframe"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return data


RFC = _load("test-vectors.json")  # sframe-wg/sframe@025d568, cited by RFC 9605 Appendix C
HEAD = _load("test-vectors-head-3d07d8f.json")  # adds aes_256_ctr_hmac (suites 6–8)
AES256 = _load("test-vectors-aes256.json")  # full SFrame vectors for suites 6–8

HEADERS: list[dict[str, Any]] = RFC["header"]
CTR_HMAC: list[dict[str, Any]] = RFC["aes_ctr_hmac"] + HEAD["aes_256_ctr_hmac"]
FULL: list[dict[str, Any]] = RFC["sframe"] + AES256["sframe_aes_256_ctr_hmac"]


def h(s: str) -> bytes:
    return bytes.fromhex(s)


def test_vector_counts() -> None:
    # A vector file that lost entries must not pass quietly.
    assert len(HEADERS) == 289
    assert [v["cipher_suite"] for v in CTR_HMAC] == [1, 2, 3, 6, 7, 8]
    assert [v["cipher_suite"] for v in FULL] == [1, 2, 3, 4, 5, 6, 7, 8]


def test_later_vector_file_only_adds() -> None:
    for section in ("header", "aes_ctr_hmac", "sframe"):
        assert HEAD[section] == RFC[section]


# --- §4.3 header ---------------------------------------------------------------------


@pytest.mark.parametrize("v", HEADERS, ids=lambda v: f"kid{v['kid']:x}-ctr{v['ctr']:x}")
def test_header_vector(v: dict[str, Any]) -> None:
    kid, ctr, encoded = v["kid"], v["ctr"], h(v["encoded"])
    # encode
    assert encode_header(kid, ctr) == encoded
    assert header_length(kid, ctr) == len(encoded)
    buf = bytearray(b"\xaa" * (len(encoded) + 3))
    assert encode_header_into(buf, 2, kid, ctr) == len(encoded)
    assert bytes(buf[2 : 2 + len(encoded)]) == encoded and buf[:2] == b"\xaa\xaa"
    # decode, also with a body following the header and from a memoryview
    assert decode_header(encoded) == (kid, ctr, len(encoded))
    assert decode_header(memoryview(encoded + b"\x00\xff")) == (kid, ctr, len(encoded))
    parsed = parse_header(encoded + b"body")
    assert (parsed.kid, parsed.ctr, parsed.length) == (kid, ctr, len(encoded))
    assert parsed.encode() == encoded


# --- §4.5.1 AES-CTR + HMAC AEAD ---------------------------------------------------------


@pytest.mark.parametrize("v", CTR_HMAC, ids=lambda v: f"suite{v['cipher_suite']}")
def test_ctr_hmac_vector(v: dict[str, Any]) -> None:
    suite = get_suite(v["cipher_suite"])
    key, nonce, aad, pt, ct = h(v["key"]), h(v["nonce"]), h(v["aad"]), h(v["pt"]), h(v["ct"])
    # the key split of §4.5.1
    assert key[: suite.nka] == h(v["enc_key"])
    assert key[suite.nka :] == h(v["auth_key"])
    assert len(key) == suite.nk and len(ct) == len(pt) + suite.nt

    aead = make_aead(suite, key)
    assert isinstance(aead, CtrHmacAead)
    assert aead.tag_length == suite.nt
    assert aead.seal(nonce, aad, pt) == ct
    assert aead.open(nonce, aad, ct) == pt

    out = bytearray(len(ct))
    assert aead.seal_into(nonce, aad, memoryview(pt), out) == len(ct)
    assert bytes(out) == ct
    back = bytearray(len(pt))
    assert aead.open_into(nonce, aad, memoryview(ct), back) == len(pt)
    assert bytes(back) == pt

    for bad_ct, bad_aad, bad_nonce in (
        (ct[:-1] + bytes([ct[-1] ^ 1]), aad, nonce),  # tag
        (bytes([ct[0] ^ 0x80]) + ct[1:], aad, nonce),  # ciphertext
        (ct, aad + b"x", nonce),  # aad
        (ct, aad, nonce[:-1] + bytes([nonce[-1] ^ 1])),  # nonce
    ):
        with pytest.raises(AuthenticationFailed):
            aead.open(bad_nonce, bad_aad, bad_ct)
        with pytest.raises(AuthenticationFailed):
            aead.open_into(bad_nonce, bad_aad, bad_ct, bytearray(len(pt)))


# --- §4.4 full SFrame encryption ------------------------------------------------------


@pytest.mark.parametrize("v", FULL, ids=lambda v: f"suite{v['cipher_suite']}")
def test_sframe_vector_intermediates(v: dict[str, Any]) -> None:
    suite = get_suite(v["cipher_suite"])
    kid, ctr, base_key = v["kid"], v["ctr"], h(v["base_key"])
    assert key_label(kid, suite) == h(v["sframe_key_label"])
    assert salt_label(kid, suite) == h(v["sframe_salt_label"])
    assert sframe_secret(suite, base_key) == h(v["sframe_secret"])
    ks = derive_key_salt(suite, base_key, kid)
    assert ks.key == h(v["sframe_key"])
    assert ks.salt == h(v["sframe_salt"])

    key = SFrameKey.derive(suite, base_key, kid)
    assert key.nonce(ctr) == h(v["nonce"])
    assert key.header(ctr) + h(v["metadata"]) == h(v["aad"])
    assert decode_header(h(v["ct"]))[:2] == (kid, ctr)


@pytest.mark.parametrize("v", FULL, ids=lambda v: f"suite{v['cipher_suite']}")
def test_sframe_vector_encrypt_decrypt(v: dict[str, Any]) -> None:
    suite_id, kid, ctr = v["cipher_suite"], v["kid"], v["ctr"]
    base_key, md, pt, ct = h(v["base_key"]), h(v["metadata"]), h(v["pt"]), h(v["ct"])

    # the pinned stateless API (twice: the second call is served from the cache)
    for _ in range(2):
        assert sframe.protect(suite_id, base_key, kid, ctr, pt, md) == ct
        assert sframe.unprotect(suite_id, base_key, ct, md) == (kid, ctr, pt)

    # the per-key state, sealing into a caller buffer at an offset
    key = SFrameKey.derive(suite_id, base_key, kid)
    assert key.protect(ctr, pt, md) == ct
    assert key.ciphertext_length(ctr, len(pt)) == len(ct)
    buf = bytearray(len(ct) + 8)
    n = key.protect_into(ctr, pt, memoryview(buf)[4:], md)
    assert n == len(ct) and bytes(buf[4 : 4 + n]) == ct
    assert key.unprotect(ct, md) == (ctr, pt)

    # a sender context that reaches the vector's counter, and a receiver context
    sender = SenderContext(suite_id)
    sender.add_key(kid, base_key, next_ctr=ctr)
    assert sender.protect(kid, pt, md) == ct
    receiver = ReceiverContext(suite_id)
    receiver.add_key(kid, base_key)
    out = bytearray(len(pt))
    assert receiver.unprotect_into(ct, out, md) == (kid, ctr, len(pt))
    assert bytes(out) == pt

    # the metadata is bound in and the tag is checked
    with pytest.raises(AuthenticationFailed):
        sframe.unprotect(suite_id, base_key, ct, md + b"!")
    with pytest.raises(AuthenticationFailed):
        sframe.unprotect(suite_id, base_key, ct[:-1] + bytes([ct[-1] ^ 0x01]), md)
