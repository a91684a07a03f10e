"""SFrame cipher suites (RFC 9605 §4.5, IANA "SFrame Cipher Suites" registry §8.1).

Sizes ``nh``, ``nka``, ``nk``, ``nn``, ``nt`` are in bytes, as in the RFC. Suites
0x0006–0x0008 (``AES_256_CTR_HMAC_SHA512_*``) come from draft-barnes-sframe-iana-256,
which updates RFC 9605 but is not an RFC yet: they are usable and marked
``provisional=True``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from framecrypt.errors import UnsupportedSuite


class SuiteId(enum.IntEnum):
    """The registered cipher-suite identifiers (RFC 9605 §8.1, draft-barnes-sframe-iana-256)."""

    AES_128_CTR_HMAC_SHA256_80 = 0x0001
    AES_128_CTR_HMAC_SHA256_64 = 0x0002
    AES_128_CTR_HMAC_SHA256_32 = 0x0003
    AES_128_GCM_SHA256_128 = 0x0004
    AES_256_GCM_SHA512_128 = 0x0005
    AES_256_CTR_HMAC_SHA512_80 = 0x0006
    AES_256_CTR_HMAC_SHA512_64 = 0x0007
    AES_256_CTR_HMAC_SHA512_32 = 0x0008


class AeadKind(enum.Enum):
    """Which AEAD construction a suite uses."""

    AES_GCM = "aes-gcm"  # RFC 9605 §4.5: AES-GCM as specified in [GCM]
    AES_CTR_HMAC = "aes-ctr-hmac"  # RFC 9605 §4.5.1: AES-CTR then HMAC, truncated tag


@dataclass(frozen=True, slots=True)
class CipherSuite:
    """One row of the SFrame cipher-suite registry (RFC 9605 §4.5 table 2).

    ``nka`` is the AES key part of a CTR+HMAC key (0 for GCM suites); ``nk`` is the
    whole AEAD key (``nka + nh`` for CTR+HMAC suites).
    """

    id: int
    name: str
    hash_name: str  # hashlib / hmac name: "sha256" or "sha512"
    nh: int
    nka: int
    nk: int
    nn: int
    nt: int
    kind: AeadKind
    provisional: bool = False

    @property
    def ctr_limit(self) -> int:
        """Largest usable CTR: it must fit the 64-bit header field and the Nn-byte nonce."""
        return min(1 << 64, 1 << (8 * self.nn)) - 1


def _ctr_hmac(sid: SuiteId, hash_name: str, nh: int, nka: int, nt: int, prov: bool) -> CipherSuite:
    return CipherSuite(
        sid.value, sid.name, hash_name, nh, nka, nka + nh, 12, nt, AeadKind.AES_CTR_HMAC, prov
    )


def _gcm(sid: SuiteId, hash_name: str, nh: int, nk: int) -> CipherSuite:
    return CipherSuite(sid.value, sid.name, hash_name, nh, 0, nk, 12, 16, AeadKind.AES_GCM)


_S = SuiteId
SUITES: Final[Mapping[int, CipherSuite]] = MappingProxyType(
    {
        s.id: s
        for s in (
            _ctr_hmac(_S.AES_128_CTR_HMAC_SHA256_80, "sha256", 32, 16, 10, False),
            _ctr_hmac(_S.AES_128_CTR_HMAC_SHA256_64, "sha256", 32, 16, 8, False),
            _ctr_hmac(_S.AES_128_CTR_HMAC_SHA256_32, "sha256", 32, 16, 4, False),
            _gcm(_S.AES_128_GCM_SHA256_128, "sha256", 32, 16),
            _gcm(_S.AES_256_GCM_SHA512_128, "sha512", 64, 32),
            _ctr_hmac(_S.AES_256_CTR_HMAC_SHA512_80, "sha512", 64, 32, 10, True),
            _ctr_hmac(_S.AES_256_CTR_HMAC_SHA512_64, "sha512", 64, 32, 8, True),
            _ctr_hmac(_S.AES_256_CTR_HMAC_SHA512_32, "sha512", 64, 32, 4, True),
        )
    }
)
"""Every supported suite by id (RFC 9605 suites 0x0001–0x0005, provisional 0x0006–0x0008)."""


def get_suite(suite: int | CipherSuite) -> CipherSuite:
    """Return the :class:`CipherSuite` for an id; raise :class:`UnsupportedSuite` otherwise.

    Reserved 0x0000 and private-use 0xF000–0xFFFF ids (RFC 9605 §8.1) are unsupported.
    """
    if isinstance(suite, CipherSuite):
        return suite
    found = SUITES.get(suite) if isinstance(suite, int) else None
    if found is None:
        raise UnsupportedSuite(suite if isinstance(suite, int) else -1)
    return found


__all__ = ["SUITES", "AeadKind", "CipherSuite", "SuiteId", "get_suite"]
