"""SAS verification of an Olm channel, Matrix style, over vodozemac's ``Sas``.

The message flow is lib-jitsi-meet's (itself the Matrix ``m.sas.v1`` flow)::

    initiator                                   responder
    sas-start {transactionId}            ──▶
                                          ◀──   sas-accept {transactionId, commitment}
    sas-key {transactionId, key}         ──▶                  commitment = sha256(pub ‖ start)
                                          ◀──   sas-key {transactionId, key}
    (checks the commitment)
    both: 6 SAS bytes → 7 emoji (42 bits, 6 bits each, Matrix table) and 3 numbers
    (13 bits each + 1000); the users compare and confirm
    sas-mac {transactionId, keys, mac}   ◀─▶    MAC of the sender's identity keys

Two styles (``style``):

* ``"framecrypt"`` (default): the SAS info string binds both participants' ids,
  curve25519 identity keys *as each side sees them* (the keys the Olm session was built
  with), SAS public keys and the transaction id, so a man in the middle who swapped an
  identity key yields different emoji even if he relays the SAS messages untouched; the
  MAC covers both the ed25519 and the curve25519 identity key (Matrix
  ``hkdf-hmac-sha256.v2``: correct base64).
* ``"jitsi"``: lib-jitsi-meet's exact strings (info ``initId|initPub|respId|respPub``,
  ``Jitsi-KEY_VERIFICATION_MAC`` / ``Jitsi-KEY_IDS``, libolm's legacy base64 MAC, only
  the ed25519 key). It does not bind the Olm identity key: an Olm-layer man in the
  middle stays invisible (tested).

The commitment is ``base64(sha256(pubkey ‖ JSON(start)))`` with ``start =
{"transactionId": id}`` in compact JSON, as lib-jitsi-meet computes it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import vodozemac

from .envelope import Message, SasAccept, SasKey, SasMac, SasStart
from .errors import UnexpectedMessage, VerificationFailed
from .olm import b64_unpadded, default_uuid

SasStyle = Literal["framecrypt", "jitsi"]
SAS_BYTES = 6

# The Matrix SAS emoji table (spec: "SAS method: emoji"), index -> (emoji, description).
EMOJI: tuple[tuple[str, str], ...] = (
    ("\U0001F436", "Dog"), ("\U0001F431", "Cat"), ("\U0001F981", "Lion"),
    ("\U0001F40E", "Horse"), ("\U0001F984", "Unicorn"), ("\U0001F437", "Pig"),
    ("\U0001F418", "Elephant"), ("\U0001F430", "Rabbit"), ("\U0001F43C", "Panda"),
    ("\U0001F413", "Rooster"), ("\U0001F427", "Penguin"), ("\U0001F422", "Turtle"),
    ("\U0001F41F", "Fish"), ("\U0001F419", "Octopus"), ("\U0001F98B", "Butterfly"),
    ("\U0001F337", "Flower"), ("\U0001F333", "Tree"), ("\U0001F335", "Cactus"),
    ("\U0001F344", "Mushroom"), ("\U0001F30F", "Globe"), ("\U0001F319", "Moon"),
    ("\u2601\ufe0f", "Cloud"), ("\U0001F525", "Fire"), ("\U0001F34C", "Banana"),
    ("\U0001F34E", "Apple"), ("\U0001F353", "Strawberry"), ("\U0001F33D", "Corn"),
    ("\U0001F355", "Pizza"), ("\U0001F382", "Cake"), ("\u2764\ufe0f", "Heart"),
    ("\U0001F600", "Smiley"), ("\U0001F916", "Robot"), ("\U0001F3A9", "Hat"),
    ("\U0001F453", "Glasses"), ("\U0001F527", "Spanner"), ("\U0001F385", "Santa"),
    ("\U0001F44D", "Thumbs Up"), ("\u2602\ufe0f", "Umbrella"), ("\u231b", "Hourglass"),
    ("\u23f0", "Clock"), ("\U0001F381", "Gift"), ("\U0001F4A1", "Light Bulb"),
    ("\U0001F4D5", "Book"), ("\u270f\ufe0f", "Pencil"), ("\U0001F4CE", "Paperclip"),
    ("\u2702\ufe0f", "Scissors"), ("\U0001F512", "Lock"), ("\U0001F511", "Key"),
    ("\U0001F528", "Hammer"), ("\u260e\ufe0f", "Telephone"), ("\U0001F3C1", "Flag"),
    ("\U0001F682", "Train"), ("\U0001F6B2", "Bicycle"), ("\u2708\ufe0f", "Aeroplane"),
    ("\U0001F680", "Rocket"), ("\U0001F3C6", "Trophy"), ("\u26bd", "Ball"),
    ("\U0001F3B8", "Guitar"), ("\U0001F3BA", "Trumpet"), ("\U0001F514", "Bell"),
    ("\u2693", "Anchor"), ("\U0001F3A7", "Headphones"), ("\U0001F4C1", "Folder"),
    ("\U0001F4CC", "Pin"),
)
# lib-jitsi-meet's table (SAS.ts) differs from the spec at two symbols: index 30 is
# U+1F642 (spec: U+1F600) and index 60 is U+2693 U+FE0F (spec: U+2693). A Jitsi-style
# SAS shows Jitsi's, so both users see the same symbols (tests/test_interop_olm.py).
JITSI_EMOJI: tuple[tuple[str, str], ...] = tuple(
    ({30: "\U0001F642", 60: "\u2693\ufe0f"}.get(i, sym), name)
    for i, (sym, name) in enumerate(EMOJI))
EMOJI_TABLES: dict[str, tuple[tuple[str, str], ...]] = {"framecrypt": EMOJI,
                                                         "jitsi": JITSI_EMOJI}


@dataclass(frozen=True, slots=True)
class SasResult:
    """What the two users compare: 7 emoji (symbol and Matrix description, from the
    style's table: :data:`EMOJI_TABLES`) and the decimal form."""

    indices: tuple[int, ...]
    decimals: tuple[int, int, int]
    style: SasStyle = "framecrypt"
    emoji: tuple[str, ...] = field(init=False)
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        table = EMOJI_TABLES[self.style]
        object.__setattr__(self, "emoji", tuple(table[i][0] for i in self.indices))
        object.__setattr__(self, "names", tuple(table[i][1] for i in self.indices))


@dataclass(frozen=True, slots=True)
class SasStep:
    """Result of feeding one message: replies to send, the SAS once both keys are known
    (``ready``), ``verified`` once both sides confirmed and the peer's MAC checked out."""

    replies: tuple[Message, ...] = ()
    ready: SasResult | None = None
    verified: bool = False


SasState = Literal["idle", "started", "accepted", "key-sent", "keys", "confirmed", "done",
                   "failed"]


def _sha256_b64(text: str) -> str:
    return b64_unpadded(hashlib.sha256(text.encode()).digest())


def _start_json(transaction_id: str) -> str:
    return json.dumps({"transactionId": transaction_id}, separators=(",", ":"))


class SasVerification:
    """One SAS verification between ``local_id`` and ``peer_id`` (sans-I/O).

    ``own_*`` are this side's identity keys; ``peer_*`` the peer's keys as this side
    knows them (from the Olm session and presence): they are what the emoji (framecrypt
    style) and the MACs bind."""

    def __init__(self, local_id: str, peer_id: str, *, own_ed25519: str, own_curve25519: str,
                 peer_ed25519: str | None, peer_curve25519: str | None,
                 style: SasStyle = "framecrypt",
                 uuid_factory: Callable[[], str] = default_uuid) -> None:
        if style not in ("framecrypt", "jitsi"):
            raise ValueError("style must be 'framecrypt' or 'jitsi'")
        self.local_id = local_id
        self.peer_id = peer_id
        self.style: SasStyle = style
        self._own_ed = own_ed25519
        self._own_curve = own_curve25519
        self._peer_ed = peer_ed25519
        self._peer_curve = peer_curve25519
        self._uuid = uuid_factory
        self.state: SasState = "idle"
        self.initiator: bool | None = None
        self.transaction_id: str | None = None
        self.result: SasResult | None = None
        self._sas: vodozemac.Sas | None = None
        self._established: vodozemac.EstablishedSas | None = None
        self._commitment: str | None = None
        self._their_mac_ok = False

    def __repr__(self) -> str:
        return (f"SasVerification({self.local_id!r}<->{self.peer_id!r}, state={self.state}, "
                f"style={self.style})")

    @property
    def verified(self) -> bool:
        return self.state == "done"

    # --- initiator ----------------------------------------------------------------------

    def start(self) -> SasStart:
        if self.state != "idle":
            raise UnexpectedMessage("verification already in progress", self.peer_id)
        self.initiator = True
        self.transaction_id = self._uuid()
        self._sas = vodozemac.Sas()
        self.state = "started"
        return SasStart(self.transaction_id)

    # --- both ---------------------------------------------------------------------------

    def receive(self, msg: Message) -> SasStep:
        """Feed one SAS message. Raises :class:`VerificationFailed` (the verification is
        then over) or :class:`UnexpectedMessage` (ignored, state unchanged)."""
        if isinstance(msg, SasStart):
            return self._on_start(msg)
        tid = getattr(msg, "transaction_id", None)
        if tid is None or tid != self.transaction_id:
            raise UnexpectedMessage("SAS message for an unknown transaction", self.peer_id)
        if isinstance(msg, SasAccept):
            return self._on_accept(msg)
        if isinstance(msg, SasKey):
            return self._on_key(msg)
        if isinstance(msg, SasMac):
            return self._on_mac(msg)
        raise UnexpectedMessage("not a SAS message", self.peer_id)

    def confirm(self, matches: bool) -> SasStep:
        """The local user compared the SAS: ``True`` sends our MAC (and completes if the
        peer's MAC already checked out); ``False`` fails the verification."""
        if self.state not in ("keys",):
            raise UnexpectedMessage("nothing to confirm", self.peer_id)
        if not matches:
            self._fail("the users saw different SAS")
        mac = self._make_mac()
        if self._their_mac_ok:
            self.state = "done"
            return SasStep((mac,), verified=True)
        self.state = "confirmed"
        return SasStep((mac,))

    def cancel(self, reason: str = "cancelled") -> None:
        self._fail(reason)

    # --- steps --------------------------------------------------------------------------

    def _fail(self, reason: str) -> None:
        self.state = "failed"
        self._sas = None
        self._established = None
        raise VerificationFailed(reason, self.peer_id)

    def _on_start(self, msg: SasStart) -> SasStep:
        if self.state != "idle":
            raise UnexpectedMessage("verification already in progress", self.peer_id)
        self.initiator = False
        self.transaction_id = msg.transaction_id
        self._sas = vodozemac.Sas()
        pub = self._sas.public_key.to_base64()
        commitment = _sha256_b64(pub + _start_json(msg.transaction_id))
        self.state = "accepted"
        return SasStep((SasAccept(msg.transaction_id, commitment),))

    def _on_accept(self, msg: SasAccept) -> SasStep:
        if self.state != "started" or self._sas is None:
            raise UnexpectedMessage("sas-accept out of turn", self.peer_id)
        self._commitment = msg.commitment
        self.state = "key-sent"
        return SasStep((SasKey(msg.transaction_id, self._sas.public_key.to_base64()),))

    def _on_key(self, msg: SasKey) -> SasStep:
        assert self.transaction_id is not None
        if self.initiator and self.state == "key-sent":
            assert self._commitment is not None
            expected = _sha256_b64(msg.key + _start_json(self.transaction_id))
            if not hmac.compare_digest(expected, self._commitment):
                self._fail("commitment mismatch")
            result = self._agree(msg.key)
            return SasStep(ready=result)
        if not self.initiator and self.state == "accepted":
            assert self._sas is not None
            pub = self._sas.public_key.to_base64()
            result = self._agree(msg.key)
            return SasStep((SasKey(self.transaction_id, pub),), ready=result)
        raise UnexpectedMessage("sas-key out of turn", self.peer_id)

    def _agree(self, their_key: str) -> SasResult:
        assert self._sas is not None and self.transaction_id is not None
        own_pub = self._sas.public_key.to_base64()
        try:
            their = vodozemac.Curve25519PublicKey.from_base64(their_key)
            established = self._sas.diffie_hellman(their)
        except Exception:
            self._fail("bad SAS public key")
            raise  # unreachable: _fail raises
        self._established = established
        me = (self.local_id, self._own_curve, own_pub)
        them = (self.peer_id, self._peer_curve or "", their_key)
        first, second = (me, them) if self.initiator else (them, me)
        if self.style == "jitsi":
            info = f"{first[0]}|{first[2]}|{second[0]}|{second[2]}"
        else:
            info = "|".join(("FRAMECRYPT_SAS", *first, *second, self.transaction_id))
        sas_bytes = established.bytes(info)
        d = sas_bytes.decimals
        self.result = SasResult(tuple(sas_bytes.emoji_indices), (d[0], d[1], d[2]),
                                self.style)
        self.state = "keys"
        return self.result

    def _mac_base(self, sender: str, receiver: str) -> str:
        assert self.transaction_id is not None
        if self.style == "jitsi":
            return f"Jitsi-KEY_VERIFICATION_MAC{sender}{receiver}{self.transaction_id}"
        return f"FRAMECRYPT_SAS_MAC|{sender}|{receiver}|{self.transaction_id}|"

    def _calc(self, text: str, info: str) -> str:
        assert self._established is not None
        if self.style == "jitsi":
            return self._established.calculate_mac_invalid_base64(text, info)
        return self._established.calculate_mac(text, info)

    def _key_ids(self, sender: str, receiver: str) -> list[str]:
        if self.style == "jitsi":
            return [f"ed25519:{receiver}"]      # lib-jitsi-meet names the receiver here
        return [f"curve25519:{sender}", f"ed25519:{sender}"]

    def _make_mac(self) -> SasMac:
        assert self.transaction_id is not None
        base = self._mac_base(self.local_id, self.peer_id)
        own = {"ed25519": self._own_ed, "curve25519": self._own_curve}
        ids = self._key_ids(self.local_id, self.peer_id)
        mac = tuple((kid, self._calc(own[kid.split(":", 1)[0]], base + kid)) for kid in ids)
        keys_info = "Jitsi-KEY_IDS" if self.style == "jitsi" else "KEY_IDS"
        keys = self._calc(",".join(sorted(ids)), base + keys_info)
        return SasMac(self.transaction_id, keys, mac)

    def _on_mac(self, msg: SasMac) -> SasStep:
        if self.state not in ("keys", "confirmed"):
            raise UnexpectedMessage("sas-mac out of turn", self.peer_id)
        base = self._mac_base(self.peer_id, self.local_id)
        keys_info = "Jitsi-KEY_IDS" if self.style == "jitsi" else "KEY_IDS"
        got_ids = [kid for kid, _ in msg.mac]
        keys = self._calc(",".join(sorted(got_ids)), base + keys_info)
        if not hmac.compare_digest(keys, msg.keys):
            self._fail("key ids MAC mismatch")
        expected_ids = sorted(self._key_ids(self.peer_id, self.local_id))
        if self.style != "jitsi" and sorted(got_ids) != expected_ids:
            self._fail("MAC does not cover the identity keys")
        theirs = {"ed25519": self._peer_ed, "curve25519": self._peer_curve}
        for kid, value in msg.mac:
            known = theirs.get(kid.split(":", 1)[0])
            if known is None:
                self._fail("peer identity key unknown")
            assert known is not None
            if not hmac.compare_digest(self._calc(known, base + kid), value):
                self._fail("MAC mismatch")
        self._their_mac_ok = True
        if self.state == "confirmed":
            self.state = "done"
            return SasStep(verified=True)
        return SasStep()


__all__ = [
    "EMOJI",
    "EMOJI_TABLES",
    "JITSI_EMOJI",
    "SasResult",
    "SasState",
    "SasStep",
    "SasStyle",
    "SasVerification",
]
