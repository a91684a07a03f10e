"""DAVE's verification codes (protocol.md §"Verification Fingerprint", §"Displayable
Codes"): what two users read to each other to check that no one sits in the middle.

* the call's *voice privacy code*: 30 digits from the MLS epoch authenticator;
* a *pairwise fingerprint* of two members: scrypt over both members' key fingerprints
  (format version, signature public key, user id), sorted so both sides get the same
  bytes; shown as 45 digits.

Checked against davey and libdave (dave-py) in tests/test_dave_group.py.
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .errors import MlsError

FINGERPRINT_VERSION = 0
FINGERPRINT_SALT = bytes.fromhex("24cab17a7af8ec2b82b412b92dab192e")
SCRYPT_N, SCRYPT_R, SCRYPT_P, FINGERPRINT_BYTES = 16384, 8, 2, 64
MAX_GROUP = 8


def displayable_code(data: bytes, digits: int, group: int = 5) -> str:
    """``digits`` decimal digits, ``group`` at a time: each group is the next ``group``
    bytes of ``data`` as a big-endian integer modulo 10^group, zero-padded."""
    if not 0 < group <= MAX_GROUP or digits % group:
        raise MlsError("code length must be a multiple of a group of at most 8 digits")
    if len(data) < digits:
        raise MlsError("not enough bytes for the code")
    out = []
    for i in range(0, digits, group):
        n = int.from_bytes(data[i : i + group], "big") % 10**group
        out.append(f"{n:0{group}d}")
    return "".join(out)


def key_fingerprint(signature_key: bytes, user_id: int) -> bytes:
    """``u16 version || key || u64 user id`` (big-endian)."""
    if not signature_key:
        raise MlsError("empty key")
    return struct.pack(">H", FINGERPRINT_VERSION) + signature_key + struct.pack(">Q", user_id)


def pairwise_fingerprint(a: bytes, b: bytes) -> bytes:
    """scrypt(sorted(a, b) concatenated, the DAVE salt, N=16384, r=8, p=2) → 64 bytes."""
    first, second = sorted((a, b))
    kdf = Scrypt(salt=FINGERPRINT_SALT, length=FINGERPRINT_BYTES,
                 n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return kdf.derive(first + second)
