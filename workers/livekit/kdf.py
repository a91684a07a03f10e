"""Key derivation and the ratchet of the LiveKit and Jitsi frame formats.

LiveKit (livekit-client ``e2ee/utils.ts``): the key *material* is either a passphrase
(UTF-8, PBKDF2-HMAC-SHA256, 100,000 iterations) or raw bytes (HKDF-SHA256 with
``info`` = 128 zero bytes); the salt is ``ratchetSalt`` (default
``"LKFrameEncryptionKey"``). The AES key is ``KDF(material, 16 bytes)``; the ratchet's
next material is ``KDF(material, 32 bytes)`` under the *same* algorithm, so a
passphrase chain costs 100,000 iterations per step.

Jitsi (lib-jitsi-meet ``e2ee/crypto-utils``): raw material only, HKDF-SHA256 with
empty info; AES key salt ``"JFrameEncryptionKey"``, ratchet salt
``"JFrameRatchetKey"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from framecrypt.errors import InvalidKeyMaterial

LIVEKIT_SALT = b"LKFrameEncryptionKey"
JITSI_KEY_SALT = b"JFrameEncryptionKey"
JITSI_RATCHET_SALT = b"JFrameRatchetKey"
PBKDF2_ITERATIONS = 100_000
LIVEKIT_HKDF_INFO = bytes(128)
RATCHET_LENGTH = 32

KdfName = Literal["pbkdf2", "hkdf"]


def _run(algorithm: KdfName, material: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    if algorithm == "pbkdf2":
        return PBKDF2HMAC(SHA256(), length, salt, PBKDF2_ITERATIONS).derive(material)
    return HKDF(SHA256(), length, salt, info).derive(material)


@dataclass(frozen=True, slots=True)
class Kdf:
    """How AES keys and ratchet steps are derived from key material.

    ``salt`` salts the AES key, ``ratchet_salt`` the ratchet; LiveKit uses one salt
    for both, Jitsi two. Holds no key bytes (safe to log, pickle, compare).
    """

    algorithm: KdfName
    salt: bytes = LIVEKIT_SALT
    ratchet_salt: bytes = LIVEKIT_SALT
    info: bytes = LIVEKIT_HKDF_INFO
    key_size: int = 16

    def __post_init__(self) -> None:
        if self.algorithm not in ("pbkdf2", "hkdf"):
            raise ValueError(f"unknown kdf {self.algorithm!r} (expected 'pbkdf2' or 'hkdf')")
        if self.key_size not in (16, 32):
            raise ValueError("key_size must be 16 or 32 bytes")

    @classmethod
    def livekit(cls, algorithm: KdfName, salt: bytes = LIVEKIT_SALT, key_size: int = 16) -> Kdf:
        return cls(algorithm, salt, salt, LIVEKIT_HKDF_INFO, key_size)

    @classmethod
    def jitsi(cls) -> Kdf:
        return cls("hkdf", JITSI_KEY_SALT, JITSI_RATCHET_SALT, b"", 16)

    @property
    def expensive(self) -> bool:
        """True when one derivation costs tens of milliseconds (PBKDF2)."""
        return self.algorithm == "pbkdf2"

    def derive_key(self, material: bytes) -> bytes:
        """The AES key for ``material``."""
        return _run(self.algorithm, material, self.salt, self.info, self.key_size)

    def ratchet(self, material: bytes) -> bytes:
        """The next 32-byte material of the chain."""
        return _run(self.algorithm, material, self.ratchet_salt, self.info, RATCHET_LENGTH)


def as_material(material: bytes | bytearray | memoryview | str) -> tuple[bytes, KdfName]:
    """Normalise caller material and the KDF livekit-client would choose for it:
    ``str`` is a passphrase (PBKDF2), bytes are a raw key (HKDF)."""
    if isinstance(material, str):
        return material.encode("utf-8"), "pbkdf2"
    if isinstance(material, bytes | bytearray | memoryview):
        return bytes(material), "hkdf"
    raise InvalidKeyMaterial("key material must be str (passphrase) or bytes (raw key)")


def resolve(
    material: bytes | bytearray | memoryview | str, kdf: str | None, salt: bytes
) -> tuple[bytes, Kdf]:
    """Material bytes and the LiveKit :class:`Kdf` to use (``kdf=None``: by type)."""
    raw, default = as_material(material)
    if kdf is None:
        name: KdfName = default
    elif kdf == "pbkdf2":
        name = "pbkdf2"
    elif kdf == "hkdf":
        name = "hkdf"
    else:
        raise InvalidKeyMaterial(f"unknown kdf {kdf!r} (expected 'pbkdf2' or 'hkdf')")
    return raw, Kdf.livekit(name, salt)
