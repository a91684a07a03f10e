"""Which hot loop runs: the compiled extension ``framecrypt._native`` or the pure core.

``FRAMECRYPT_NATIVE`` (read once, at first import):

- unset, ``1``, ``auto``: the extension; its AES-GCM from Intel's multi-buffer library
  where the CPU has AES-NI, OpenSSL's EVP else;
- ``evp`` / ``ipsec-mb``: the extension with that AES-GCM backend (``ipsec-mb`` not
  available: the pure core, saying why);
- ``0``: the pure-Python core (cryptography's AESGCM, the Python loops), the reference.

The pure core stays the reference: the extension handles the success paths of the
frame loop and stops at any frame it does not handle, which the pure code then
takes (so typed errors, SIF, LKTS and ratchets have one implementation). One log
line (logger ``framecrypt.native``, from the first engine) says which path runs and
why; :func:`info` returns the same as a dict (``framecrypt.native_info()``,
``framecrypt formats``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Final, Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["NATIVE", "Gcm", "active", "aesgcm", "announce", "info", "is_native_key", "pure",
           "using"]

_BACKENDS: Final = {"": 0, "1": 0, "auto": 0, "evp": 1, "ipsec-mb": 2}


def _import() -> Any:
    """``framecrypt._native``, or the build ``FRAMECRYPT_NATIVE_LIB`` names (a file:
    the sanitizer pass of CI loads its ASan/UBSan build this way)."""
    lib = os.environ.get("FRAMECRYPT_NATIVE_LIB")
    import importlib
    import importlib.util
    import sys

    if not lib:
        return importlib.import_module("framecrypt._native")

    spec = importlib.util.spec_from_file_location("framecrypt._native", lib)
    if spec is None or spec.loader is None:
        raise ImportError(f"FRAMECRYPT_NATIVE_LIB={lib[:100]!r} is no extension module")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.modules["framecrypt._native"] = mod
    return mod


def _load() -> tuple[Any, dict[str, Any]]:
    want = os.environ.get("FRAMECRYPT_NATIVE", "").strip().lower()
    if want == "0":
        return None, {"path": "python", "why": "FRAMECRYPT_NATIVE=0"}
    if want not in _BACKENDS:
        return None, {"path": "python",
                      "why": f"FRAMECRYPT_NATIVE={want[:16]!r} is not 0, 1, auto, evp or ipsec-mb"}
    try:
        _native = _import()
    except ImportError as e:
        return None, {"path": "python", "why": f"extension not built ({e})"[:200]}
    try:
        _native.setup(_BACKENDS[want])
    except ValueError as e:
        return None, {"path": "python", "why": f"FRAMECRYPT_NATIVE={want}: {e}"}
    got = dict(_native.info())
    got.update(path="native", why=got.pop("reason"))
    return _native, got


NATIVE, _INFO = _load()
"""The extension module (``None``: the pure core runs)."""

_announced = False


def announce() -> None:
    """Log, once per process, which path runs and why (logger ``framecrypt.native``;
    the engine calls it: importing the pure core must not load ``logging``'s threads)."""
    global _announced
    if _announced:
        return
    _announced = True
    import logging

    logging.getLogger("framecrypt.native").info(
        "framecrypt: %s path%s (%s)", _INFO["path"],
        f", AES-GCM by {_INFO['backend_version']}" if NATIVE is not None else "", _INFO["why"])

class Gcm(Protocol):
    """What the frame code needs of an AES-GCM object: cryptography's ``AESGCM``
    interface, which the extension's ``AesGcm`` repeats (12-byte nonces)."""

    def encrypt(self, nonce: Buffer, data: Buffer, associated_data: Buffer | None) -> bytes: ...
    def decrypt(self, nonce: Buffer, data: Buffer, associated_data: Buffer | None) -> bytes: ...
    def encrypt_into(self, nonce: Buffer, data: Buffer, associated_data: Buffer | None,
                     buf: Buffer) -> int: ...
    def decrypt_into(self, nonce: Buffer, data: Buffer, associated_data: Buffer | None,
                     buf: Buffer) -> int: ...


Buffer = bytes | bytearray | memoryview

_AesGcm: Any = NATIVE.AesGcm if NATIVE is not None else None


def aesgcm(key: bytes) -> Gcm:
    """An AES-GCM object with cryptography's ``AESGCM`` interface (12-byte nonces on
    the native path): the extension's where it runs, else cryptography's."""
    if _AesGcm is not None:
        gcm: Gcm = _AesGcm(key)
        return gcm
    return AESGCM(key)


def is_native_key(aead: object) -> bool:
    return NATIVE is not None and type(aead) is NATIVE.AesGcm


def active() -> bool:
    """Whether objects made now use the extension (False inside :func:`pure`)."""
    return _AesGcm is not None


@contextmanager
def using(kind: str) -> Iterator[None]:
    """Key objects and engines made inside use ``kind``: ``"python"`` (the pure core,
    even where the extension runs), ``"evp"`` or ``"ipsec-mb"`` (the extension with that
    AES-GCM backend; ``ValueError`` where it is not available), ``"auto"`` (as outside).
    The reference beside the native path in one process: differential tests, the
    bench's per-backend contenders. Not for concurrent use from several threads."""
    global _AesGcm
    if kind not in ("python", "evp", "ipsec-mb", "auto"):
        raise ValueError(f"unknown kind {kind[:16]!r}")
    make: Any = None
    if kind != "python":
        if NATIVE is None:
            raise ValueError(f"{kind}: the extension does not run ({_INFO['why']})")
        if kind == "auto":
            make = NATIVE.AesGcm
        else:
            backend = _BACKENDS[kind]
            NATIVE.AesGcm(bytes(16), backend)  # ValueError if not available

            def make(key: bytes) -> Any:
                return NATIVE.AesGcm(key, backend)
    saved, _AesGcm = _AesGcm, make
    try:
        yield
    finally:
        _AesGcm = saved


def pure() -> AbstractContextManager[None]:
    """``using("python")``: objects made inside use the pure core."""
    return using("python")


def info() -> dict[str, Any]:
    """``{"path": "native" | "python", "why": …, "backend": "ipsec-mb" | "evp",
    "backend_version": …, "ipsec_mb_available": bool, "sanitized": bool}`` (the last
    four on the native path only)."""
    return dict(_INFO)
