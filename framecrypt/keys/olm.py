"""Pairwise Olm channels (vodozemac), the sans-I/O half of Jitsi's ``OlmAdapter``.

:class:`OlmIdentity` is a participant's Olm account: a curve25519 identity key (session
setup) and an ed25519 key (SAS MAC), published the way Jitsi publishes
``e2ee.idKey.*``. :class:`OlmChannel` is the state machine of one participant pair:

* the participant with the lower id calls :meth:`OlmChannel.initiate` and sends the
  ``session-init`` (identity key, a fresh one-time key, a uuid);
* the other side answers with :meth:`OlmChannel.accept`: it builds an *outbound*
  session and returns the ``session-ack``, an Olm pre-key message carrying its own
  key-info;
* the initiator :meth:`OlmChannel.complete`\\ s the inbound session from it;
* afterwards :meth:`OlmChannel.seal` / :meth:`OlmChannel.open` carry key-info, acks,
  visitor keys and pings.

Nothing here does I/O, reads a clock or logs. Randomness: vodozemac draws its own key
pairs from the OS CSPRNG; request ids come from the injected ``uuid_factory``.

Replay and order: a message seen before raises :class:`ReplayedMessage`
(``duplicate``) before it is decrypted. One older than the newest accepted raises
:class:`ReplayedMessage` (``out of order``), found two ways: from the Olm message itself
(its sender ratchet key and chain index, checked before decryption: Olm alone keeps
skipped message keys and old receiver chains, so it would decrypt a delayed message) and
from the per-direction sequence number every framecrypt plaintext carries along with its
envelope type. A ciphertext relabelled to another envelope type, or one that does not
decrypt, raises :class:`OlmError`. ``strict=False`` accepts plaintexts without these
fields (what lib-jitsi-meet sends); the Olm-level order check holds in both modes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid as _uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import vodozemac

from framecrypt.errors import MalformedFrame
from framecrypt.workers import leb128

from . import jsonlimits
from .envelope import (
    ENCRYPTED_KINDS,
    PING,
    PONG,
    SESSION_ACK,
    Ciphertext,
    Encrypted,
    SessionAck,
    SessionInit,
)
from .errors import MalformedMessage, OlmError, ReplayedMessage, UnexpectedMessage

MIN_KEY_BYTES = 16
MAX_KEY_BYTES = 64
MAX_KEY_INDEX = 2**31 - 1
_SEEN_LIMIT = 1024
_CHAIN_LIMIT = 64          # peer ratchet keys remembered (Olm keeps 5 receiver chains)


def b64_unpadded(data: bytes) -> str:
    """Unpadded standard base64, as libolm encodes keys and message bodies."""
    return base64.b64encode(data).rstrip(b"=").decode("ascii")


def b64_decode(text: str, what: str = "base64 field") -> bytes:
    """Decode standard base64 with or without padding (raise MalformedMessage)."""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedMessage(f"{what} is not base64") from None


def default_uuid() -> str:
    return str(_uuid.uuid4())


@dataclass(frozen=True, slots=True, repr=False)
class MediaKey:
    """A participant's media key: raw material (32 random bytes in Jitsi) and its key
    index. ``material=None`` is Jitsi's ``key: false`` (E2EE off). Never shown in a repr."""

    material: bytes | None
    index: int

    def __repr__(self) -> str:
        what = "disabled" if self.material is None else f"{len(self.material)} B"
        return f"MediaKey(index={self.index}, {what})"

    __str__ = __repr__


class OlmIdentity:
    """A participant's Olm account (vodozemac ``Account``)."""

    __slots__ = ("_account",)

    def __init__(self, account: vodozemac.Account | None = None) -> None:
        self._account = account if account is not None else vodozemac.Account()

    @property
    def curve25519(self) -> str:
        """The curve25519 identity key (unpadded base64): Jitsi's ``idKey``."""
        return self._account.curve25519_key.to_base64()

    @property
    def ed25519(self) -> str:
        """The ed25519 fingerprint key (unpadded base64), MACed in SAS verification."""
        return self._account.ed25519_key.to_base64()

    def identity_keys(self) -> dict[str, str]:
        """``{"curve25519": …, "ed25519": …}``: what Jitsi publishes in presence as
        ``e2ee.idKey.curve25519`` / ``e2ee.idKey.ed25519``. Public keys only."""
        return {"curve25519": self.curve25519, "ed25519": self.ed25519}

    def one_time_key(self) -> str:
        """Generate, publish and return one curve25519 one-time key."""
        self._account.generate_one_time_keys(1)
        keys = list(self._account.one_time_keys.values())
        self._account.mark_keys_as_published()
        if not keys:
            raise OlmError("no one-time key generated")
        return keys[-1].to_base64()

    def _outbound(self, id_key: str, ot_key: str) -> vodozemac.Session:
        try:
            ik = vodozemac.Curve25519PublicKey.from_base64(id_key)
            ok = vodozemac.Curve25519PublicKey.from_base64(ot_key)
        except Exception:
            raise MalformedMessage("identity or one-time key is not a curve25519 key") from None
        try:
            return self._account.create_outbound_session(ik, ok)
        except Exception:
            raise OlmError("outbound session creation failed") from None

    def _inbound(self, id_key: str, message: vodozemac.PreKeyMessage
                 ) -> tuple[vodozemac.Session, bytes]:
        try:
            ik = vodozemac.Curve25519PublicKey.from_base64(id_key)
        except Exception:
            raise MalformedMessage("identity key is not a curve25519 key") from None
        try:
            return self._account.create_inbound_session(ik, message)
        except Exception:
            raise OlmError("inbound session creation failed") from None

    def __repr__(self) -> str:
        return f"OlmIdentity(curve25519={self.curve25519[:8]}…)"


def _varint(body: bytes, i: int) -> tuple[int, int] | None:
    """A protobuf varint at ``body[i]``: ``(value, next index)``, None if cut or too long."""
    try:
        return leb128.decode(body, i, len(body))
    except MalformedFrame:
        return None


def prekey_identity_key(body: bytes) -> str | None:
    """The sender's curve25519 identity key inside an Olm pre-key message (version byte,
    then protobuf fields 1 one-time key, 2 base key, 3 identity key, 4 message)."""
    if len(body) < 2 or body[0] != 3:
        return None
    i = 1
    n = len(body)
    while i < n:
        got = _varint(body, i)
        if got is None:
            return None
        tag, i = got
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            while i < n and body[i] & 0x80:
                i += 1
            i += 1
            continue
        if wire != 2:
            return None
        got = _varint(body, i)
        if got is None:
            return None
        length, i = got
        value = body[i:i + length]
        i += length
        if len(value) != length:
            return None
        if field == 3 and length == 32:
            return b64_unpadded(value)
    return None


def _fields(body: bytes, start: int, end: int) -> dict[int, bytes | int] | None:
    """The protobuf fields in ``body[start:end]`` (varint and length-delimited only, the
    last occurrence wins); None if malformed."""
    out: dict[int, bytes | int] = {}
    i = start
    while i < end:
        got = _varint(body, i)
        if got is None:
            return None
        tag, i = got
        field, wire = tag >> 3, tag & 7
        got = _varint(body, i)
        if got is None or wire not in (0, 2):
            return None
        value, i = got
        if wire == 0:
            out[field] = value
            continue
        if i + value > end:
            return None
        out[field] = body[i:i + value]
        i += value
    return out


def olm_position(msg_type: int, body: bytes) -> tuple[bytes, int] | None:
    """Where an Olm message stands in its sender's stream: ``(ratchet key, chain
    index)`` of the normal message (for a pre-key message, the one inside it: field 4).
    A normal message is a version byte, protobuf fields 1 ratchet key, 2 chain index, 4
    ciphertext, then an 8-byte MAC. None if it cannot be read (it will not decrypt)."""
    if msg_type == 0:
        if len(body) < 2 or body[0] != 3:
            return None
        outer = _fields(body, 1, len(body))
        inner = outer.get(4) if outer is not None else None
        if not isinstance(inner, bytes):
            return None
        body = inner
    if len(body) < 10 or body[0] != 3:
        return None
    f = _fields(body, 1, len(body) - 8)
    if f is None:
        return None
    key, index = f.get(1), f.get(2)
    if not isinstance(key, bytes) or len(key) != 32 or not isinstance(index, int):
        return None
    return key, index


@dataclass(frozen=True, slots=True)
class Opened:
    """What one encrypted message said: its envelope kind and uuid, the key-info it
    carried (``None`` for ``{}``), and the ping id of a ping/pong."""

    kind: str
    uuid: str
    key: MediaKey | None = None
    ping_id: int | None = None


ChannelState = Literal["new", "initiated", "ready", "closed"]


def key_payload(key: MediaKey | None) -> dict[str, Any]:
    """Jitsi key-info plaintext: ``{"key": base64 | false, "keyIndex": n}`` or ``{}``."""
    if key is None:
        return {}
    value: str | bool = (base64.b64encode(key.material).decode("ascii")
                         if key.material is not None else False)
    return {"key": value, "keyIndex": key.index}


def parse_key_payload(obj: Mapping[str, Any]) -> MediaKey | None:
    """The key of a key-info plaintext (``None`` when it carries none)."""
    if "key" not in obj or "keyIndex" not in obj:
        return None
    idx = obj["keyIndex"]
    if type(idx) is not int or not 0 <= idx <= MAX_KEY_INDEX:
        raise MalformedMessage("keyIndex must be a non-negative integer")
    k = obj["key"]
    if k is False:
        return MediaKey(None, idx)
    if not isinstance(k, str):
        raise MalformedMessage("key must be base64 or false")
    raw = b64_decode(k, "key")
    if not MIN_KEY_BYTES <= len(raw) <= MAX_KEY_BYTES:
        raise MalformedMessage("key has a bad length")
    return MediaKey(raw, idx)


class OlmChannel:
    """The Olm session between ``local_id`` and ``peer_id`` (see the module doc).

    ``peer_curve25519`` / ``peer_ed25519``: the peer's identity keys as published in
    presence, if known; a session with another curve25519 key is refused. When not
    given they are learned from the session-init / session-ack (and are what SAS
    verification then checks)."""

    def __init__(self, identity: OlmIdentity, local_id: str, peer_id: str, *,
                 peer_curve25519: str | None = None, peer_ed25519: str | None = None,
                 strict: bool = True, uuid_factory: Callable[[], str] = default_uuid) -> None:
        if local_id == peer_id:
            raise ValueError("a channel needs two different participants")
        self.identity = identity
        self.local_id = local_id
        self.peer_id = peer_id
        self.initiator = local_id < peer_id
        self.peer_curve25519 = peer_curve25519
        self.peer_ed25519 = peer_ed25519
        self.strict = strict
        self.state: ChannelState = "new"
        self._uuid = uuid_factory
        self._session: vodozemac.Session | None = None
        self._init_uuid: str | None = None
        self._send_seq = 0
        self._recv_seq = 0
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        # the peer's Olm sender chains seen: ratchet key -> highest chain index; the
        # last one is the current chain
        self._chains: OrderedDict[bytes, int] = OrderedDict()

    def __repr__(self) -> str:
        return (f"OlmChannel({self.local_id!r}->{self.peer_id!r}, state={self.state}, "
                f"initiator={self.initiator})")

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def new_uuid(self) -> str:
        return self._uuid()

    # --- session setup ---------------------------------------------------------------

    def initiate(self) -> SessionInit:
        """The session-init (initiator side; once)."""
        if not self.initiator:
            raise UnexpectedMessage("the participant with the higher id does not initiate",
                                    self.peer_id)
        if self.state != "new":
            raise UnexpectedMessage("session already initiated", self.peer_id)
        self._init_uuid = self._uuid()
        self.state = "initiated"
        return SessionInit(self.identity.curve25519, self.identity.one_time_key(),
                           self._init_uuid, self.identity.ed25519)

    def accept(self, init: SessionInit, key: MediaKey | None) -> SessionAck:
        """Answer a session-init (responder side): build the outbound session and return
        the session-ack, whose pre-key message carries ``key`` (``None``: ``{}``)."""
        if self.initiator:
            raise UnexpectedMessage("session-init from the participant with the higher id",
                                    self.peer_id)
        if self.state != "new":
            raise UnexpectedMessage("session already established", self.peer_id)
        if self.peer_curve25519 is not None and init.id_key != self.peer_curve25519:
            raise OlmError("identity key differs from the published one", self.peer_id)
        if (self.peer_ed25519 is not None and init.ed_key is not None
                and init.ed_key != self.peer_ed25519):
            raise OlmError("ed25519 key differs from the published one", self.peer_id)
        session = self.identity._outbound(init.id_key, init.ot_key)
        self._session = session
        self.peer_curve25519 = init.id_key
        if self.peer_ed25519 is None:
            self.peer_ed25519 = init.ed_key
        self.state = "ready"
        ack = self.seal(SESSION_ACK, init.uuid, key=key)
        assert isinstance(ack, SessionAck)
        return SessionAck(ack.ciphertext, ack.uuid, self.identity.ed25519)

    def complete(self, ack: SessionAck) -> Opened:
        """Build the inbound session from the session-ack (initiator side) and return the
        responder's key-info it carried."""
        self._check_fresh(ack)
        if self.state == "ready":
            raise UnexpectedMessage("session already established", self.peer_id)
        if self.state != "initiated" or ack.uuid != self._init_uuid:
            raise UnexpectedMessage("session-ack with an unknown uuid", self.peer_id)
        if ack.ciphertext.type != 0:
            raise OlmError("session-ack is not a pre-key message", self.peer_id)
        body = b64_decode(ack.ciphertext.body, "ciphertext body")
        sender_key = prekey_identity_key(body)
        if sender_key is None:
            raise OlmError("session-ack is not a valid pre-key message", self.peer_id)
        if self.peer_curve25519 is not None and sender_key != self.peer_curve25519:
            raise OlmError("identity key differs from the published one", self.peer_id)
        try:
            prekey = vodozemac.AnyOlmMessage.from_parts(0, body).to_pre_key()
        except Exception:
            prekey = None
        if prekey is None:
            raise OlmError("session-ack is not a valid pre-key message", self.peer_id)
        session, plaintext = self.identity._inbound(sender_key, prekey)
        self._remember(ack)
        self._advance(olm_position(0, body))
        opened = self._parse(SESSION_ACK, ack.uuid, plaintext)
        if (self.peer_ed25519 is not None and ack.ed_key is not None
                and ack.ed_key != self.peer_ed25519):
            raise OlmError("ed25519 key differs from the published one", self.peer_id)
        self._session = session
        self.peer_curve25519 = sender_key
        if self.peer_ed25519 is None:
            self.peer_ed25519 = ack.ed_key
        self._init_uuid = None
        self.state = "ready"
        return opened

    def close(self) -> None:
        """Forget the session (the peer left)."""
        self._session = None
        self.state = "closed"

    # --- messages on an established session ------------------------------------------

    def seal(self, kind: str, uuid: str, *, key: MediaKey | None = None,
             ping_id: int | None = None) -> Encrypted:
        """Encrypt one message of ``kind`` (key-info, acks, visitor key, ping, pong)."""
        cls = ENCRYPTED_KINDS.get(kind)
        if cls is None:
            raise ValueError(f"not an encrypted message kind: {kind!r}")
        if self._session is None:
            raise UnexpectedMessage("no established session", self.peer_id)
        payload = key_payload(key)
        if ping_id is not None:
            payload["id"] = ping_id
        self._send_seq += 1
        payload["type"] = kind
        payload["seq"] = self._send_seq
        plaintext = json.dumps(payload, separators=(",", ":")).encode()
        msg_type, body = self._session.encrypt(plaintext).to_parts()
        if kind == SESSION_ACK:
            return SessionAck(Ciphertext(msg_type, b64_unpadded(body)), uuid)
        return cls(Ciphertext(msg_type, b64_unpadded(body)), uuid)

    def open(self, msg: Encrypted) -> Opened:
        """Decrypt and check one message received on the established session."""
        if isinstance(msg, SessionAck):
            return self.complete(msg)
        self._check_fresh(msg)
        if self._session is None or self.state != "ready":
            raise UnexpectedMessage("no established session", self.peer_id)
        body = b64_decode(msg.ciphertext.body, "ciphertext body")
        position = olm_position(msg.ciphertext.type, body)
        self._check_order(position)
        try:
            olm_msg = vodozemac.AnyOlmMessage.from_parts(msg.ciphertext.type, body)
            plaintext = self._session.decrypt(olm_msg)
        except Exception:
            raise OlmError("message does not decrypt", self.peer_id) from None
        self._remember(msg)
        self._advance(position)
        return self._parse(msg.KIND, msg.uuid, plaintext)

    # --- internals ---------------------------------------------------------------------

    @staticmethod
    def _fingerprint(msg: Encrypted) -> bytes:
        return hashlib.sha256(f"{msg.ciphertext.type}|{msg.ciphertext.body}".encode()).digest()

    def _check_fresh(self, msg: Encrypted) -> None:
        if self._fingerprint(msg) in self._seen:
            raise ReplayedMessage("duplicate", self.peer_id)

    def _check_order(self, position: tuple[bytes, int] | None) -> None:
        """Refuse a message from an older sender chain, or not past the newest index of
        the current one. A chain not seen before is the newest: the peer starts a chain
        only on a message of ours sent after we had seen its previous chain."""
        if position is None:
            return
        key, index = position
        newest = self._chains.get(key)
        if newest is None:
            return
        if key != next(reversed(self._chains)) or index <= newest:
            raise ReplayedMessage("out of order", self.peer_id)

    def _advance(self, position: tuple[bytes, int] | None) -> None:
        """Record a decrypted message's position (see :meth:`_check_order`)."""
        if position is None:
            return
        key, index = position
        self._chains[key] = max(index, self._chains.get(key, index))
        self._chains.move_to_end(key)
        if len(self._chains) > _CHAIN_LIMIT:
            self._chains.popitem(last=False)

    def _remember(self, msg: Encrypted) -> None:
        self._seen[self._fingerprint(msg)] = None
        if len(self._seen) > _SEEN_LIMIT:
            self._seen.popitem(last=False)

    def _parse(self, kind: str, uuid: str, plaintext: bytes) -> Opened:
        obj = jsonlimits.loads(plaintext, what="plaintext")
        if not isinstance(obj, dict):
            raise MalformedMessage("plaintext is not a JSON object")
        t = obj.get("type")
        seq = obj.get("seq")
        if self.strict or t is not None:
            if t != kind:
                raise OlmError("ciphertext belongs to another message type", self.peer_id)
        if self.strict or seq is not None:
            if type(seq) is not int or seq < 1:
                raise MalformedMessage("missing sequence number")
            if seq <= self._recv_seq:
                raise ReplayedMessage("out of order", self.peer_id)
            self._recv_seq = seq
        ping_id = None
        if kind in (PING, PONG):
            pid = obj.get("id")
            if type(pid) is not int or pid < 0:
                raise MalformedMessage("ping id must be a non-negative integer")
            ping_id = pid
        return Opened(kind, uuid, parse_key_payload(obj), ping_id)


__all__ = [
    "MediaKey",
    "OlmChannel",
    "OlmIdentity",
    "Opened",
    "b64_decode",
    "b64_unpadded",
    "key_payload",
    "olm_position",
    "parse_key_payload",
    "prekey_identity_key",
]
