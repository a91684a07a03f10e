"""Sender-key ratchet (RFC 9605 §5.1).

A sender moves its base key forward without distributing a new one::

    base_key[i+1] = HKDF-Expand(HKDF-Extract("", base_key[i]), "SFrame 1.0 Ratchet", Nh)

and names the step in the KID::

    KID = (key_generation << R) + (ratchet_step mod 2**R)

``R`` is chosen by the application and bounds reordering: at most ``2**R``
steps can be told apart. A new *generation* (new key material from the
application) is what locks out a removed member; ratcheting only hides past media
from joiners.

Receivers (:class:`RatchetKeySource`, plugged into a
:class:`~.context.ReceiverContext`) catch up with a sender that ratcheted, at most
``max_steps`` steps per frame, and keep the keys of the ``keep_previous`` steps
before the current one for frames that arrive late. The header that names the
step is unauthenticated, so a ratcheted key is computed tentatively and committed
only after a frame authenticated under it.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from framecrypt.errors import CounterExhausted, InvalidParameter, UnknownKey

from .context import Commit, ReceiveSlot, SFrameKey, Writable
from .header import BytesLike
from .keyschedule import check_base_key, hkdf_expand, hkdf_extract
from .suites import CipherSuite, get_suite

RATCHET_LABEL = b"SFrame 1.0 Ratchet"


def next_base_key(suite: int | CipherSuite, base_key: BytesLike) -> bytes:
    """One ratchet step: the next base key (RFC 9605 §5.1), Nh bytes long."""
    cs = get_suite(suite)
    prk = hkdf_extract(cs.hash_name, b"", check_base_key(base_key))
    return hkdf_expand(cs.hash_name, prk, RATCHET_LABEL, cs.nh)


@dataclass(frozen=True, slots=True)
class RatchetLayout:
    """The KID layout ``(generation << R) + (step mod 2**R)`` of RFC 9605 §5.1."""

    ratchet_bits: int  # R

    def __post_init__(self) -> None:
        if not 1 <= self.ratchet_bits <= 63:
            raise InvalidParameter("ratchet bits R must be in [1, 63]")

    @property
    def steps(self) -> int:
        """``2**R``: how many consecutive steps have distinct KIDs."""
        return 1 << self.ratchet_bits

    @property
    def max_generation(self) -> int:
        """The largest generation whose KIDs fit 64 bits."""
        return (1 << (64 - self.ratchet_bits)) - 1

    def kid(self, generation: int, step: int) -> int:
        """``(generation << R) + (step mod 2**R)``."""
        if not 0 <= generation <= self.max_generation:
            raise InvalidParameter("key generation does not fit the 64-bit KID with R bits")
        if step < 0:
            raise InvalidParameter("ratchet step must not be negative")
        return (generation << self.ratchet_bits) + (step & (self.steps - 1))

    def split(self, kid: int) -> tuple[int, int]:
        """``(generation, step mod 2**R)`` of a KID."""
        return kid >> self.ratchet_bits, kid & (self.steps - 1)


class RatchetingSender:
    """A sender that ratchets its base key (RFC 9605 §5.1).

    Each step is a new base key, hence a new (key, salt); its counter restarts at 0.
    """

    __slots__ = ("_base_key", "_key", "_next_ctr", "generation", "layout", "step", "suite")

    def __init__(
        self,
        suite: int | CipherSuite,
        base_key: BytesLike,
        *,
        generation: int,
        layout: RatchetLayout,
        step: int = 0,
        next_ctr: int = 0,
    ) -> None:
        self.suite = get_suite(suite)
        self.layout = layout
        self.generation = generation
        self.step = step
        self._base_key = check_base_key(base_key)
        self._key = SFrameKey.derive(self.suite, self._base_key, layout.kid(generation, step))
        if next_ctr < 0:
            raise InvalidParameter("CTR must not be negative")
        self._next_ctr = next_ctr

    @property
    def kid(self) -> int:
        """The KID frames are sent under now."""
        return self._key.kid

    @property
    def next_ctr(self) -> int:
        """The counter of the next frame."""
        return self._next_ctr

    def ratchet(self) -> int:
        """Move to the next step; return the new KID. The counter restarts at 0."""
        self._base_key = next_base_key(self.suite, self._base_key)
        self.step += 1
        self._key = SFrameKey.derive(
            self.suite, self._base_key, self.layout.kid(self.generation, self.step)
        )
        self._next_ctr = 0
        return self._key.kid

    def new_generation(self, generation: int, base_key: BytesLike) -> int:
        """Start a new generation with fresh key material at step 0; return the new KID."""
        if generation == self.generation:
            raise InvalidParameter("a new generation needs a new generation number")
        key = check_base_key(base_key)
        self._key = SFrameKey.derive(self.suite, key, self.layout.kid(generation, 0))
        self._base_key = key
        self.generation = generation
        self.step = 0
        self._next_ctr = 0
        return self._key.kid

    def _take(self) -> int:
        ctr = self._next_ctr
        if ctr > self._key.ctr_limit:
            raise CounterExhausted(self._key.kid)
        self._next_ctr = ctr + 1
        return ctr

    def protect(self, plaintext: BytesLike, metadata: BytesLike = b"") -> bytes:
        """Seal the next frame under the current step's key."""
        return self._key.protect(self._take(), plaintext, metadata)

    def protect_into(self, plaintext: BytesLike, out: Writable, metadata: BytesLike = b"") -> int:
        """Seal the next frame into ``out``; return its length."""
        return self._key.protect_into(self._take(), plaintext, out, metadata)

    def __repr__(self) -> str:
        return (
            f"RatchetingSender(suite=0x{self.suite.id:04x}, generation={self.generation}, "
            f"step={self.step}, kid={self.kid})"
        )


class _Chain:
    """Receiver state of one generation: the current step and the keys kept."""

    __slots__ = ("base_keys", "slots", "step")

    def __init__(self, step: int, base_key: bytes) -> None:
        self.step = step
        self.base_keys: dict[int, bytes] = {step: base_key}
        self.slots: dict[int, ReceiveSlot] = {}


class RatchetKeySource:
    """Receiver side of the §5.1 ratchet, as a :class:`~.context.KeySource`.

    Holds one chain per generation. For a frame whose step (mod ``2**R``) is
    ahead of the chain by 1..``max_steps`` it ratchets tentatively; the chain
    advances only when :class:`~.context.ReceiverContext` commits after the frame
    authenticated. Steps up to ``keep_previous`` behind the current one stay
    decryptable. ``max_steps + keep_previous`` must be below ``2**R`` so that
    every step low-bits value has one meaning.
    """

    __slots__ = ("_chains", "keep_previous", "layout", "max_steps", "suite")

    def __init__(
        self,
        suite: int | CipherSuite,
        layout: RatchetLayout,
        *,
        max_steps: int = 8,
        keep_previous: int = 1,
    ) -> None:
        if max_steps < 1 or keep_previous < 0:
            raise InvalidParameter("max_steps must be >= 1 and keep_previous >= 0")
        if max_steps + keep_previous >= layout.steps:
            raise InvalidParameter("max_steps + keep_previous must be below 2**R")
        self.suite = get_suite(suite)
        self.layout = layout
        self.max_steps = max_steps
        self.keep_previous = keep_previous
        self._chains: dict[int, _Chain] = {}

    def add_generation(self, generation: int, base_key: BytesLike, *, step: int = 0) -> None:
        """Receive ``generation`` starting from ``base_key`` at ``step``.

        A held generation is replaced, unless it is added again with the same key
        and step, which changes nothing (keys and replay windows are kept).
        """
        self.layout.kid(generation, step)  # validates the range
        key = check_base_key(base_key)
        old = self._chains.get(generation)
        if old is not None and old.step == step:
            held = old.base_keys.get(step)
            if held is not None and hmac.compare_digest(held, key):
                return
        self._chains[generation] = _Chain(step, key)

    def remove_generation(self, generation: int) -> None:
        """Forget a generation and all its keys. Raises :class:`UnknownKey` if not held."""
        if self._chains.pop(generation, None) is None:
            raise UnknownKey(generation)

    @property
    def generations(self) -> frozenset[int]:
        """The generations held."""
        return frozenset(self._chains)

    def current_step(self, generation: int) -> int:
        """The committed step of a generation."""
        chain = self._chains.get(generation)
        if chain is None:
            raise UnknownKey(generation)
        return chain.step

    def find(self, kid: int) -> tuple[ReceiveSlot, Commit | None] | None:
        """The key for ``kid`` if its generation is held and its step is in reach."""
        generation, low = self.layout.split(kid)
        chain = self._chains.get(generation)
        if chain is None:
            return None
        mask = self.layout.steps - 1
        delta = (low - chain.step) & mask
        if delta <= self.max_steps:
            target = chain.step + delta
        elif self.layout.steps - delta <= self.keep_previous:
            target = chain.step - (self.layout.steps - delta)
        else:
            return None
        slot = chain.slots.get(target)
        if slot is not None:
            return slot, None
        new_keys: list[bytes] = []
        if target <= chain.step:
            base = chain.base_keys.get(target)
            if base is None:
                return None
        else:
            base = chain.base_keys[chain.step]
            for _ in range(delta):
                base = next_base_key(self.suite, base)
                new_keys.append(base)
        slot = ReceiveSlot(SFrameKey.derive(self.suite, base, kid))

        def commit() -> None:
            self._commit(generation, chain, target, slot, new_keys)

        return slot, commit

    def _commit(
        self, generation: int, chain: _Chain, target: int, slot: ReceiveSlot, new_keys: list[bytes]
    ) -> None:
        if self._chains.get(generation) is not chain:
            return  # the generation was replaced or removed meanwhile
        if target > chain.step:
            if target - len(new_keys) != chain.step:
                return  # the chain moved since this key was proposed
            for i, key in enumerate(new_keys, start=chain.step + 1):
                chain.base_keys[i] = key
            chain.step = target
        chain.slots[target] = slot
        floor = chain.step - self.keep_previous
        for step in [s for s in chain.base_keys if s < floor]:
            del chain.base_keys[step]
        for step in [s for s in chain.slots if s < floor]:
            del chain.slots[step]

    def __repr__(self) -> str:
        steps = {g: c.step for g, c in sorted(self._chains.items())}
        return (
            f"RatchetKeySource(suite=0x{self.suite.id:04x}, R={self.layout.ratchet_bits}, "
            f"max_steps={self.max_steps}, keep_previous={self.keep_previous}, steps={steps})"
        )


__all__ = [
    "RATCHET_LABEL",
    "RatchetKeySource",
    "RatchetLayout",
    "RatchetingSender",
    "next_base_key",
]
