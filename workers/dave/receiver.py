"""A DAVE receiver for one sender, libdave's rules, with time passed in (no clock here).

- :class:`SenderKeys` (libdave's CryptorManager): one key ratchet (one epoch) of one
  sender: which generations it may still open (not older than the oldest kept, at most
  :data:`MAX_GENERATION_GAP` past the newest seen, and no further than the ratchet's age
  allows at :data:`MAX_FRAMES_PER_SECOND`), the nonce window, and a
  :data:`CRYPTOR_EXPIRY` for older generations once a newer one authenticated.
- :class:`Receiver` (libdave's Decryptor): the sender's ratchets newest first (an epoch
  change keeps the previous one until its transition expiry), passthrough of unencrypted
  frames while allowed, and the SFU's Opus silence frame, which always passes (audio).

``now`` is seconds on any monotonic scale the caller chooses, the same for every call.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from framecrypt.errors import AuthenticationFailed, DroppedFrame, MalformedFrame, ReplayedFrame
from framecrypt.workers import native as _native

from . import footer, frame, nonces
from .ratchet import KeyRatchet

CRYPTOR_EXPIRY = 10.0
MAX_GENERATION_GAP = nonces.MAX_GENERATION_GAP
MAX_FRAMES_PER_SECOND = 50 + 2 * 60  # 50 audio frames + two 60 fps video streams
_FOREVER = math.inf
if _native.NATIVE is not None:  # the C receiver's typed errors and rare-path references
    _native.NATIVE.dave_setup(MalformedFrame, ReplayedFrame, DroppedFrame, AuthenticationFailed,
                             footer.parse, frame.open_frame)


class RatchetState(Protocol):
    """What a receiver's ratchet state (:class:`SenderKeys`, or the C receiver's) tells
    the worker that hands it over (:mod:`.contexts`)."""

    @property
    def newest_nonce(self) -> int: ...

    def restore(self, newest: int, now: float) -> None: ...


class SenderKeys:
    """The generations and nonces one key ratchet of one sender may still open."""

    __slots__ = ("_created", "_expiry", "_keys", "_newest", "_oldest", "_ratchet", "window")

    def __init__(self, ratchet: KeyRatchet, now: float) -> None:
        self._ratchet = ratchet
        self._created = now
        self._expiry = _FOREVER
        self._keys: dict[int, float] = {}  # generation -> expiry of its key
        self._oldest = 0
        self._newest = 0
        self.window = nonces.NonceWindow()

    def __repr__(self) -> str:
        return f"SenderKeys(oldest={self._oldest}, newest={self._newest})"

    @property
    def newest_nonce(self) -> int:
        """The newest big nonce authenticated (-1 before the first)."""
        return self.window.newest

    def expire_at(self, when: float) -> None:
        self._expiry = min(self._expiry, when)

    def expired(self, now: float) -> bool:
        return self._expiry < now

    def _cleanup(self, now: float) -> None:
        for gen in [g for g, exp in self._keys.items() if exp < now]:
            del self._keys[gen]
        while self._oldest < self._newest and self._oldest not in self._keys:
            self._ratchet.erase(self._oldest)
            self._oldest += 1

    def restore(self, newest: int, now: float) -> None:
        """Continue from another receiver's state: big nonce ``newest`` was the newest
        it opened (everything up to it is refused now); the ratchet is taken as old
        enough for that generation (the age limit counts from the sender's first frame)."""
        if newest <= self.window.newest:
            return
        self.window.raise_floor(newest)
        generation = newest >> nonces.GENERATION_SHIFT
        self._newest = max(self._newest, generation)
        self._oldest = max(self._oldest, generation)
        self._created = min(self._created, now - 1 - (
            generation << nonces.GENERATION_SHIFT) / MAX_FRAMES_PER_SECOND)

    def open(self, data: bytes, f: footer.Footer, now: float) -> bytes:
        """Open ``data`` (footer ``f``) or raise: :class:`ReplayedFrame` for a nonce
        already used or out of the window, :class:`DroppedFrame` for a generation this
        ratchet may not open now, :class:`AuthenticationFailed`."""
        generation = nonces.wrapped_generation(self._oldest, f.generation)
        big = nonces.big_nonce(generation, f.nonce)
        self.window.check(big)
        self._cleanup(now)
        if generation < self._oldest:
            raise DroppedFrame("DAVE frame of an erased generation")
        if generation > self._newest + MAX_GENERATION_GAP:
            raise DroppedFrame("DAVE frame too many generations ahead")
        lifetime = max(0, int(now - self._created))
        if generation > (MAX_FRAMES_PER_SECOND * lifetime) >> nonces.GENERATION_SHIFT:
            raise DroppedFrame("DAVE generation beyond what the ratchet's age allows")
        if generation not in self._keys:
            self._keys[generation] = _FOREVER if generation >= self._newest else (
                now + CRYPTOR_EXPIRY)
        plain = frame.open_parsed(self._ratchet.aead(generation), data, f)
        self.window.accept(big)
        if generation > self._newest:
            self._newest = generation
            for gen in self._keys:
                if gen < generation:
                    self._keys[gen] = min(self._keys[gen], now + CRYPTOR_EXPIRY)
        return plain


class Receiver:
    """Everything one sender's frames are opened with (libdave's Decryptor).

    ``native`` (default: where the extension runs, :func:`native.active`): the state
    and the per-frame work live in the extension's ``DaveReceiver``
    (``workers/csrc/fc_dave_rx.inc``), which this class is the reference of; the
    Python below runs with ``native=False`` (and the differential tests compare the
    two)."""

    __slots__ = ("_core", "_managers", "_passthrough_until")

    def __init__(self, native: bool | None = None) -> None:
        self._managers: list[SenderKeys] = []
        self._passthrough_until = -_FOREVER
        use = _native.active() if native is None else native
        self._core: Any = _native.NATIVE.DaveReceiver() if use and _native.NATIVE else None

    def __repr__(self) -> str:
        if self._core is not None:
            return repr(self._core)
        return f"Receiver(ratchets={len(self._managers)})"

    def transition_to_key_ratchet(self, ratchet: KeyRatchet, now: float,
                                  expiry: float = CRYPTOR_EXPIRY) -> RatchetState:
        """A new epoch's ratchet; earlier ones stay usable until ``now + expiry``."""
        if self._core is not None:
            state: RatchetState = self._core.transition_to_key_ratchet(
                ratchet, float(now), float(expiry))
            return state
        for m in self._managers:
            m.expire_at(now + expiry)
        m = SenderKeys(ratchet, now)
        self._managers.append(m)
        return m

    def transition_to_passthrough(self, passthrough: bool, now: float,
                                  expiry: float = CRYPTOR_EXPIRY) -> None:
        """Allow unencrypted frames (for good), or stop allowing them after ``expiry``."""
        if self._core is not None:
            self._core.transition_to_passthrough(passthrough, float(now), float(expiry))
            return
        if passthrough:
            self._passthrough_until = _FOREVER
        else:
            self._passthrough_until = min(self._passthrough_until, now + expiry)

    def open(self, data: bytes, now: float, audio: bool = True) -> bytes:
        """The frame's plaintext, or a typed error (:class:`MalformedFrame` for an
        unencrypted frame while passthrough is not allowed)."""
        core = self._core
        if core is not None:
            plain: bytes = core.open(data, now, audio)
            return plain
        if audio and data == frame.OPUS_SILENCE:
            return data
        while self._managers and self._managers[0].expired(now):
            del self._managers[0]
        try:
            f = frame.quick_footer(data)
        except MalformedFrame:
            if self._passthrough_until > now:
                return data
            raise
        error: Exception = DroppedFrame("no DAVE key ratchet for this sender")
        for m in reversed(self._managers):
            try:
                return m.open(data, f, now)
            except (AuthenticationFailed, DroppedFrame, ReplayedFrame) as e:
                error = e
        raise error
