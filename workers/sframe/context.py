"""SFrame encryption and decryption (RFC 9605 §4.4.3 and §4.4.4) with key contexts.

- :class:`SFrameKey` is the state for one (base key, KID, suite): the derived
  ``sframe_key``/``sframe_salt`` (§4.4.2), one reusable AEAD object and the
  precomputed KID part of the header. It seals and opens with a counter the caller
  gives; it is what the stateless :func:`framecrypt.sframe.protect` caches.
- :class:`SenderContext` holds the keys a sender encrypts with, each with its own
  monotonic counter starting at 0, so a (key, nonce) pair is never used twice
  (RFC 9605: each (base_key, KID, CTR) is used at most once).
- :class:`ReceiverContext` holds decrypt-only keys found by the KID of the header,
  an optional replay window per key, and optional :class:`KeySource` objects
  (ratchet, MLS) consulted for KIDs it does not hold. A key a source proposes is
  committed only after a frame authenticated under it.

Frames are ``header || AEAD.Encrypt(key, nonce, header || metadata, plaintext)``
with ``nonce = sframe_salt XOR CTR`` (RFC 9605 §4.4.3). No object here shows key
bytes in its repr, and no error message carries them.

Where the compiled extension runs (:mod:`framecrypt.workers.native`), an
:class:`SFrameKey` made outside ``native.using("python")`` also holds the C state of
its key (``framecrypt._native.SfKey``, every registered suite): its success paths
(seal, open, unprotect) run in one C call, and any other case (an error, a counter
or buffer the C side does not take) runs the code below, the reference, which
raises the typed error. The engine's native batch loop
(:mod:`framecrypt.workers.native_sframe`) opens with the table of
:meth:`ReceiverContext.native_table` and hands back what it accepted
(:meth:`ReceiverContext.accept_runs`).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag

from framecrypt.errors import (
    AuthenticationFailed,
    CounterExhausted,
    InvalidParameter,
    MalformedFrame,
    UnknownKey,
)
from framecrypt.workers.native import Gcm

from .aead import Aead, GcmAead, make_aead, native_key_state
from .header import BytesLike, decode_header, encode_with_prefix, kid_prefix
from .keyschedule import derive_key_salt
from .replay import DEFAULT_WINDOW, ReplayWindow
from .suites import CipherSuite, get_suite

Writable = bytearray | memoryview


class SFrameKey:
    """Encryption state for one (base key, KID, suite) (RFC 9605 §4.4.2–§4.4.4).

    Build it with :meth:`derive`. It does not track counters: the caller owns them
    and must never seal two different plaintexts under one counter.
    """

    __slots__ = (
        "_aead",
        "_cfg_shift",
        "_ctr_limit",
        "_gcm",
        "_hbase",
        "_native",
        "_nn",
        "_nt",
        "_prefix",
        "_salt",
        "_salt_int",
        "_small",
        "kid",
        "suite",
    )

    def __init__(self, suite: CipherSuite, kid: int, key: bytes, salt: bytes) -> None:
        """From already derived ``sframe_key`` and ``sframe_salt``; see :meth:`derive`."""
        if len(salt) != suite.nn:
            raise InvalidParameter("salt length does not match the cipher suite")
        self.suite = suite
        self.kid = kid
        cfg, kid_bits, klen = kid_prefix(kid)
        # Headers for CTR 0..7 are fixed per KID; longer ones are one int -> bytes:
        # ((prefix | (ctr_len - 1) << cfg_shift) << 8 * ctr_len) | ctr, hbase + ctr_len bytes.
        self._small = tuple(encode_with_prefix(cfg, kid_bits, klen, c) for c in range(8))
        self._cfg_shift = 8 * klen
        self._prefix = ((cfg | 0x08) << (8 * klen)) | kid_bits
        self._hbase = 1 + klen
        aead = make_aead(suite, key)
        self._aead: Aead = aead
        # GCM suites call AESGCM directly on the hot path.
        self._gcm: Gcm | None = aead.aesgcm if isinstance(aead, GcmAead) else None
        self._salt = salt
        self._salt_int = int.from_bytes(salt, "big")
        self._nn = suite.nn
        self._nt = suite.nt
        self._ctr_limit = suite.ctr_limit
        self._native: Any = native_key_state(suite, kid, key, salt, aead)

    @classmethod
    def derive(cls, suite: int | CipherSuite, base_key: BytesLike, kid: int) -> SFrameKey:
        """Run the key schedule of RFC 9605 §4.4.2 for ``kid`` and build the state."""
        cs = get_suite(suite)
        ks = derive_key_salt(cs, base_key, kid)
        return cls(cs, kid, ks.key, ks.salt)

    @property
    def tag_length(self) -> int:
        """Nt of the suite: bytes the AEAD adds."""
        return self._nt

    @property
    def native_key(self) -> Any:
        """The C state of this key (``framecrypt._native.SfKey``), None on the pure core."""
        return self._native

    @property
    def ctr_limit(self) -> int:
        """The largest counter this key can seal with."""
        return self._ctr_limit

    def same_key_as(self, other: SFrameKey) -> bool:
        """Whether both states come from the same base key, KID and suite (constant time)."""
        return (
            self.suite.id == other.suite.id
            and self.kid == other.kid
            and hmac.compare_digest(self._salt, other._salt)
        )

    def header(self, ctr: int) -> bytes:
        """The SFrame header (RFC 9605 §4.3) for this KID and ``ctr``.

        Raises :class:`CounterExhausted` past :attr:`ctr_limit`.
        """
        if ctr < 8:
            if ctr < 0:
                raise InvalidParameter("CTR must not be negative")
            return self._small[ctr]
        if ctr > self._ctr_limit:
            raise CounterExhausted(self.kid)
        clen = (ctr.bit_length() + 7) >> 3
        value = ((self._prefix | ((clen - 1) << self._cfg_shift)) << (8 * clen)) | ctr
        return value.to_bytes(self._hbase + clen, "big")

    def nonce(self, ctr: int) -> bytes:
        """``sframe_salt XOR encode_big_endian(CTR, Nn)`` (RFC 9605 §4.4.3)."""
        return (self._salt_int ^ ctr).to_bytes(self._nn, "big")

    def ciphertext_length(self, ctr: int, plaintext_length: int) -> int:
        """Length of the frame that sealing ``plaintext_length`` bytes at ``ctr`` gives."""
        return len(self.header(ctr)) + plaintext_length + self._nt

    def protect(self, ctr: int, plaintext: BytesLike, metadata: BytesLike = b"") -> bytes:
        """Seal one frame at counter ``ctr`` (RFC 9605 §4.4.3): ``header || ct || tag``.

        Raises :class:`CounterExhausted` if ``ctr`` exceeds :attr:`ctr_limit`.
        """
        nk = self._native
        if nk is not None:
            frame: bytes | None = nk.protect(ctr, plaintext, metadata)
            if frame is not None:
                return frame
        hdr = self.header(ctr)
        nonce = (self._salt_int ^ ctr).to_bytes(self._nn, "big")
        aad = hdr + metadata if metadata else hdr
        gcm = self._gcm
        if gcm is not None:
            return hdr + gcm.encrypt(nonce, plaintext, aad)
        return hdr + self._aead.seal(nonce, aad, plaintext)

    def protect_into(
        self, ctr: int, plaintext: BytesLike, out: Writable, metadata: BytesLike = b""
    ) -> int:
        """Seal one frame into ``out`` (from its start); return the frame's length.

        ``out`` must hold at least :meth:`ciphertext_length` bytes.
        """
        nk = self._native
        if nk is not None:
            n: int | None = nk.protect_into(ctr, plaintext, out, metadata)
            if n is not None:
                return n
        hdr = self.header(ctr)
        hlen = len(hdr)
        total = hlen + len(plaintext) + self._nt
        if len(out) < total:
            raise InvalidParameter("output buffer too small for the SFrame ciphertext")
        view = out if isinstance(out, memoryview) else memoryview(out)
        view[:hlen] = hdr
        nonce = (self._salt_int ^ ctr).to_bytes(self._nn, "big")
        aad = hdr + metadata if metadata else hdr
        gcm = self._gcm
        if gcm is not None:
            gcm.encrypt_into(nonce, plaintext, aad, view[hlen:total])
        else:
            self._aead.seal_into(nonce, aad, plaintext, view[hlen:total])
        return total

    def open_parsed(
        self, frame: BytesLike, header_length: int, ctr: int, metadata: BytesLike = b""
    ) -> bytes:
        """Open a frame whose header was already decoded to ``(self.kid, ctr, header_length)``.

        Raises :class:`MalformedFrame` if the body is shorter than the tag and
        :class:`AuthenticationFailed` if it does not authenticate.
        """
        nk = self._native
        if nk is not None:
            pt: bytes | None = nk.open(frame, header_length, ctr, metadata)
            if pt is not None:
                return pt
        if len(frame) - header_length < self._nt:
            raise MalformedFrame("frame shorter than the authentication tag")
        hdr = frame[:header_length]
        aad = bytes(hdr) + metadata if metadata else hdr
        nonce = (self._salt_int ^ ctr).to_bytes(self._nn, "big")
        body = memoryview(frame)[header_length:]
        gcm = self._gcm
        if gcm is not None:
            try:
                return gcm.decrypt(nonce, body, aad)
            except InvalidTag:
                raise AuthenticationFailed() from None
        return self._aead.open(nonce, aad, body)

    def open_parsed_into(
        self,
        frame: BytesLike,
        header_length: int,
        ctr: int,
        out: Writable,
        metadata: BytesLike = b"",
    ) -> int:
        """Like :meth:`open_parsed`, writing the plaintext at the start of ``out``; return
        its length."""
        nk = self._native
        if nk is not None:
            got: int | None = nk.open_into(frame, header_length, ctr, out, metadata)
            if got is not None:
                return got
        n = len(frame) - header_length - self._nt
        if n < 0:
            raise MalformedFrame("frame shorter than the authentication tag")
        if len(out) < n:
            raise InvalidParameter("output buffer too small for the plaintext")
        dest = (out if isinstance(out, memoryview) else memoryview(out))[:n]
        hdr = frame[:header_length]
        aad = bytes(hdr) + metadata if metadata else hdr
        nonce = (self._salt_int ^ ctr).to_bytes(self._nn, "big")
        body = memoryview(frame)[header_length:]
        gcm = self._gcm
        if gcm is not None:
            try:
                return gcm.decrypt_into(nonce, body, aad, dest)
            except InvalidTag:
                raise AuthenticationFailed() from None
        return self._aead.open_into(nonce, aad, body, dest)

    def unprotect(self, frame: BytesLike, metadata: BytesLike = b"") -> tuple[int, bytes]:
        """Open a frame sealed under this key; return ``(ctr, plaintext)``.

        Raises :class:`UnknownKey` if the header names another KID.
        """
        nk = self._native
        if nk is not None:
            got: tuple[int, bytes] | None = nk.unprotect(frame, metadata)
            if got is not None:
                return got
        kid, ctr, hlen = decode_header(frame)
        if kid != self.kid:
            raise UnknownKey(kid)
        return ctr, self.open_parsed(frame, hlen, ctr, metadata)

    def __repr__(self) -> str:
        return f"SFrameKey(suite=0x{self.suite.id:04x}, kid={self.kid})"


# --- sender ----------------------------------------------------------------------------


class _SendSlot:
    __slots__ = ("key", "next_ctr")

    def __init__(self, key: SFrameKey, next_ctr: int) -> None:
        self.key = key
        self.next_ctr = next_ctr


class SenderContext:
    """Encrypt-only keys by KID, each with a monotonic counter (RFC 9605 §4.4.3).

    The counter of a KID starts at ``next_ctr`` (0 by default) and goes up by one
    per frame; past the suite's limit :class:`CounterExhausted` is raised and a new
    key is needed. A counter is consumed before sealing, so a failed call never
    lets a later one reuse it.
    """

    __slots__ = ("_slots", "suite")

    def __init__(self, suite: int | CipherSuite) -> None:
        self.suite = get_suite(suite)
        self._slots: dict[int, _SendSlot] = {}

    def add_key(self, kid: int, base_key: BytesLike, *, next_ctr: int = 0) -> None:
        """Encrypt with ``base_key`` under ``kid`` from counter ``next_ctr``.

        Adding the same base key again for a KID keeps the higher counter; a
        different base key replaces the old one and starts at ``next_ctr``.
        """
        if next_ctr < 0:
            raise InvalidParameter("CTR must not be negative")
        key = SFrameKey.derive(self.suite, base_key, kid)
        old = self._slots.get(kid)
        if old is not None and old.key.same_key_as(key):
            old.next_ctr = max(old.next_ctr, next_ctr)
            return
        self._slots[kid] = _SendSlot(key, next_ctr)

    def remove_key(self, kid: int) -> None:
        """Forget ``kid``. Raises :class:`UnknownKey` if it is not held."""
        if self._slots.pop(kid, None) is None:
            raise UnknownKey(kid)

    def __contains__(self, kid: object) -> bool:
        return kid in self._slots

    @property
    def kids(self) -> frozenset[int]:
        """The KIDs this context can encrypt with."""
        return frozenset(self._slots)

    def key(self, kid: int) -> SFrameKey:
        """The :class:`SFrameKey` of ``kid`` (to seal at counters the caller owns)."""
        slot = self._slots.get(kid)
        if slot is None:
            raise UnknownKey(kid)
        return slot.key

    def next_ctr(self, kid: int) -> int:
        """The counter the next frame under ``kid`` will use (persist it before use)."""
        slot = self._slots.get(kid)
        if slot is None:
            raise UnknownKey(kid)
        return slot.next_ctr

    def _take(self, kid: int) -> tuple[SFrameKey, int]:
        slot = self._slots.get(kid)
        if slot is None:
            raise UnknownKey(kid)
        ctr = slot.next_ctr
        if ctr > slot.key.ctr_limit:
            raise CounterExhausted(kid)
        slot.next_ctr = ctr + 1
        return slot.key, ctr

    def ciphertext_length(self, kid: int, plaintext_length: int) -> int:
        """Length of the next frame under ``kid`` for a plaintext of that length."""
        slot = self._slots.get(kid)
        if slot is None:
            raise UnknownKey(kid)
        return slot.key.ciphertext_length(slot.next_ctr, plaintext_length)

    def protect(self, kid: int, plaintext: BytesLike, metadata: BytesLike = b"") -> bytes:
        """Seal the next frame under ``kid``."""
        key, ctr = self._take(kid)
        return key.protect(ctr, plaintext, metadata)

    def protect_into(
        self, kid: int, plaintext: BytesLike, out: Writable, metadata: BytesLike = b""
    ) -> int:
        """Seal the next frame under ``kid`` into ``out``; return its length."""
        key, ctr = self._take(kid)
        return key.protect_into(ctr, plaintext, out, metadata)

    def __repr__(self) -> str:
        return f"SenderContext(suite=0x{self.suite.id:04x}, kids={sorted(self._slots)})"


# --- receiver --------------------------------------------------------------------------


class ReceiveSlot:
    """A decrypt-only key and its replay window (set by the receiver on first use)."""

    __slots__ = ("key", "window")

    def __init__(self, key: SFrameKey, window: ReplayWindow | None = None) -> None:
        self.key = key
        self.window = window

    def __repr__(self) -> str:
        return f"ReceiveSlot({self.key!r}, {self.window!r})"


Commit = Callable[[], None]


class KeySource(Protocol):
    """Supplies keys for KIDs a :class:`ReceiverContext` does not hold (ratchet, MLS).

    ``find`` returns ``(slot, commit)`` or None. ``commit`` (if not None) is called
    only after a frame authenticated under ``slot.key``; until then the source must
    not change its state, as the header that named the KID is unauthenticated.
    """

    def find(self, kid: int) -> tuple[ReceiveSlot, Commit | None] | None: ...


class ReceiverContext:
    """Decrypt-only keys looked up by the KID of each frame (RFC 9605 §4.4.4).

    With ``replay_window`` > 0 (default 128) every key gets a
    :class:`~.replay.ReplayWindow`: a counter is inspected before the tag is
    checked and accepted only after; 0 turns replay checks off.
    """

    __slots__ = ("_slots", "_sources", "_window", "suite")

    def __init__(
        self,
        suite: int | CipherSuite,
        *,
        replay_window: int = DEFAULT_WINDOW,
        sources: Iterable[KeySource] = (),
    ) -> None:
        if replay_window < 0:
            raise InvalidParameter("replay window must be >= 0 (0 disables it)")
        self.suite = get_suite(suite)
        self._window = replay_window
        self._slots: dict[int, ReceiveSlot] = {}
        self._sources: list[KeySource] = list(sources)

    def add_key(self, kid: int, base_key: BytesLike) -> None:
        """Decrypt frames naming ``kid`` with ``base_key``.

        Adding the same base key again keeps the key's replay window; a different
        one replaces the key and starts a fresh window.
        """
        key = SFrameKey.derive(self.suite, base_key, kid)
        old = self._slots.get(kid)
        if old is not None and old.key.same_key_as(key):
            return
        self._slots[kid] = ReceiveSlot(key)

    def remove_key(self, kid: int) -> None:
        """Forget ``kid``. Raises :class:`UnknownKey` if it is not held."""
        if self._slots.pop(kid, None) is None:
            raise UnknownKey(kid)

    def raise_replay_floor(self, kid: int, ctr: int) -> None:
        """Refuse counters up to ``ctr`` for ``kid`` from now on (state handed over from
        another receiver). Raises :class:`UnknownKey` if ``kid`` is not held."""
        slot = self._slots.get(kid)
        if slot is None:
            raise UnknownKey(kid)
        window = self._window_of(slot)
        if window is not None:
            window.raise_floor(ctr)

    def highest_accepted(self) -> dict[int, int]:
        """The highest counter accepted so far per KID held (KIDs with none left out):
        what another receiver needs to keep refusing replays (:meth:`raise_replay_floor`)."""
        out = {}
        for kid, slot in self._slots.items():
            top = slot.window.highest if slot.window is not None else None
            if top is not None:
                out[kid] = top
        return out

    def add_source(self, source: KeySource) -> None:
        """Consult ``source`` for KIDs this context does not hold."""
        self._sources.append(source)

    def __contains__(self, kid: object) -> bool:
        return kid in self._slots

    @property
    def kids(self) -> frozenset[int]:
        """KIDs held directly (not those a source could supply)."""
        return frozenset(self._slots)

    def _lookup(self, kid: int) -> tuple[ReceiveSlot, Commit | None]:
        slot = self._slots.get(kid)
        if slot is not None:
            return slot, None
        for source in self._sources:
            found = source.find(kid)
            if found is not None:
                return found
        raise UnknownKey(kid)

    def _window_of(self, slot: ReceiveSlot) -> ReplayWindow | None:
        window = slot.window
        if window is None and self._window:
            window = slot.window = ReplayWindow(self._window)
        return window

    def unprotect(self, frame: BytesLike, metadata: BytesLike = b"") -> tuple[int, int, bytes]:
        """Open one frame; return ``(kid, ctr, plaintext)``.

        Raises :class:`MalformedFrame`, :class:`UnknownKey`, :class:`ReplayedFrame`
        or :class:`AuthenticationFailed`; on any of them nothing is committed.
        """
        kid, ctr, hlen = decode_header(frame)
        slot, commit = self._lookup(kid)
        window = self._window_of(slot)
        if window is not None:
            window.inspect(ctr)
        plaintext = slot.key.open_parsed(frame, hlen, ctr, metadata)
        if window is not None:
            window.accept(ctr)
        if commit is not None:
            commit()
        return kid, ctr, plaintext

    def unprotect_into(
        self, frame: BytesLike, out: Writable, metadata: BytesLike = b""
    ) -> tuple[int, int, int]:
        """Open one frame into ``out``; return ``(kid, ctr, plaintext_length)``.

        ``out`` needs ``len(frame) - header length - Nt`` bytes; on failure its
        content is unspecified.
        """
        kid, ctr, hlen = decode_header(frame)
        slot, commit = self._lookup(kid)
        window = self._window_of(slot)
        if window is not None:
            window.inspect(ctr)
        n = slot.key.open_parsed_into(frame, hlen, ctr, out, metadata)
        if window is not None:
            window.accept(ctr)
        if commit is not None:
            commit()
        return kid, ctr, n

    def native_table(self) -> dict[int, tuple[Any, int | None]]:
        """The keys of the native open loop (:mod:`framecrypt.workers.native_sframe`):
        ``{kid: (SfKey, floor)}`` for each KID held directly whose key has a C state;
        ``floor`` is None without a replay window, else the window's
        :attr:`~.replay.ReplayWindow.floor` (-1 before any accept, also for a window not
        made yet). The loop opens only counters above the floor (and above those it
        opened before), which :meth:`~.replay.ReplayWindow.inspect` never refuses, and
        leaves every other frame to :meth:`unprotect`. KIDs that only a
        :class:`KeySource` knows are not in it."""
        table: dict[int, tuple[Any, int | None]] = {}
        default = self._window
        for kid, slot in self._slots.items():
            nk = slot.key._native
            if nk is None:
                continue
            window = slot.window
            if window is not None:
                table[kid] = (nk, window.floor)
            else:
                table[kid] = (nk, -1 if default else None)
        return table

    def accept_runs(self, runs: Sequence[tuple[int, int, int]]) -> None:
        """Record what the native open loop opened with :meth:`native_table`'s keys:
        ``(kid, first, last)``, the counters ``first..last`` (in order per KID), as
        :meth:`unprotect` would have accepted them frame by frame."""
        for kid, first, last in runs:
            window = self._window_of(self._slots[kid])
            if window is not None:
                window.accept_run(first, last)

    def __repr__(self) -> str:
        return (
            f"ReceiverContext(suite=0x{self.suite.id:04x}, kids={sorted(self._slots)}, "
            f"sources={len(self._sources)}, replay_window={self._window})"
        )


__all__ = [
    "Commit",
    "KeySource",
    "ReceiveSlot",
    "ReceiverContext",
    "SFrameKey",
    "SenderContext",
]
