"""A DAVE sender (libdave's Encryptor): one nonce counter over one key ratchet.

The truncated nonce counts up from 1 (wrapping at 2^32); its top byte is the generation,
unwrapped past 255 the way receivers do, so the ratchet moves on every 2^24 frames. Each
frame is sealed with the unencrypted ranges of its codec; an H.264/H.265 frame whose
result would hold a start code takes the next nonce, at most ``h26x.MAX_ATTEMPTS`` times.
"""

from __future__ import annotations

from typing import Any

from framecrypt.errors import DroppedFrame
from framecrypt.workers import native as _native
from framecrypt.workers.native import Gcm

from . import frame, h26x, nonces
from .ratchet import KeyRatchet

CODECS = ("opus", "vp8", "vp9", "h264", "h265", "av1")


class Sender:
    """Seals one sender's frames; the repr shows no key.

    ``native`` (default: where the extension runs): the nonce counter lives in the
    extension's ``DaveSender`` (``workers/csrc/fc_dave_tx.inc``), which seals Opus,
    VP8, VP9, H.264 and H.265 frames in one call; the rest (AV1, a frame the C framing
    stops at) is sealed below with nonces from it. ``native=False``: the reference."""

    __slots__ = ("_core", "_generation", "_nonce", "_ratchet")

    def __init__(self, ratchet: KeyRatchet, native: bool | None = None) -> None:
        self._ratchet = ratchet
        self._nonce = 0
        self._generation = 0
        use = _native.active() if native is None else native
        self._core: Any = _native.NATIVE.DaveSender(ratchet) if use and _native.NATIVE else None

    def __repr__(self) -> str:
        if self._core is not None:
            return repr(self._core)
        return f"Sender(nonce={self._nonce}, generation={self._generation})"

    @property
    def nonce(self) -> int:
        """The last truncated nonce used."""
        if self._core is not None:
            n: int = self._core.nonce
            return n
        return self._nonce

    def _jump(self, nonce: int, generation: int) -> None:
        """Continue after ``nonce`` in ``generation`` (tests of generation boundaries)."""
        if self._core is not None:
            self._core._jump(nonce, generation)
        self._nonce, self._generation = nonce, generation

    def _next(self) -> tuple[Gcm, int]:
        if self._core is not None:
            got: tuple[Gcm, int] = self._core.next()
            return got
        self._nonce = (self._nonce + 1) & 0xFFFFFFFF
        generation = nonces.wrapped_generation(
            self._generation, self._nonce >> nonces.GENERATION_SHIFT
        )
        if generation != self._generation:
            self._ratchet.erase(self._generation)
            self._generation = generation
        return self._ratchet.aead(generation), self._nonce

    def seal(self, codec: str, data: bytes | bytearray | memoryview) -> bytes:
        """The sealed frame (``UnsupportedCodec`` for a codec not in :data:`CODECS`)."""
        core = self._core
        if core is not None:
            sealed: bytes | None = core.seal(codec, data)
            if sealed is not None:
                return sealed
        if codec in ("h264", "h265"):
            rewritten, ranges = h26x.h26x_frame(codec, data)
            for _ in range(h26x.MAX_ATTEMPTS):
                key, nonce = self._next()
                sealed = frame.seal(key, nonce, rewritten, ranges)
                if not h26x.has_start_code_leak(sealed, ranges):
                    return sealed
            raise DroppedFrame("every H.26x sealing attempt held a start code")
        if codec == "av1":
            rewritten, ranges = frame.av1_frame(data)
        else:
            rewritten, ranges = bytes(data), frame.unencrypted_ranges(codec, data)
        key, nonce = self._next()
        return frame.seal(key, nonce, rewritten, ranges)
