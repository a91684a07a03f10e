"""The wire form of key-exchange messages: lib-jitsi-meet's endpoint JSON envelope.

Every message is one JSON object ``{"type": "olm", "olm": {"type": KIND, "data": {…}}}``
(lib-jitsi-meet ``OlmAdapter``; the outer ``type`` is its ``JITSI_MEET_MUC_TYPE``). The
caller carries it over its own signaling (XMPP private message, websocket, data
channel) addressed to one participant; sender and recipient ids travel outside the
envelope, as in Jitsi.

======================  ================================================================
``olm.type``            ``olm.data``
======================  ================================================================
``session-init``        ``{idKey, otKey, uuid}``: curve25519 identity key and one-time
                        key (unpadded base64), request id; framecrypt adds ``edKey``
                        (ed25519, for SAS) which Jitsi ignores
``session-ack``         ``{ciphertext, uuid}``: an Olm *pre-key* message carrying the
                        responder's key-info; framecrypt adds ``edKey``
``key-info``            ``{ciphertext, uuid}``: the sender's media key
``key-info-ack``        ``{ciphertext, uuid}``: the ack (uuid of the key-info); carries
                        the acker's own key-info, as in Jitsi
``error``               ``{error}``: a short reason string
``sas-start``           ``{transactionId}``
``sas-accept``          ``{transactionId, commitment}``
``sas-key``             ``{transactionId, key}``: the ephemeral SAS curve25519 key
``sas-mac``             ``{transactionId, keys, mac: {keyId: mac}}``
``visitor-key``,        framecrypt extensions (Jitsi ignores unknown types):
``visitor-key-ack``,    ``{ciphertext, uuid}``; the visitor key, its ack, the E2EE ping
``ping``, ``pong``      and its echo
======================  ================================================================

``ciphertext`` is ``{type, body}`` as libolm's ``Session.encrypt`` returns it: ``type`` 0
(pre-key) or 1 (normal), ``body`` the Olm message in unpadded base64.

Plaintexts inside a ciphertext are JSON objects. Key-info (session-ack, key-info,
key-info-ack, visitor-key) is Jitsi's ``{"key": base64 | false, "keyIndex": n}`` or
``{}`` (no key to give); framecrypt adds ``"type"`` (the envelope type, so a ciphertext
cannot be relabelled) and ``"seq"`` (1, 2, … per channel direction, so a reordered or
replayed message is refused). Ping/pong plaintext: ``{"id": n}`` plus the same fields.

Envelopes and plaintexts come from peers: both are parsed by
:func:`framecrypt.keys.jsonlimits.loads` (size and nesting bounded, malformed input is
:class:`MalformedMessage`, never another exception).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from . import jsonlimits
from .errors import MalformedMessage

ENVELOPE_TYPE = "olm"
MAX_ENVELOPE_CHARS = 64 * 1024
_MAX_FIELD = 16 * 1024

SESSION_INIT = "session-init"
SESSION_ACK = "session-ack"
KEY_INFO = "key-info"
KEY_INFO_ACK = "key-info-ack"
ERROR = "error"
SAS_START = "sas-start"
SAS_ACCEPT = "sas-accept"
SAS_KEY = "sas-key"
SAS_MAC = "sas-mac"
VISITOR_KEY = "visitor-key"
VISITOR_KEY_ACK = "visitor-key-ack"
PING = "ping"
PONG = "pong"


class Message:
    """Base of every key-exchange message (frozen dataclasses below)."""

    __slots__ = ()
    KIND: ClassVar[str] = ""


@dataclass(frozen=True, slots=True)
class Ciphertext:
    """An Olm message as libolm's JS binding gives it: type 0 = pre-key, 1 = normal;
    ``body`` is unpadded base64. The repr shows the length only."""

    type: int
    body: str

    def __repr__(self) -> str:
        return f"Ciphertext(type={self.type}, {len(self.body)} chars)"


@dataclass(frozen=True, slots=True)
class SessionInit(Message):
    KIND: ClassVar[str] = SESSION_INIT
    id_key: str
    ot_key: str
    uuid: str
    ed_key: str | None = None


@dataclass(frozen=True, slots=True)
class Encrypted(Message):
    """A message whose content is an Olm ciphertext."""

    ciphertext: Ciphertext
    uuid: str


@dataclass(frozen=True, slots=True)
class SessionAck(Encrypted):
    KIND: ClassVar[str] = SESSION_ACK
    ed_key: str | None = None


@dataclass(frozen=True, slots=True)
class KeyInfo(Encrypted):
    KIND: ClassVar[str] = KEY_INFO


@dataclass(frozen=True, slots=True)
class KeyInfoAck(Encrypted):
    KIND: ClassVar[str] = KEY_INFO_ACK


@dataclass(frozen=True, slots=True)
class VisitorKey(Encrypted):
    KIND: ClassVar[str] = VISITOR_KEY


@dataclass(frozen=True, slots=True)
class VisitorKeyAck(Encrypted):
    KIND: ClassVar[str] = VISITOR_KEY_ACK


@dataclass(frozen=True, slots=True)
class Ping(Encrypted):
    KIND: ClassVar[str] = PING


@dataclass(frozen=True, slots=True)
class Pong(Encrypted):
    KIND: ClassVar[str] = PONG


@dataclass(frozen=True, slots=True)
class ErrorMessage(Message):
    KIND: ClassVar[str] = ERROR
    error: str


@dataclass(frozen=True, slots=True)
class SasStart(Message):
    KIND: ClassVar[str] = SAS_START
    transaction_id: str


@dataclass(frozen=True, slots=True)
class SasAccept(Message):
    KIND: ClassVar[str] = SAS_ACCEPT
    transaction_id: str
    commitment: str


@dataclass(frozen=True, slots=True)
class SasKey(Message):
    KIND: ClassVar[str] = SAS_KEY
    transaction_id: str
    key: str


@dataclass(frozen=True, slots=True)
class SasMac(Message):
    KIND: ClassVar[str] = SAS_MAC
    transaction_id: str
    keys: str
    mac: tuple[tuple[str, str], ...]


ENCRYPTED_KINDS: dict[str, type[Encrypted]] = {
    c.KIND: c for c in (SessionAck, KeyInfo, KeyInfoAck, VisitorKey, VisitorKeyAck, Ping, Pong)
}
SAS_KINDS = frozenset({SAS_START, SAS_ACCEPT, SAS_KEY, SAS_MAC})


# --- encoding ---------------------------------------------------------------------------


def to_dict(msg: Message) -> dict[str, Any]:
    """The envelope as a JSON-ready dict."""
    data: dict[str, Any]
    if isinstance(msg, SessionInit):
        data = {"idKey": msg.id_key, "otKey": msg.ot_key, "uuid": msg.uuid}
        if msg.ed_key is not None:
            data["edKey"] = msg.ed_key
    elif isinstance(msg, Encrypted):
        data = {"ciphertext": {"type": msg.ciphertext.type, "body": msg.ciphertext.body},
                "uuid": msg.uuid}
        if isinstance(msg, SessionAck) and msg.ed_key is not None:
            data["edKey"] = msg.ed_key
    elif isinstance(msg, ErrorMessage):
        data = {"error": msg.error}
    elif isinstance(msg, SasStart):
        data = {"transactionId": msg.transaction_id}
    elif isinstance(msg, SasAccept):
        data = {"commitment": msg.commitment, "transactionId": msg.transaction_id}
    elif isinstance(msg, SasKey):
        data = {"key": msg.key, "transactionId": msg.transaction_id}
    elif isinstance(msg, SasMac):
        data = {"keys": msg.keys, "mac": dict(msg.mac), "transactionId": msg.transaction_id}
    else:
        raise TypeError(f"not a key-exchange message: {type(msg).__name__}")
    return {"type": ENVELOPE_TYPE, "olm": {"type": msg.KIND, "data": data}}


def to_json(msg: Message) -> str:
    """The envelope as compact JSON text (what goes on the wire)."""
    return json.dumps(to_dict(msg), separators=(",", ":"), ensure_ascii=False)


# --- decoding ---------------------------------------------------------------------------


def is_olm(obj: object) -> bool:
    """True when ``obj`` (a parsed JSON value) is an Olm envelope (``type == "olm"``)."""
    return isinstance(obj, Mapping) and obj.get("type") == ENVELOPE_TYPE


def _str(data: Mapping[str, Any], name: str, *, optional: bool = False) -> Any:
    v = data.get(name)
    if v is None and optional:
        return None
    if not isinstance(v, str) or not v or len(v) > _MAX_FIELD:
        raise MalformedMessage(f"field {name!r} must be a non-empty string")
    return v


def _ciphertext(data: Mapping[str, Any]) -> Ciphertext:
    ct = data.get("ciphertext")
    if not isinstance(ct, Mapping):
        raise MalformedMessage("field 'ciphertext' must be an object")
    t = ct.get("type")
    if type(t) is not int or t not in (0, 1):
        raise MalformedMessage("ciphertext type must be 0 or 1")
    return Ciphertext(t, _str(ct, "body"))


def from_dict(obj: object) -> Message:
    """Parse a JSON-decoded envelope; raise :class:`MalformedMessage` if it is not one."""
    if not is_olm(obj):
        raise MalformedMessage("not an olm envelope")
    assert isinstance(obj, Mapping)
    olm = obj.get("olm")
    if not isinstance(olm, Mapping):
        raise MalformedMessage("field 'olm' must be an object")
    kind = olm.get("type")
    data = olm.get("data")
    if not isinstance(kind, str):
        raise MalformedMessage("olm.type must be a string")
    if not isinstance(data, Mapping):
        raise MalformedMessage("olm.data must be an object")
    if kind == SESSION_INIT:
        return SessionInit(_str(data, "idKey"), _str(data, "otKey"), _str(data, "uuid"),
                           _str(data, "edKey", optional=True))
    cls = ENCRYPTED_KINDS.get(kind)
    if cls is SessionAck:
        return SessionAck(_ciphertext(data), _str(data, "uuid"),
                          _str(data, "edKey", optional=True))
    if cls is not None:
        return cls(_ciphertext(data), _str(data, "uuid"))
    if kind == ERROR:
        err = data.get("error")
        return ErrorMessage(err[:200] if isinstance(err, str) else "error")
    if kind == SAS_START:
        return SasStart(_str(data, "transactionId"))
    if kind == SAS_ACCEPT:
        return SasAccept(_str(data, "transactionId"), _str(data, "commitment"))
    if kind == SAS_KEY:
        return SasKey(_str(data, "transactionId"), _str(data, "key"))
    if kind == SAS_MAC:
        mac = data.get("mac")
        if not isinstance(mac, Mapping) or not mac or len(mac) > 16:
            raise MalformedMessage("field 'mac' must be a small non-empty object")
        pairs = tuple(sorted((str(k), _str(mac, k)) for k in mac))
        return SasMac(_str(data, "transactionId"), _str(data, "keys"), pairs)
    raise MalformedMessage("unknown olm message type")


def from_json(text: str | bytes) -> Message:
    """Parse envelope JSON text (bounded to :data:`MAX_ENVELOPE_CHARS` and
    :data:`~framecrypt.keys.jsonlimits.MAX_DEPTH` nesting levels); any other input
    raises :class:`MalformedMessage`."""
    return from_dict(jsonlimits.loads(text, what="envelope", max_chars=MAX_ENVELOPE_CHARS))


__all__ = [
    "ENCRYPTED_KINDS",
    "ENVELOPE_TYPE",
    "ERROR",
    "KEY_INFO",
    "KEY_INFO_ACK",
    "MAX_ENVELOPE_CHARS",
    "PING",
    "PONG",
    "SAS_ACCEPT",
    "SAS_KEY",
    "SAS_KINDS",
    "SAS_MAC",
    "SAS_START",
    "SESSION_ACK",
    "SESSION_INIT",
    "VISITOR_KEY",
    "VISITOR_KEY_ACK",
    "Ciphertext",
    "Encrypted",
    "ErrorMessage",
    "KeyInfo",
    "KeyInfoAck",
    "Message",
    "Ping",
    "Pong",
    "SasAccept",
    "SasKey",
    "SasMac",
    "SasStart",
    "SessionAck",
    "SessionInit",
    "VisitorKey",
    "VisitorKeyAck",
    "from_dict",
    "from_json",
    "is_olm",
    "to_dict",
    "to_json",
]
