"""A participant's frame cryptor: key ring, ratchet-on-failure, failure tolerance,
SIF and LKTS handling. Sans-I/O: no clocks, no threads; events queue up and are
drained with :meth:`ParticipantCryptor.next_event` (aioquic style).

Differences from livekit-client, on purpose:

- on a decrypt failure the ratchet walks *forward one step per attempt* (r1, r2, …,
  up to ``ratchet_window``); livekit-client tries r1 on every attempt, so a receiver
  holding r0 never opens an r2 frame;
- the frame is parsed and unescaped once; livekit-client unescapes H.26x frames
  again on every retry and corrupts bodies that contain ``00 00 03``;
- a ratcheted key is committed only after a frame authenticated under it, and the
  candidate chain is cached per slot, so forged frames cost AES attempts, not KDFs;
- a key index marked invalid (failures over ``failure_tolerance``) still tries the
  held key, once: a frame that authenticates under it opens (and clears the mark).
  livekit-client drops such frames untried, so anyone in the media path (the SFU, a
  relay) could lock a participant out with ``failure_tolerance + 1`` forged frames.
  The mark stops the ratchet attempts only, so past the tolerance a forged frame
  costs one AES-GCM attempt and fails with :class:`KeyInvalidated`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from framecrypt.errors import (
    AuthenticationFailed,
    DroppedFrame,
    KeyInvalidated,
    UnknownKey,
)
from framecrypt.workers.native import NATIVE, is_native_key

from . import frame as _frame
from . import lkts, sif
from .codecs import check_codec
from .events import (
    DecryptionFailed,
    Event,
    KeyMarkedInvalid,
    KeyMissing,
    KeyRatcheted,
    SifDropped,
)
from .kdf import LIVEKIT_SALT, Kdf, resolve
from .keyring import KeyRing, KeySet


@dataclass(frozen=True, slots=True)
class CryptorOptions:
    """livekit-client ``KeyProviderOptions`` and friends. Defaults are livekit-client's
    (``ExternalE2EEKeyProvider`` uses ``ratchet_window=0, failure_tolerance=-1``)."""

    ratchet_window: int = 8
    failure_tolerance: int = 10
    keyring_size: int = 16
    ratchet_salt: bytes = LIVEKIT_SALT
    sif_trailer: bytes | None = None
    blank_allowlist: frozenset[bytes] = field(default=sif.DEFAULT_BLANK_SHA256)
    strip_lkts: bool = True
    jitsi: bool = False

    def __post_init__(self) -> None:
        if self.ratchet_window < 0:
            raise ValueError("ratchet_window must be >= 0")
        if not 1 <= self.keyring_size <= 256:
            raise ValueError("keyring_size must be 1..256")


class ParticipantCryptor:
    """Keys and state of one participant (sender side and receiver side)."""

    def __init__(self, options: CryptorOptions | None = None) -> None:
        self.options = options or CryptorOptions()
        self.ring = KeyRing(self.options.keyring_size)
        self._chains: dict[int, list[KeySet]] = {}
        self._events: deque[Event] = deque()
        self.attempts = 0  # AES-GCM attempts decrypt() made (held keys, ratchet candidates)

    def __repr__(self) -> str:
        return f"ParticipantCryptor({self.ring!r})"

    # --- events ---------------------------------------------------------------------

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def events(self) -> list[Event]:
        out = list(self._events)
        self._events.clear()
        return out

    # --- keys -----------------------------------------------------------------------

    def set_key(
        self,
        material: bytes | str,
        index: int = 0,
        *,
        kdf: str | None = None,
        make_current: bool = True,
    ) -> None:
        """Derive and store a key (PBKDF2 for passphrases: tens of ms)."""
        jitsi = self.options.jitsi
        raw, k = resolve(material, "hkdf" if jitsi else kdf, self.options.ratchet_salt)
        if jitsi:
            k = Kdf.jitsi()
        self.set_keyset(KeySet.derive(raw, k), index, make_current=make_current)

    def set_keyset(self, keyset: KeySet, index: int = 0, *, make_current: bool = True) -> None:
        slot = self.ring.slot(index)
        self.ring.set(slot, keyset, make_current)
        self._chains.pop(slot, None)
        self.ring.reset_failures(slot)

    def ratchet(self, index: int | None = None) -> bytes:
        """Ratchet the key at ``index`` (default: current) one step and return the new
        material (livekit's ``chainKey``)."""
        slot = self.ring.current_index if index is None else self.ring.slot(index)
        ks = self.ring.get(slot)
        if ks is None:
            raise UnknownKey(slot)
        chain = self._chains.get(slot)
        nxt = chain[0] if chain else ks.ratcheted()
        self.ring.set(slot, nxt, make_current=False)
        self._chains[slot] = chain[1:] if chain else []
        self.ring.reset_failures(slot)
        self._events.append(KeyRatcheted(slot, nxt.generation, on_decrypt=False))
        return nxt.material

    def remove_keys(self) -> None:
        self.ring.clear()
        self._chains.clear()

    # --- frames ---------------------------------------------------------------------

    def encrypt(
        self,
        data: bytes,
        *,
        codec: str,
        keyframe: bool,
        ssrc: int,
        timestamp: int,
        send_count: int,
        iv: bytes | None = None,
        metadata: lkts.FrameMetadata | None = None,
    ) -> bytes:
        """Seal with the current key. ``iv`` overrides the IV built from ``send_count``."""
        check_codec(codec)
        index = self.ring.current_index
        ks = self.ring.get(index)
        if ks is None:
            raise UnknownKey(index)
        if iv is None:
            make = _frame.jitsi_iv if self.options.jitsi else _frame.livekit_iv
            iv = make(ssrc, timestamp, send_count)
        out = _frame.seal(
            ks.aead, data, codec=codec, keyframe=keyframe, iv=iv, key_index=index,
            jitsi=self.options.jitsi,
        )
        if metadata is not None and codec != "opus" and out:
            out = lkts.append(out, metadata)
        return out

    def decrypt(self, data: bytes, *, codec: str, keyframe: bool | None = None) -> bytes:
        """Open one frame; typed errors: MalformedFrame, AuthenticationFailed,
        UnknownKey, KeyInvalidated, DroppedFrame (SIF not a known blank).
        No keyframe hint is needed: the frame type is read from the frame itself
        (:func:`.codecs.sealed_keyframe`), as a browser receiver does, so a caller that
        cannot tell never counts failures against a good key. An explicit ``keyframe``
        that disagrees is a checked hint, tried only if the payload's rule fails
        (:mod:`.frame`)."""
        check_codec(codec)
        opts = self.options
        if opts.strip_lkts and codec != "opus" and not opts.jitsi:
            data, _ = lkts.extract(data)
        if not data:
            return b""
        if sif.is_server_injected(data, opts.sif_trailer):
            assert opts.sif_trailer is not None
            payload = sif.strip(data, opts.sif_trailer)
            if sif.is_allowed_blank(payload, opts.blank_allowlist):
                return payload
            self._events.append(SifDropped())
            raise DroppedFrame("server-injected frame is not a known blank")
        index = _frame.key_index_of(data)
        slot = self.ring.slot(index)
        ring = self.ring
        ks = ring.get(slot)
        if ks is None:
            if self._invalid(slot):
                raise KeyInvalidated(index)
            self._events.append(KeyMissing(index))
            self._fail(slot)
            raise UnknownKey(index)
        if NATIVE is not None and is_native_key(ks.aead):
            # the extension takes the success path; anything else is the reference's
            pt = NATIVE.lk_open(ks.aead, data, *_frame.open_rules(codec, data, opts.jitsi))
            if pt is not None:
                self.attempts += 1
                ring.reset_failures(slot)
                return bytes(pt)
        sealed = _frame.parse(data, codec=codec, keyframe=keyframe, jitsi=opts.jitsi)
        self.attempts += 1
        try:
            out = sealed.open(ks.aead)
        except AuthenticationFailed:
            # past the tolerance: no ratchet attempts (forged frames cost one AES try)
            if self._invalid(slot):
                raise KeyInvalidated(index) from None
            ratcheted = self._open_ratcheted(sealed, slot, ks)
            if ratcheted is None:
                if not self._invalid(ring.current_index):  # (as livekit-client)
                    self._events.append(DecryptionFailed(index, ring.failures(slot) + 1))
                    self._fail(slot)
                raise
            out = ratcheted
        ring.reset_failures(slot)
        return out

    def _invalid(self, slot: int) -> bool:
        """Whether failures at ``slot`` passed the tolerance (marked invalid)."""
        tol = self.options.failure_tolerance
        return tol >= 0 and self.ring.failures(slot) > tol

    def _open_ratcheted(self, sealed: _frame.Sealed, slot: int, ks: KeySet) -> bytes | None:
        window = self.options.ratchet_window
        if window == 0 or not ks.material:
            return None
        chain = self._chains.setdefault(slot, [])
        for step in range(window):
            if step == len(chain):
                chain.append((chain[-1] if chain else ks).ratcheted())
            candidate = chain[step]
            self.attempts += 1
            try:
                out = sealed.open(candidate.aead)
            except AuthenticationFailed:
                continue
            self.ring.set(slot, candidate, make_current=True)
            self._chains[slot] = chain[step + 1 :]
            self._events.append(KeyRatcheted(slot, candidate.generation, on_decrypt=True))
            return out
        return None

    def _fail(self, slot: int) -> None:
        tol = self.options.failure_tolerance
        if tol < 0:
            return
        self.ring.record_failure(slot)
        if self.ring.failures(slot) == tol + 1:
            self._events.append(KeyMarkedInvalid(slot))
