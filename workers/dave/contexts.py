"""One DAVE sender (a user) as a crypto worker holds it: both sides, keyed per MLS epoch.

The key input is per sender and per epoch: the base secret the MLS exporter gives for
the user in that epoch (:func:`.ratchet.base_secret`), set with the broker counter the
epoch starts at. Sealing (as that user) and opening (that user's frames) both use it.

Nonces have one owner, the broker's ledger, as for every format: a frame sealed with
broker counter ``c`` in the epoch that starts at counter ``base`` takes the big nonce
``c - base + 1 + skew`` (the truncated nonce is its low 32 bits, the generation its
bits 24 and up, so the ratchet moves on every 2^24 frames as libdave's does, and a new
epoch starts again at nonce 1). ``skew`` counts the extra nonces H.264/H.265 start-code
retries took (libdave takes the next nonce per attempt); it grows only with the frames
a worker sealed in counter order, and the worker reports it with each result so the
broker's key directory hands it to a worker that takes the sender over: a respawned or
moved worker seals frame ``c`` with exactly the nonce the dead one would have, and no
nonce that left the broker is ever used for another frame.

Receivers hand over their nonce windows the same way: the newest big nonce each epoch
opened is reported; a worker that takes over refuses everything up to it (frames that
were missing then are refused too: conservative).

Reported and replayed as ``(kid, value)`` pairs, the replay-floor channel SFrame uses:
``kid = 2 * epoch`` carries the sender's skew, ``2 * epoch + 1`` the receiver's newest.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from framecrypt.errors import CounterExhausted, DroppedFrame, InvalidParameter, UnknownKey
from framecrypt.workers.native import NATIVE as _C
from framecrypt.workers.native import Gcm

from . import frame, h26x, nonces
from .ratchet import BASE_SECRET_BYTES, KeyRatchet
from .receiver import RatchetState, Receiver

MAX_EPOCHS = 3  # epochs a participant keeps (frames in flight across two rotations)
MAX_EPOCH = (1 << 62) - 1  # so that 2 * epoch + 1 is a u64
MAX_BIG_NONCE = (1 << 56) - 1  # generations stay 32-bit numbers
U32 = 0xFFFFFFFF
_C_GCM = _C.AesGcm if _C is not None else None
_C_DROPPED = -3  # dave_seal_h26x: every attempt held a start code (fc_dave_h26x.h)
DAVE_OPS = ("dave_key", "dave_passthrough")  # key operations (transports/to_worker.py)


class SealedTooBig(Exception):
    """A frame sealed (its nonce taken) that does not fit the caller's output region:
    the caller keeps these bytes (sealing again would take another nonce)."""

    def __init__(self, sealed: bytes) -> None:
        super().__init__("sealed frame larger than its output region")
        self.sealed = sealed


@dataclass(slots=True)
class _Epoch:
    epoch: int
    base: int
    secret: bytes = field(repr=False)
    ratchet: KeyRatchet = field(repr=False)
    skew: int = 0
    generation: int = -1
    key: Gcm | None = field(default=None, repr=False)

    def key_for(self, big: int) -> Gcm:
        gen = big >> nonces.GENERATION_SHIFT
        if gen != self.generation:
            if self.generation >= 0 and gen > self.generation:
                self.ratchet.erase(self.generation)
            self.key = self.ratchet.aead(gen)
            self.generation = gen
        assert self.key is not None
        return self.key


class DaveParticipant:
    """A DAVE sender's epochs (sealing as it) and its receiver (opening its frames).
    The repr shows no secret."""

    __slots__ = ("_epochs", "_received", "passthrough", "receiver")

    def __init__(self) -> None:
        self._epochs: list[_Epoch] = []  # by base counter
        self._received: dict[int, RatchetState] = {}  # epoch -> the receiver's ratchet
        self.receiver = Receiver()
        self.passthrough = False

    def __repr__(self) -> str:
        return f"DaveParticipant(epochs={[e.epoch for e in self._epochs]})"

    @property
    def epochs(self) -> list[int]:
        return [e.epoch for e in self._epochs]

    def control(self, op: str, args: tuple[object, ...] | list[object], now: float
                ) -> list[object]:
        """A key operation (after participant and name): ``dave_key`` epoch, base
        secret, base counter; ``dave_passthrough`` enabled. Returns the (empty) ACK."""
        if op == "dave_key":
            epoch, secret, base = args
            assert isinstance(epoch, int) and isinstance(secret, bytes) and isinstance(base, int)
            self.set_epoch(epoch, secret, base, now)
        elif op == "dave_passthrough":
            (enabled,) = args
            self.set_passthrough(bool(enabled), now)
        else:
            raise ValueError(f"unknown DAVE control op {op!r}")
        return []

    def set_epoch(self, epoch: int, secret: bytes, base: int, now: float) -> None:
        """The base secret of this sender in ``epoch``; frames with broker counters from
        ``base`` on are sealed with it. Setting the same epoch again with the same secret
        changes nothing (a key directory replay); another secret for it is refused."""
        if not 0 <= epoch <= MAX_EPOCH or base < 0:
            raise InvalidParameter("DAVE epoch or base counter out of range")
        secret = bytes(secret)
        if len(secret) != BASE_SECRET_BYTES:
            raise InvalidParameter("a DAVE base secret is 16 bytes")
        for e in self._epochs:
            if e.epoch == epoch:
                if not hmac.compare_digest(e.secret, secret):
                    raise InvalidParameter("another base secret for a DAVE epoch already set")
                return
        if self._epochs and base < self._epochs[-1].base:
            raise InvalidParameter("a DAVE epoch must start after the previous one")
        self._epochs.append(_Epoch(epoch, base, secret, KeyRatchet(secret)))
        self._received[epoch] = self.receiver.transition_to_key_ratchet(KeyRatchet(secret), now)
        while len(self._epochs) > MAX_EPOCHS:
            old = self._epochs.pop(0)
            self._received.pop(old.epoch, None)

    def set_passthrough(self, enabled: bool, now: float) -> None:
        """Passthrough: this sender's frames go out unencrypted and unencrypted frames
        from it are accepted (while a call is unencrypted or changing mode); turning it
        off stops accepting them after libdave's transition expiry."""
        self.passthrough = enabled
        self.receiver.transition_to_passthrough(enabled, now)

    # --- frames --------------------------------------------------------------------------

    def _epoch_of(self, counter: int) -> _Epoch:
        for e in reversed(self._epochs):
            if e.base <= counter:
                return e
        raise UnknownKey(0)

    def seal_plan(self, counter: int) -> tuple[Gcm, int, int, int, _Epoch] | None:
        """For the C batch loop (:mod:`framecrypt.workers.native_dave`), from broker
        counter ``counter`` on: (the generation's key, the big nonce of ``counter``, the
        big nonce to stop before, the counter the next epoch starts at or -1, the epoch
        whose ``skew`` takes the loop's retries); None where :meth:`seal` takes it."""
        if self.passthrough:
            return None
        for at in range(len(self._epochs) - 1, -1, -1):
            e = self._epochs[at]
            if e.base <= counter:
                big = counter - e.base + 1 + e.skew
                if big > MAX_BIG_NONCE:
                    return None
                end = min(((big >> nonces.GENERATION_SHIFT) + 1) << nonces.GENERATION_SHIFT,
                          MAX_BIG_NONCE + 1)
                nxt = self._epochs[at + 1].base if at + 1 < len(self._epochs) else -1
                return e.key_for(big), big, end, nxt, e
        return None

    def seal(self, counter: int, codec: str, data: bytes | bytearray | memoryview) -> bytes:
        """The frame sealed with broker counter ``counter`` (typed errors)."""
        if self.passthrough:
            return bytes(data)
        e = self._epoch_of(counter)
        big = counter - e.base + 1 + e.skew
        if codec in ("h264", "h265"):
            if big + h26x.MAX_ATTEMPTS - 1 <= MAX_BIG_NONCE:
                key = e.key_for(big)
                if type(key) is _C_GCM:  # fc_dave_h26x.c: stops at a generation's end
                    got = _C.dave_seal_h26x(key, big & U32, codec == "h265", data)
                    if type(got) is tuple:
                        e.skew += got[1] - 1
                        return got[0]  # type: ignore[no-any-return]
                    if got == _C_DROPPED:
                        e.skew += h26x.MAX_ATTEMPTS - 1
                        raise DroppedFrame("every H.26x sealing attempt held a start code")
            rewritten, ranges = h26x.h26x_frame(codec, data)  # (the typed errors)
            if big + h26x.MAX_ATTEMPTS - 1 > MAX_BIG_NONCE:
                raise CounterExhausted(0)
            for attempt in range(h26x.MAX_ATTEMPTS):
                n = big + attempt
                sealed = frame.seal(e.key_for(n), n & U32, rewritten, ranges)
                if not h26x.has_start_code_leak(sealed, ranges):
                    e.skew += attempt
                    return sealed
            e.skew += h26x.MAX_ATTEMPTS - 1
            raise DroppedFrame("every H.26x sealing attempt held a start code")
        if big > MAX_BIG_NONCE:
            raise CounterExhausted(0)
        if codec == "av1":
            rewritten_av1, ranges = frame.av1_frame(data)
            return frame.seal(e.key_for(big), big & U32, rewritten_av1, ranges)
        return frame.seal(e.key_for(big), big & U32, data, frame.unencrypted_ranges(codec, data))

    def open(self, data: bytes | bytearray | memoryview, codec: str, now: float) -> bytes:
        """This sender's frame opened (codec-agnostic but for the Opus silence frame)."""
        return self.receiver.open(bytes(data), now, audio=codec == "opus")

    # --- what travels with the key directory ------------------------------------------

    def floors(self) -> list[list[int]]:
        """``[[2 * epoch, skew], [2 * epoch + 1, newest big nonce opened], …]``."""
        out = [[2 * e.epoch, e.skew] for e in self._epochs if e.skew]
        out += [[2 * ep + 1, m.newest_nonce] for ep, m in self._received.items()
                if m.newest_nonce >= 0]
        return out

    def apply_floor(self, kid: int, value: int, now: float) -> None:
        """A floor reported by the worker that held this sender before."""
        epoch, receiving = divmod(kid, 2)
        if receiving:
            m = self._received.get(epoch)
            if m is not None:
                m.restore(value, now)
            return
        for e in self._epochs:
            if e.epoch == epoch and value > e.skew:
                e.skew = value
