"""The AEAD algorithms of the SFrame suites (RFC 9605 §4.5, §4.5.1) behind one interface.

- :class:`GcmAead`: AES-GCM (suites 0x0004, 0x0005), one reusable ``AESGCM`` object
  per key (the extension's where it runs); the ``*_into`` methods use
  ``encrypt_into``/``decrypt_into``.
- :class:`CtrHmacAead`: the AES-CTR + HMAC encrypt-then-MAC construction of §4.5.1
  (suites 0x0001–0x0003 and provisional 0x0006–0x0008)::

      enc_key, auth_key = key[:Nka], key[Nka:]
      ct  = AES-CTR(enc_key, counter block = nonce || 0x00000000, pt)
      tag = HMAC(auth_key, u64(len aad) || u64(len ct) || u64(Nt) || nonce || aad || ct)[:Nt]
      out = ct || tag

  Opening checks the tag with :func:`hmac.compare_digest` before decrypting.

Every method raises :class:`AuthenticationFailed` (and nothing else) when a
ciphertext does not authenticate; cryptography's ``InvalidTag`` never escapes.
Objects of this module hold key bytes: their repr names the algorithm only.
"""

from __future__ import annotations

import hmac
import struct
from typing import Any, Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from framecrypt.errors import AuthenticationFailed, InvalidKeyMaterial, InvalidParameter
from framecrypt.workers import native
from framecrypt.workers.native import Gcm, aesgcm

from .suites import SUITES, AeadKind, CipherSuite

BytesLike = bytes | bytearray | memoryview
Writable = bytearray | memoryview

_LENGTHS: Final = struct.Struct(">QQQ")
_CTR_SUFFIX: Final = bytes(4)


class Aead(Protocol):
    """What an SFrame context needs from an AEAD: ``Encrypt``/``Decrypt`` of RFC 9605 §4.5.

    ``seal`` returns ``ciphertext || tag``; ``open`` takes it and returns the
    plaintext. The ``*_into`` variants write into ``out``, which must be exactly
    ``len(plaintext) + tag_length`` (seal) or ``len(ciphertext) - tag_length``
    (open) bytes, and return that length.
    """

    @property
    def tag_length(self) -> int: ...

    def seal(self, nonce: bytes, aad: BytesLike, plaintext: BytesLike) -> bytes: ...

    def open(self, nonce: bytes, aad: BytesLike, ciphertext: BytesLike) -> bytes: ...

    def seal_into(
        self, nonce: bytes, aad: BytesLike, plaintext: BytesLike, out: Writable
    ) -> int: ...

    def open_into(
        self, nonce: bytes, aad: BytesLike, ciphertext: BytesLike, out: Writable
    ) -> int: ...


class GcmAead:
    """AES-GCM with a 16-byte tag (RFC 9605 §4.5, suites 0x0004 and 0x0005)."""

    __slots__ = ("_gcm",)

    @property
    def tag_length(self) -> int:
        return 16

    @property
    def aesgcm(self) -> Gcm:
        """The underlying AES-GCM object, with cryptography's ``AESGCM`` interface
        (raises ``InvalidTag``, not our error)."""
        return self._gcm

    def __init__(self, key: bytes) -> None:
        if len(key) not in (16, 24, 32):
            raise InvalidKeyMaterial("AES-GCM key must be 16, 24 or 32 bytes")
        self._gcm = aesgcm(key)

    def seal(self, nonce: bytes, aad: BytesLike, plaintext: BytesLike) -> bytes:
        return self._gcm.encrypt(nonce, plaintext, aad)

    def open(self, nonce: bytes, aad: BytesLike, ciphertext: BytesLike) -> bytes:
        try:
            return self._gcm.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise AuthenticationFailed() from None

    def seal_into(self, nonce: bytes, aad: BytesLike, plaintext: BytesLike, out: Writable) -> int:
        if len(out) != len(plaintext) + 16:
            raise InvalidParameter("output buffer must be len(plaintext) + tag length")
        return self._gcm.encrypt_into(nonce, plaintext, aad, out)

    def open_into(self, nonce: bytes, aad: BytesLike, ciphertext: BytesLike, out: Writable) -> int:
        if len(ciphertext) < 16:
            raise AuthenticationFailed()
        if len(out) != len(ciphertext) - 16:
            raise InvalidParameter("output buffer must be len(ciphertext) - tag length")
        try:
            return self._gcm.decrypt_into(nonce, ciphertext, aad, out)
        except InvalidTag:
            raise AuthenticationFailed() from None

    def __repr__(self) -> str:
        return "GcmAead(<key hidden>)"


class CtrHmacAead:
    """AES-CTR + truncated HMAC, encrypt-then-MAC (RFC 9605 §4.5.1)."""

    __slots__ = ("_aes", "_hash", "_mac", "_nt")

    def __init__(self, key: bytes, *, nka: int, nh: int, nt: int, hash_name: str) -> None:
        if len(key) != nka + nh or nka not in (16, 24, 32):
            raise InvalidKeyMaterial("AES-CTR+HMAC key has the wrong length for its suite")
        if not 1 <= nt <= nh:
            raise InvalidParameter("tag length must be in [1, Nh]")
        self._aes = algorithms.AES(key[:nka])
        # An HMAC object already keyed with auth_key; each tag starts from a copy of it.
        self._mac = hmac.new(key[nka:], digestmod=hash_name)
        self._hash = hash_name
        self._nt = nt

    @property
    def tag_length(self) -> int:
        return self._nt

    def _tag(self, nonce: bytes, aad: BytesLike, ct: BytesLike) -> bytes:
        mac = self._mac.copy()
        mac.update(_LENGTHS.pack(len(aad), len(ct), self._nt))
        mac.update(nonce)
        mac.update(aad)
        mac.update(ct)
        return mac.digest()[: self._nt]

    def _ctr(self, nonce: bytes) -> Cipher[modes.CTR]:
        if len(nonce) != 12:
            raise InvalidParameter("AES-CTR+HMAC nonce must be 12 bytes")
        return Cipher(self._aes, modes.CTR(nonce + _CTR_SUFFIX))

    def seal(self, nonce: bytes, aad: BytesLike, plaintext: BytesLike) -> bytes:
        ct = self._ctr(nonce).encryptor().update(plaintext)
        return ct + self._tag(nonce, aad, ct)

    def open(self, nonce: bytes, aad: BytesLike, ciphertext: BytesLike) -> bytes:
        nt = self._nt
        ct_len = len(ciphertext) - nt
        if ct_len < 0:
            raise AuthenticationFailed()
        view = memoryview(ciphertext)
        ct = view[:ct_len]
        if not hmac.compare_digest(self._tag(nonce, aad, ct), view[ct_len:]):
            raise AuthenticationFailed()
        return self._ctr(nonce).decryptor().update(ct)

    def seal_into(self, nonce: bytes, aad: BytesLike, plaintext: BytesLike, out: Writable) -> int:
        nt = self._nt
        n = len(plaintext)
        if len(out) != n + nt:
            raise InvalidParameter("output buffer must be len(plaintext) + tag length")
        view = memoryview(out)
        ct = view[:n]
        self._ctr(nonce).encryptor().update_into(plaintext, ct)
        view[n:] = self._tag(nonce, aad, ct)
        return n + nt

    def open_into(self, nonce: bytes, aad: BytesLike, ciphertext: BytesLike, out: Writable) -> int:
        nt = self._nt
        ct_len = len(ciphertext) - nt
        if ct_len < 0:
            raise AuthenticationFailed()
        if len(out) != ct_len:
            raise InvalidParameter("output buffer must be len(ciphertext) - tag length")
        view = memoryview(ciphertext)
        ct = view[:ct_len]
        if not hmac.compare_digest(self._tag(nonce, aad, ct), view[ct_len:]):
            raise AuthenticationFailed()
        self._ctr(nonce).decryptor().update_into(ct, out)
        return ct_len

    def __repr__(self) -> str:
        return f"CtrHmacAead({self._hash}, tag={self._nt}, <key hidden>)"


def make_aead(suite: CipherSuite, key: bytes) -> Aead:
    """The AEAD of ``suite`` keyed with ``key`` (Nk bytes)."""
    if len(key) != suite.nk:
        raise InvalidKeyMaterial("AEAD key length does not match the cipher suite")
    if suite.kind is AeadKind.AES_GCM:
        return GcmAead(key)
    return CtrHmacAead(key, nka=suite.nka, nh=suite.nh, nt=suite.nt, hash_name=suite.hash_name)


__all__ = ["Aead", "CtrHmacAead", "GcmAead", "make_aead"]


def native_key_state(suite: CipherSuite, kid: int, key: bytes, salt: bytes, aead: Aead) -> Any:
    """The C state of a key (``framecrypt._native.SfKey``), or None where the pure core
    runs: no extension, inside ``native.using("python")``, a suite that is not one of
    the registry's (``dataclasses.replace`` of one, in tests), an extension without
    the SFrame slice. GCM keys share the key schedule of their AEAD's AES-GCM object
    (so ``native.using("evp")``/``("ipsec-mb")`` picks their backend too)."""
    mod = native.NATIVE
    if mod is None or not native.active() or SUITES.get(suite.id) != suite:
        return None
    make = getattr(mod, "sf_key", None)
    if make is None:
        return None
    if isinstance(aead, GcmAead):
        gcm = aead.aesgcm
        return make(suite.id, kid, salt, gcm) if native.is_native_key(gcm) else None
    return make(suite.id, kid, salt, key)
