"""A DAVE sender (libdave's Encryptor): one nonce counter over one key ratchet.

The truncated nonce counts up from 1 (wrapping at 2^32); its top byte is the generation,
unwrapped past 255 the way receivers do, so the ratchet moves on every 2^24 frames. Each
frame is sealed with the unencrypted ranges of its codec; an H.264/H.265 frame whose
result would hold a start code takes the next nonce, at most ``h26x.MAX_ATTEMPTS`` times.
"""

from __future__ import annotations

from framecrypt.errors import DroppedFrame
from framecrypt.workers.native import Gcm

from . import frame, h26x, nonces
from .ratchet import KeyRatchet

CODECS = ("opus", "vp8", "vp9", "h264", "h265", "av1")


class Sender:
    """Seals one sender's frames; the repr shows no key."""

    __slots__ = ("_generation", "_nonce", "_ratchet")

    def __init__(self, ratchet: KeyRatchet) -> None:
        self._ratchet = ratchet
        self._nonce = 0
        self._generation = 0

    def __repr__(self) -> str:
        return f"Sender(nonce={self._nonce}, generation={self._generation})"

    @property
    def nonce(self) -> int:
        """The last truncated nonce used."""
        return self._nonce

    def _next(self) -> tuple[Gcm, int]:
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
