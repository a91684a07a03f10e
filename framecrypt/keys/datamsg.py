"""End-to-end encrypted data messages (chat, data-channel payloads) under the sender's
current media key, so that chat is as private as the media.

**LiveKit layout** (livekit-client 2.23.0 ``e2ee/worker/DataCryptor.ts``, read for its
facts): AES-GCM with the *same* AES key the sender's frames use (derived from its
current key material), 16-byte tag appended, **no AAD**, and a 12-byte IV
``random u32 ‖ t u32 ‖ (t − (sendCount mod 0xFFFF)) u32`` (big-endian; ``t`` the
sender's millisecond clock, ``performance.now()`` in the browser; ``sendCount`` one
counter per sender). The result travels as protobuf ``livekit.EncryptedPacket``
``{encryption_type #1, iv #2, key_index #3, encrypted_value #4}`` (livekit-client
2.23.0 leaves ``encryption_type`` unset, i.e. 0; we send the same and accept 0 or
GCM = 1); the
plaintext is a serialized ``livekit.EncryptedPacketPayload`` (``user`` #1 =
``UserPacket{payload #2, topic #4}``, ``chat_message`` #3 = ``ChatMessage{id #1,
timestamp #2, message #4}``): :func:`user_payload` / :func:`chat_payload` /
:func:`parse_payload` build and read the two common ones.

**SFrame variant**: the payload sealed as one RFC 9605 SFrame message with the sender's
key material as base key, ``KID`` = key index and ``CTR`` = a per-sender counter
(suite 0x0004 by default, optional metadata as AAD).

Pure functions take the randomness (``random32``) and the time (``now_ms``) as
parameters. :class:`DataSender` / :class:`DataReceiver` (LiveKit layout) and
:class:`SFrameDataSender` / :class:`SFrameDataReceiver` keep the counters, a per-sender
key ring with ratchet-on-failure (the sender may have ratcheted its key when someone
joined) and replay protection: a LiveKit IV seen before, or whose time field lies more
than ``replay_window_ms`` behind the newest one accepted from that sender, raises
:class:`~framecrypt.errors.ReplayedFrame`; SFrame uses the RFC 9605 counter window.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from framecrypt import sframe
from framecrypt.errors import (
    AuthenticationFailed,
    InvalidKeyMaterial,
    MalformedFrame,
    ReplayedFrame,
    UnknownKey,
)
from framecrypt.workers import leb128
from framecrypt.workers.livekit.kdf import Kdf

from .olm import MediaKey

ENCRYPTION_GCM = 1
IV_LENGTH = 12
TAG_LENGTH = 16
U32 = 0xFFFFFFFF
DEFAULT_SFRAME_SUITE = 0x0004


def kdf_for(format: Literal["jitsi", "livekit"]) -> Kdf:
    """The key schedule of a format: Jitsi HKDF, or LiveKit HKDF for raw bytes."""
    return Kdf.jitsi() if format == "jitsi" else Kdf.livekit("hkdf")


# --- protobuf (the few messages we need) -------------------------------------------------


def _len_field(num: int, value: bytes) -> bytes:
    return leb128.encode(num << 3 | 2) + leb128.encode(len(value)) + value


def _int_field(num: int, value: int) -> bytes:
    return leb128.encode(num << 3) + leb128.encode(value)


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """Yield ``(field number, value)`` of a protobuf message (varint and
    length-delimited wire types, plus skipping fixed32/fixed64)."""
    i, n = 0, len(data)

    def varint() -> int:
        nonlocal i
        v, i = leb128.decode(data, i, n)
        return v

    while i < n:
        tag = varint()
        num, wire = tag >> 3, tag & 7
        if wire == 0:
            yield num, varint()
        elif wire == 2:
            length = varint()
            if i + length > n:
                raise MalformedFrame("truncated protobuf field")
            yield num, data[i:i + length]
            i += length
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
            if i > n:
                raise MalformedFrame("truncated protobuf field")
        else:
            raise MalformedFrame("unsupported protobuf wire type")


@dataclass(frozen=True, slots=True, repr=False)
class EncryptedPacket:
    """``livekit.EncryptedPacket``: what goes into ``DataPacket.encrypted_packet``."""

    iv: bytes
    key_index: int
    payload: bytes
    encryption_type: int = 0

    def __repr__(self) -> str:
        return (f"EncryptedPacket(key_index={self.key_index}, iv={len(self.iv)} B, "
                f"payload={len(self.payload)} B)")

    def to_bytes(self) -> bytes:
        out = b""
        if self.encryption_type:
            out += _int_field(1, self.encryption_type)
        if self.iv:
            out += _len_field(2, self.iv)
        if self.key_index:
            out += _int_field(3, self.key_index)
        if self.payload:
            out += _len_field(4, self.payload)
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> EncryptedPacket:
        enc, iv, kid, payload = 0, b"", 0, b""
        for num, value in _fields(bytes(data)):
            if num == 1 and isinstance(value, int):
                enc = value
            elif num == 2 and isinstance(value, bytes):
                iv = value
            elif num == 3 and isinstance(value, int):
                kid = value & U32
            elif num == 4 and isinstance(value, bytes):
                payload = value
        if enc not in (0, ENCRYPTION_GCM):
            raise MalformedFrame("not a GCM encrypted packet")
        if len(iv) != IV_LENGTH:
            raise MalformedFrame("IV must be 12 bytes")
        return cls(iv, kid, payload, enc)


def user_payload(payload: bytes, topic: str | None = None) -> bytes:
    """``EncryptedPacketPayload{user: UserPacket{payload, topic}}`` bytes."""
    user = _len_field(2, payload) if payload else b""
    if topic is not None:
        user += _len_field(4, topic.encode())
    return _len_field(1, user)


def chat_payload(message: str, *, id: str, timestamp_ms: int) -> bytes:
    """``EncryptedPacketPayload{chat_message: ChatMessage{id, timestamp, message}}``."""
    chat = _len_field(1, id.encode()) + _int_field(2, timestamp_ms) + _len_field(
        4, message.encode())
    return _len_field(3, chat)


@dataclass(frozen=True, slots=True, repr=False)
class DataPayload:
    """A decoded ``EncryptedPacketPayload``: ``kind`` "user" (``data``, ``topic``) or
    "chat" (``text``, ``id``, ``timestamp_ms``), or "other" (not decoded)."""

    kind: str
    data: bytes = b""
    topic: str | None = None
    text: str = ""
    id: str = ""
    timestamp_ms: int = 0

    def __repr__(self) -> str:
        return f"DataPayload({self.kind}, {len(self.data) or len(self.text)} units)"


def parse_payload(plaintext: bytes) -> DataPayload:
    """Decode the ``user`` and ``chat_message`` cases of ``EncryptedPacketPayload``."""
    try:
        for num, value in _fields(plaintext):
            if num == 1 and isinstance(value, bytes):
                data, topic = b"", None
                for n2, v2 in _fields(value):
                    if n2 == 2 and isinstance(v2, bytes):
                        data = v2
                    elif n2 == 4 and isinstance(v2, bytes):
                        topic = v2.decode()
                return DataPayload("user", data=data, topic=topic)
            if num == 3 and isinstance(value, bytes):
                text, mid, ts = "", "", 0
                for n2, v2 in _fields(value):
                    if n2 == 1 and isinstance(v2, bytes):
                        mid = v2.decode()
                    elif n2 == 2 and isinstance(v2, int):
                        ts = v2
                    elif n2 == 4 and isinstance(v2, bytes):
                        text = v2.decode()
                return DataPayload("chat", text=text, id=mid, timestamp_ms=ts)
    except UnicodeDecodeError:
        raise MalformedFrame("payload string is not UTF-8") from None
    return DataPayload("other")


# --- the LiveKit data-packet layout (pure) ---------------------------------------------


def data_iv(random32: int, now_ms: int, send_count: int) -> bytes:
    """``random ‖ t ‖ (t − sendCount mod 0xFFFF)``, three big-endian u32."""
    t = int(now_ms) & U32
    return struct.pack(">III", random32 & U32, t, (t - send_count % 0xFFFF) & U32)


def encrypt_data(plaintext: bytes, *, key: bytes, key_index: int, random32: int, now_ms: int,
                 send_count: int) -> EncryptedPacket:
    """Seal a data payload as livekit-client's ``DataCryptor.encrypt`` (``key``: the
    16/32-byte AES key of the sender's current frame key)."""
    if len(key) not in (16, 32):
        raise InvalidKeyMaterial("AES key must be 16 or 32 bytes")
    iv = data_iv(random32, now_ms, send_count)
    return EncryptedPacket(iv, key_index, AESGCM(key).encrypt(iv, bytes(plaintext), None))


def decrypt_data(packet: EncryptedPacket, *, key: bytes) -> bytes:
    """Open a data packet (no AAD). Raises :class:`AuthenticationFailed`."""
    if len(key) not in (16, 32):
        raise InvalidKeyMaterial("AES key must be 16 or 32 bytes")
    if len(packet.iv) != IV_LENGTH or len(packet.payload) < TAG_LENGTH:
        raise MalformedFrame("data packet too short")
    try:
        return AESGCM(key).decrypt(packet.iv, packet.payload, None)
    except InvalidTag:
        raise AuthenticationFailed() from None


# --- the SFrame variant (pure) ----------------------------------------------------------


def sframe_seal_data(plaintext: bytes, *, material: bytes, kid: int, ctr: int,
                     suite: int = DEFAULT_SFRAME_SUITE, aad: bytes = b"") -> bytes:
    """One SFrame message (RFC 9605): base key = the sender's key material."""
    return sframe.protect(suite, material, kid, ctr, bytes(plaintext), aad)


def sframe_open_data(data: bytes, *, material: bytes, suite: int = DEFAULT_SFRAME_SUITE,
                     aad: bytes = b"") -> tuple[int, int, bytes]:
    """``(kid, ctr, plaintext)`` of an SFrame data message (no replay check)."""
    return sframe.unprotect(suite, material, bytes(data), aad)


# --- stateful helpers -------------------------------------------------------------------


class _Keys:
    """Per-sender key rings (slot -> material) with ratchet-on-failure."""

    def __init__(self, kdf: Kdf, keyring_size: int, ratchet_window: int) -> None:
        self.kdf = kdf
        self.size = keyring_size
        self.window = ratchet_window
        self._rings: dict[str, dict[int, bytes]] = {}

    def set(self, sender: str, key: MediaKey) -> None:
        if key.material is None:
            self._rings.get(sender, {}).pop(key.index % self.size, None)
            return
        self._rings.setdefault(sender, {})[key.index % self.size] = bytes(key.material)

    def remove(self, sender: str) -> None:
        self._rings.pop(sender, None)

    def candidates(self, sender: str, index: int) -> Iterator[bytes]:
        material = self._rings.get(sender, {}).get(index % self.size)
        if material is None:
            raise UnknownKey(index)
        yield material
        for _ in range(self.window):
            material = self.kdf.ratchet(material)
            yield material

    def commit(self, sender: str, index: int, material: bytes) -> None:
        self._rings.setdefault(sender, {})[index % self.size] = material


class IvReplayGuard:
    """Replay protection for the LiveKit layout, per sender: refuses an IV seen before
    and one whose time field lies more than ``window_ms`` behind the newest accepted
    (32-bit serial arithmetic). Remembers at most ``max_entries`` IVs."""

    __slots__ = ("_highest", "_seen", "max_entries", "window_ms")

    def __init__(self, window_ms: int = 30_000, max_entries: int = 4096) -> None:
        self.window_ms = window_ms
        self.max_entries = max_entries
        self._highest: int | None = None
        self._seen: OrderedDict[tuple[int, bytes], int] = OrderedDict()

    @staticmethod
    def _time(iv: bytes) -> int:
        return int.from_bytes(iv[4:8], "big")

    def inspect(self, key_index: int, iv: bytes) -> None:
        t = self._time(iv)
        if (key_index, iv) in self._seen:
            raise ReplayedFrame(t)
        if self._highest is not None:
            behind = (self._highest - t) & U32
            if self.window_ms < behind < 0x80000000:
                raise ReplayedFrame(t)

    def accept(self, key_index: int, iv: bytes) -> None:
        t = self._time(iv)
        if self._highest is None or 0 < ((t - self._highest) & U32) < 0x80000000:
            self._highest = t
        self._seen[(key_index, iv)] = t
        highest = self._highest
        while self._seen:
            old_t = next(iter(self._seen.values()))
            too_old = self.window_ms < ((highest - old_t) & U32) < 0x80000000
            if too_old or len(self._seen) > self.max_entries:
                self._seen.popitem(last=False)
            else:
                break


class DataSender:
    """Seal data payloads with our current media key (LiveKit layout). ``now_ms`` and
    ``random32`` are passed in; the send counter lives here."""

    def __init__(self, kdf: Kdf | None = None, *, keyring_size: int = 16) -> None:
        self.kdf = kdf if kdf is not None else Kdf.jitsi()
        self.keyring_size = keyring_size
        self.send_count = 0
        self._aes: tuple[bytes, bytes] | None = None

    def __repr__(self) -> str:
        return f"DataSender(send_count={self.send_count})"

    def _key(self, material: bytes) -> bytes:
        if self._aes is None or self._aes[0] != material:
            self._aes = (material, self.kdf.derive_key(material))
        return self._aes[1]

    def seal(self, plaintext: bytes, key: MediaKey, *, now_ms: int,
             random32: int) -> EncryptedPacket:
        if key.material is None:
            raise InvalidKeyMaterial("no media key to seal with")
        pkt = encrypt_data(plaintext, key=self._key(key.material),
                           key_index=key.index % self.keyring_size, random32=random32,
                           now_ms=now_ms, send_count=self.send_count)
        self.send_count += 1
        return pkt


class DataReceiver:
    """Open data payloads from each sender (LiveKit layout) with that sender's keys, a
    ratchet-on-failure window and an :class:`IvReplayGuard` per sender."""

    def __init__(self, kdf: Kdf | None = None, *, keyring_size: int = 16,
                 ratchet_window: int = 8, replay_window_ms: int = 30_000) -> None:
        self._keys = _Keys(kdf if kdf is not None else Kdf.jitsi(), keyring_size,
                           ratchet_window)
        self.replay_window_ms = replay_window_ms
        self._guards: dict[str, IvReplayGuard] = {}

    def __repr__(self) -> str:
        return f"DataReceiver(senders={len(self._keys._rings)})"

    def set_key(self, sender: str, key: MediaKey) -> None:
        self._keys.set(sender, key)

    def remove(self, sender: str) -> None:
        self._keys.remove(sender)
        self._guards.pop(sender, None)

    def open(self, sender: str, packet: EncryptedPacket | bytes) -> bytes:
        pkt = packet if isinstance(packet, EncryptedPacket) else EncryptedPacket.from_bytes(
            packet)
        guard = self._guards.get(sender)
        if guard is None:
            guard = self._guards[sender] = IvReplayGuard(self.replay_window_ms)
        guard.inspect(pkt.key_index, pkt.iv)
        for steps, material in enumerate(self._keys.candidates(sender, pkt.key_index)):
            try:
                plaintext = decrypt_data(pkt, key=self._keys.kdf.derive_key(material))
            except AuthenticationFailed:
                continue
            if steps:
                self._keys.commit(sender, pkt.key_index, material)
            guard.accept(pkt.key_index, pkt.iv)
            return plaintext
        raise AuthenticationFailed()


class SFrameDataSender:
    """Seal data payloads as SFrame messages (KID = key index, CTR = our counter)."""

    def __init__(self, *, suite: int = DEFAULT_SFRAME_SUITE, first_ctr: int = 0) -> None:
        self.suite = suite
        self.ctr = first_ctr

    def __repr__(self) -> str:
        return f"SFrameDataSender(suite=0x{self.suite:04x}, ctr={self.ctr})"

    def seal(self, plaintext: bytes, key: MediaKey, *, aad: bytes = b"") -> bytes:
        if key.material is None:
            raise InvalidKeyMaterial("no media key to seal with")
        out = sframe_seal_data(plaintext, material=key.material, kid=key.index, ctr=self.ctr,
                               suite=self.suite, aad=aad)
        self.ctr += 1
        return out


class SFrameDataReceiver:
    """Open SFrame data messages per sender with ratchet-on-failure and the RFC 9605
    replay window per (sender, KID)."""

    def __init__(self, kdf: Kdf | None = None, *, suite: int = DEFAULT_SFRAME_SUITE,
                 keyring_size: int = 16, ratchet_window: int = 8,
                 replay_window: int = 128) -> None:
        self.suite = suite
        self._keys = _Keys(kdf if kdf is not None else Kdf.jitsi(), keyring_size,
                           ratchet_window)
        self.replay_window = replay_window
        self._windows: dict[tuple[str, int], sframe.ReplayWindow] = {}

    def __repr__(self) -> str:
        return f"SFrameDataReceiver(suite=0x{self.suite:04x})"

    def set_key(self, sender: str, key: MediaKey) -> None:
        self._keys.set(sender, key)

    def remove(self, sender: str) -> None:
        self._keys.remove(sender)
        for k in [k for k in self._windows if k[0] == sender]:
            del self._windows[k]

    def open(self, sender: str, data: bytes, *, aad: bytes = b"") -> bytes:
        kid, ctr, _ = sframe.decode_header(bytes(data))
        win = self._windows.get((sender, kid))
        if win is None:
            win = self._windows[(sender, kid)] = sframe.ReplayWindow(self.replay_window)
        win.inspect(ctr)
        for steps, material in enumerate(self._keys.candidates(sender, kid)):
            try:
                _, _, plaintext = sframe_open_data(data, material=material, suite=self.suite,
                                                   aad=aad)
            except AuthenticationFailed:
                continue
            if steps:
                self._keys.commit(sender, kid, material)
            win.accept(ctr)
            return plaintext
        raise AuthenticationFailed()


__all__ = [
    "DEFAULT_SFRAME_SUITE",
    "ENCRYPTION_GCM",
    "IV_LENGTH",
    "DataPayload",
    "DataReceiver",
    "DataSender",
    "EncryptedPacket",
    "IvReplayGuard",
    "SFrameDataReceiver",
    "SFrameDataSender",
    "chat_payload",
    "data_iv",
    "decrypt_data",
    "encrypt_data",
    "kdf_for",
    "parse_payload",
    "sframe_open_data",
    "sframe_seal_data",
    "user_payload",
]
