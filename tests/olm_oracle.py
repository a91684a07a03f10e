"""A libolm-backed Jitsi participant: the outside implementation framecrypt's Olm key
exchange and SAS are tested against (tests/test_interop_olm.py).

libolm is what lib-jitsi-meet runs (its ``OlmAdapter`` uses the global ``Olm`` from
``@matrix-org/olm``); ``python-olm`` (PyPI) is the same C library behind CFFI.
:class:`JitsiPeer` re-enacts lib-jitsi-meet's ``modules/e2ee/OlmAdapter.js`` and
``modules/e2ee/SAS.ts`` (jitsi/lib-jitsi-meet @01daa07, the commit
/work/shared/reference/livekit-jitsi.md was written from) call for call over
``Account`` / ``Session`` / ``Sas``, and writes and reads the endpoint JSON
envelopes as plain dicts built from that source. Nothing here imports framecrypt: the
envelopes, key-info plaintexts, SAS info strings, MACs, emoji table and the JFrame
sealing below are written from lib-jitsi-meet, not from framecrypt's code, so a test
that passes proves the two agree rather than that framecrypt agrees with itself.

Two knobs exist only for tests:

* ``seq=True`` makes the plaintexts carry framecrypt's ``type``/``seq`` extension
  (framecrypt's envelope docs), i.e. what a framecrypt peer in strict mode sends, but
  encrypted by libolm;
* ``sas_style="framecrypt"`` computes framecrypt's own SAS style (its info string binds
  ids, curve25519 keys, SAS keys and the transaction id; MACs use libolm's *fixed*
  base64, i.e. Matrix ``hkdf-hmac-sha256.v2``) with libolm's ``Sas``.

Keys never reach a repr or a log line here either.
"""

from __future__ import annotations

import base64
import json
import uuid as _uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from olm.account import Account
from olm.sas import Sas
from olm.session import (
    InboundSession,
    OlmMessage,
    OlmPreKeyMessage,
    OutboundSession,
    Session,
    _OlmMessage,
)
from olm.utility import sha256

Envelope = dict[str, Any]
SasStyle = Literal["jitsi", "framecrypt"]

# lib-jitsi-meet modules/e2ee/OlmAdapter.js
OLM_MESSAGE_TYPE = "olm"            # payload[JITSI_MEET_MUC_TYPE]; JITSI_MEET_MUC_TYPE = "type"
OLM_SAS_NUM_BYTES = 6
OLM_KEY_VERIFICATION_MAC_INFO = "Jitsi-KEY_VERIFICATION_MAC"
OLM_KEY_VERIFICATION_MAC_KEY_IDS = "Jitsi-KEY_IDS"

# lib-jitsi-meet modules/e2ee/SAS.ts emojiMapping, index -> (emoji, name). NB: this is
# *lib-jitsi-meet's* table; it differs from the Matrix spec's at 30 (U+1F642 here, spec
# U+1F600) and 60 (U+2693 U+FE0F here, spec U+2693).
JITSI_EMOJI: tuple[tuple[str, str], ...] = (
    ("\U0001F436", "dog"), ("\U0001F431", "cat"), ("\U0001F981", "lion"),
    ("\U0001F40E", "horse"), ("\U0001F984", "unicorn"), ("\U0001F437", "pig"),
    ("\U0001F418", "elephant"), ("\U0001F430", "rabbit"), ("\U0001F43C", "panda"),
    ("\U0001F413", "rooster"), ("\U0001F427", "penguin"), ("\U0001F422", "turtle"),
    ("\U0001F41F", "fish"), ("\U0001F419", "octopus"), ("\U0001F98B", "butterfly"),
    ("\U0001F337", "flower"), ("\U0001F333", "tree"), ("\U0001F335", "cactus"),
    ("\U0001F344", "mushroom"), ("\U0001F30F", "globe"), ("\U0001F319", "moon"),
    ("\u2601\ufe0f", "cloud"), ("\U0001F525", "fire"), ("\U0001F34C", "banana"),
    ("\U0001F34E", "apple"), ("\U0001F353", "strawberry"), ("\U0001F33D", "corn"),
    ("\U0001F355", "pizza"), ("\U0001F382", "cake"), ("\u2764\ufe0f", "heart"),
    ("\U0001F642", "smiley"), ("\U0001F916", "robot"), ("\U0001F3A9", "hat"),
    ("\U0001F453", "glasses"), ("\U0001F527", "spanner"), ("\U0001F385", "santa"),
    ("\U0001F44D", "thumbs up"), ("\u2602\ufe0f", "umbrella"), ("\u231b", "hourglass"),
    ("\u23f0", "clock"), ("\U0001F381", "gift"), ("\U0001F4A1", "light bulb"),
    ("\U0001F4D5", "book"), ("\u270f\ufe0f", "pencil"), ("\U0001F4CE", "paperclip"),
    ("\u2702\ufe0f", "scissors"), ("\U0001F512", "lock"), ("\U0001F511", "key"),
    ("\U0001F528", "hammer"), ("\u260e\ufe0f", "telephone"), ("\U0001F3C1", "flag"),
    ("\U0001F682", "train"), ("\U0001F6B2", "bicycle"), ("\u2708\ufe0f", "aeroplane"),
    ("\U0001F680", "rocket"), ("\U0001F3C6", "trophy"), ("\u26bd", "ball"),
    ("\U0001F3B8", "guitar"), ("\U0001F3BA", "trumpet"), ("\U0001F514", "bell"),
    ("\u2693\ufe0f", "anchor"), ("\U0001F3A7", "headphones"), ("\U0001F4C1", "folder"),
    ("\U0001F4CC", "pin"),
)


def emoji_indices(b: bytes) -> tuple[int, ...]:
    """SAS.ts ``generateEmojiSas``: 42 bits, 6 at a time ("just like base64")."""
    return (b[0] >> 2, (b[0] & 0x3) << 4 | b[1] >> 4, (b[1] & 0xF) << 2 | b[2] >> 6,
            b[2] & 0x3F, b[3] >> 2, (b[3] & 0x3) << 4 | b[4] >> 4,
            (b[4] & 0xF) << 2 | b[5] >> 6)


def decimals(b: bytes) -> tuple[int, int, int]:
    """SAS.ts ``generateDecimalSas``: three 13-bit numbers + 1000."""
    return ((b[0] << 5 | b[1] >> 3) + 1000,
            ((b[1] & 0x7) << 10 | b[2] << 2 | b[3] >> 6) + 1000,
            ((b[3] & 0x3F) << 7 | b[4] >> 1) + 1000)


@dataclass(frozen=True)
class OracleSas:
    """What the libolm side shows its user (from ``sas.generate_bytes(info, 6)``)."""

    indices: tuple[int, ...]
    decimals: tuple[int, int, int]
    emoji: tuple[str, ...]
    names: tuple[str, ...]

    @classmethod
    def from_bytes(cls, b: bytes) -> OracleSas:
        idx = emoji_indices(b)
        return cls(idx, decimals(b), tuple(JITSI_EMOJI[i][0] for i in idx),
                   tuple(JITSI_EMOJI[i][1] for i in idx))


@dataclass(frozen=True, repr=False)
class ReceivedKey:
    """A media key the libolm side got: ``material`` bytes or False (E2EE off)."""

    material: bytes | Literal[False]
    index: int

    def __repr__(self) -> str:
        return f"ReceivedKey(index={self.index})"


@dataclass(repr=False)
class _SasState:
    sas: Sas
    transaction_id: str
    initiator: bool
    start_content: dict[str, Any] | None = None
    commitment: str | None = None
    key_sent: bool = False
    their_key: str | None = None
    result: OracleSas | None = None
    verified: bool | None = None


@dataclass(repr=False)
class _Peer:
    """``participant[kOlmData]`` in OlmAdapter.js."""

    session: Session | None = None
    pending_uuid: str | None = None
    last_key: bytes | Literal[False] | None = None
    ed25519: str | None = None                  # from presence (e2ee.idKey.ed25519)
    curve25519: str | None = None               # from presence (e2ee.idKey.curve25519)
    sas: _SasState | None = None
    send_seq: int = 0
    plaintexts: list[dict[str, Any]] = field(default_factory=list)   # decrypted, in order
    errors: list[str] = field(default_factory=list)


def _wrap(kind: str, data: dict[str, Any]) -> Envelope:
    return {"type": OLM_MESSAGE_TYPE, "olm": {"data": data, "type": kind}}


def _ciphertext(msg: _OlmMessage) -> dict[str, Any]:
    """libolm JS ``Session.encrypt`` returns ``{type, body}``."""
    body = msg.ciphertext
    return {"type": int(msg.message_type),
            "body": body.decode() if isinstance(body, bytes) else str(body)}


def _parse(plain: str) -> dict[str, Any]:
    """OlmAdapter's ``safeJsonParse``: an object, or ``{}``."""
    try:
        obj = json.loads(plain)
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


def _olm_message(ct: dict[str, Any]) -> OlmMessage | OlmPreKeyMessage:
    if ct["type"] == 0:
        return OlmPreKeyMessage(ct["body"])
    return OlmMessage(ct["body"])


class JitsiPeer:
    """One lib-jitsi-meet participant's ``OlmAdapter`` over libolm (see the module doc).

    Messages in and out are the endpoint JSON objects; ``handle`` returns the replies
    (to the same sender) in order. ``keys[peer]`` is the last media key learnt from
    ``peer`` (``PARTICIPANT_KEY_UPDATED``)."""

    def __init__(self, my_id: str, *, seq: bool = False, sas_style: SasStyle = "jitsi") -> None:
        self.my_id = my_id
        self.seq = seq
        self.sas_style: SasStyle = sas_style
        self.account = Account()
        self.id_keys: dict[str, str] = dict(self.account.identity_keys)
        self.media_key: bytes | Literal[False] | None = None   # _mediaKey (None: undefined)
        self.media_key_index = -1
        self.keys: dict[str, ReceivedKey] = {}
        self.peers: dict[str, _Peer] = {}

    def __repr__(self) -> str:
        return f"JitsiPeer({self.my_id!r})"

    # --- presence and key management --------------------------------------------------

    def presence(self, peer_id: str, *, curve25519: str, ed25519: str) -> None:
        """The peer's ``e2ee.idKey.*`` presence properties."""
        p = self._peer(peer_id)
        p.curve25519, p.ed25519 = curve25519, ed25519

    def update_key(self, key: bytes | Literal[False]) -> int:
        """``OlmAdapter.updateKey`` without the broadcast: store and bump the index."""
        self.media_key = key
        self.media_key_index += 1
        return self.media_key_index

    def session(self, peer_id: str) -> Session | None:
        return self._peer(peer_id).session

    def _peer(self, peer_id: str) -> _Peer:
        return self.peers.setdefault(peer_id, _Peer())

    # --- Olm: building messages -------------------------------------------------------

    def session_init(self, peer_id: str) -> Envelope:
        """``_sendSessionInit``: a fresh one-time key, published; ``{idKey, otKey, uuid}``."""
        p = self._peer(peer_id)
        assert p.session is None and p.pending_uuid is None
        self.account.generate_one_time_keys(1)
        ot_key = next(iter(self.account.one_time_keys["curve25519"].values()))
        self.account.mark_keys_as_published()
        uid = str(_uuid.uuid4())
        p.pending_uuid = uid
        return _wrap("session-init",
                     {"idKey": self.id_keys["curve25519"], "otKey": ot_key, "uuid": uid})

    def key_info(self, peer_id: str, uid: str | None = None) -> Envelope:
        """``updateKey``'s per-participant ``key-info`` (our current key)."""
        p = self._peer(peer_id)
        assert p.session is not None
        return _wrap("key-info", {"ciphertext": self._encrypt_key_info(p, "key-info"),
                                  "uuid": uid or str(_uuid.uuid4())})

    def _encrypt_key_info(self, p: _Peer, kind: str) -> dict[str, Any]:
        """``_encryptKeyInfo``: ``JSON.stringify({key, keyIndex})`` or ``{}``."""
        assert p.session is not None
        info: dict[str, Any] = {}
        if self.media_key is not None:
            info["key"] = (base64.b64encode(self.media_key).decode()
                           if self.media_key else False)
            info["keyIndex"] = self.media_key_index
        if self.seq:                                   # framecrypt's strict extension
            p.send_seq += 1
            info["type"], info["seq"] = kind, p.send_seq
        return _ciphertext(p.session.encrypt(json.dumps(info, separators=(",", ":"))))

    def _decrypt(self, p: _Peer, ct: dict[str, Any]) -> dict[str, Any]:
        assert p.session is not None
        obj = _parse(p.session.decrypt(_olm_message(ct), unicode_errors="strict"))
        p.plaintexts.append(obj)
        return obj

    def _learn_key(self, peer_id: str, p: _Peer, obj: dict[str, Any], *,
                   need_index: bool) -> bool:
        """PARTICIPANT_KEY_UPDATED as OlmAdapter emits it (only on a change)."""
        if need_index:
            if "key" not in obj or "keyIndex" not in obj:
                return False
            key: bytes | Literal[False] = base64.b64decode(obj["key"]) if obj["key"] else False
        else:                                          # the session-ack branch: `if (json.key)`,
            if not obj.get("key"):                     # and it emits without comparing
                return False
            key = base64.b64decode(obj["key"])
            p.last_key = None
        if p.last_key != key:
            p.last_key = key
            self.keys[peer_id] = ReceivedKey(key, obj["keyIndex"])
        return True

    # --- Olm: the message handler -----------------------------------------------------

    def handle(self, peer_id: str, payload: Envelope | str) -> list[Envelope]:
        """``_onEndpointMessageReceived``: process one message from ``peer_id``."""
        if isinstance(payload, str):
            payload = json.loads(payload)
        assert isinstance(payload, dict)
        if payload.get("type") != OLM_MESSAGE_TYPE or "olm" not in payload:
            return []
        msg = payload["olm"]
        data = msg["data"]
        kind = msg["type"]
        p = self._peer(peer_id)
        if kind == "session-init":
            if p.session is not None:
                return [self._error(p, "Session already established")]
            session = OutboundSession(self.account, data["idKey"], data["otKey"])
            p.session = session
            return [_wrap("session-ack", {"ciphertext": self._encrypt_key_info(p, "session-ack"),
                                          "uuid": data["uuid"]})]
        if kind == "session-ack":
            if p.session is not None:
                return [self._error(p, "No session found")]
            if data["uuid"] != p.pending_uuid:
                return [self._error(p, "Invalid UUID")]
            ct = data["ciphertext"]
            # session.create_inbound(account, body): libolm's create_inbound, which, like
            # the JS binding, does not take the sender's identity key
            inbound = InboundSession(self.account, OlmPreKeyMessage(ct["body"]))
            self.account.remove_one_time_keys(inbound)
            plain = inbound.decrypt(_olm_message(ct), unicode_errors="strict")
            p.session = inbound                        # only once the first message decrypted
            p.pending_uuid = None
            p.plaintexts.append(_parse(plain))
            self._learn_key(peer_id, p, p.plaintexts[-1], need_index=False)
            return []
        if kind == "key-info":
            if p.session is None:
                return [self._error(p, "No session found while processing key-info")]
            obj = self._decrypt(p, data["ciphertext"])
            if not self._learn_key(peer_id, p, obj, need_index=True):
                return []                              # no ack for a key-info without a key
            return [_wrap("key-info-ack",
                          {"ciphertext": self._encrypt_key_info(p, "key-info-ack"),
                           "uuid": data["uuid"]})]
        if kind == "key-info-ack":
            if p.session is None:
                return [self._error(p, "No session found while processing key-info-ack")]
            obj = self._decrypt(p, data["ciphertext"])
            self._learn_key(peer_id, p, obj, need_index=True)
            return []
        if kind == "error":
            p.errors.append(str(data.get("error")))
            return []
        if kind.startswith("sas-"):
            return self._handle_sas(peer_id, p, kind, data)
        return []

    def _error(self, p: _Peer, error: str) -> Envelope:
        return _wrap("error", {"error": error})

    # --- SAS --------------------------------------------------------------------------

    @staticmethod
    def _commitment(pub: str, content: dict[str, Any]) -> str:
        """``_computeCommitment``: ``Olm.Utility.sha256(pubKey + JSON.stringify(data))``."""
        return str(sha256(pub + json.dumps(content, separators=(",", ":"))))

    def start_sas(self, peer_id: str) -> Envelope:
        """``startVerification``: ``sas-start {transactionId}``."""
        p = self._peer(peer_id)
        assert p.session is not None and p.sas is None
        tid = str(_uuid.uuid4())
        p.sas = _SasState(Sas(), tid, initiator=True, start_content={"transactionId": tid})
        return _wrap("sas-start", dict(p.sas.start_content or {}))

    def sas(self, peer_id: str) -> OracleSas | None:
        st = self._peer(peer_id).sas
        return st.result if st is not None else None

    def sas_verified(self, peer_id: str) -> bool | None:
        st = self._peer(peer_id).sas
        return st.verified if st is not None else None

    def _info(self, peer_id: str, p: _Peer, st: _SasState) -> str:
        assert st.their_key is not None
        pub = str(st.sas.pubkey)
        if self.sas_style == "jitsi":
            me, them = f"{self.my_id}|{pub}", f"{peer_id}|{st.their_key}"
            return f"{me}|{them}" if st.initiator else f"{them}|{me}"
        # framecrypt's style: ids, curve25519 identity keys as this side knows them,
        # SAS public keys, transaction id
        me3 = (self.my_id, self.id_keys["curve25519"], pub)
        them3 = (peer_id, p.curve25519 or "", st.their_key)
        first, second = (me3, them3) if st.initiator else (them3, me3)
        return "|".join(("FRAMECRYPT_SAS", *first, *second, st.transaction_id))

    def _mac(self, st: _SasState, message: str, info: str) -> str:
        if self.sas_style == "jitsi":
            return str(st.sas.calculate_mac(message, info))        # JS calculate_mac
        return str(st.sas.calculate_mac_fixed_base64(message, info))

    def _mac_base(self, sender: str, receiver: str, tid: str) -> str:
        if self.sas_style == "jitsi":
            return f"{OLM_KEY_VERIFICATION_MAC_INFO}{sender}{receiver}{tid}"
        return f"FRAMECRYPT_SAS_MAC|{sender}|{receiver}|{tid}|"

    def _keys_info(self) -> str:
        return OLM_KEY_VERIFICATION_MAC_KEY_IDS if self.sas_style == "jitsi" else "KEY_IDS"

    def sas_mac(self, peer_id: str) -> Envelope:
        """``_sendSasMac`` (after the user confirmed)."""
        p = self._peer(peer_id)
        st = p.sas
        assert st is not None and st.their_key is not None
        base = self._mac_base(self.my_id, peer_id, st.transaction_id)
        mac: dict[str, str] = {}
        if self.sas_style == "jitsi":
            key_id = f"ed25519:{peer_id}"      # sic: lib-jitsi-meet names the receiver
            mac[key_id] = self._mac(st, self.id_keys["ed25519"], base + key_id)
        else:
            for algo in ("curve25519", "ed25519"):
                key_id = f"{algo}:{self.my_id}"
                mac[key_id] = self._mac(st, self.id_keys[algo], base + key_id)
        keys = self._mac(st, ",".join(sorted(mac)), base + self._keys_info())
        return _wrap("sas-mac", {"keys": keys, "mac": mac, "transactionId": st.transaction_id})

    def _handle_sas(self, peer_id: str, p: _Peer, kind: str,
                    data: dict[str, Any]) -> list[Envelope]:
        if p.session is None:
            return [self._error(p, f"No session found while processing {kind}")]
        if kind == "sas-start":
            if p.sas is not None:
                return []
            tid = data["transactionId"]
            p.sas = _SasState(Sas(), tid, initiator=False)
            commitment = self._commitment(str(p.sas.sas.pubkey), data)
            return [_wrap("sas-accept", {"commitment": commitment, "transactionId": tid})]
        st = p.sas
        if st is None:
            return []
        if kind == "sas-accept":
            if st.commitment is not None:
                return [self._error(p, "Already received sas commitment message")]
            st.commitment = data["commitment"]
            st.key_sent = True
            return [_wrap("sas-key", {"key": str(st.sas.pubkey),
                                      "transactionId": data["transactionId"]})]
        if kind == "sas-key":
            if st.their_key is not None:
                return []
            their = data["key"]
            if st.commitment is not None:
                assert st.start_content is not None
                if self._commitment(their, st.start_content) != st.commitment:
                    st.verified = False
                    return [self._error(p, "OlmAdapter commitments mismatched")]
            st.sas.set_their_pubkey(their)
            st.their_key = their
            st.result = OracleSas.from_bytes(
                bytes(st.sas.generate_bytes(self._info(peer_id, p, st), OLM_SAS_NUM_BYTES)))
            if st.key_sent:
                return []
            st.key_sent = True
            return [_wrap("sas-key", {"key": str(st.sas.pubkey),
                                      "transactionId": data["transactionId"]})]
        if kind == "sas-mac":
            keys, mac, tid = data.get("keys"), data.get("mac"), data["transactionId"]
            if not mac or not keys:
                return []
            base = self._mac_base(peer_id, self.my_id, tid)
            if self._mac(st, ",".join(sorted(mac)), base + self._keys_info()) != keys:
                st.verified = False
                return []
            known = {"ed25519": p.ed25519, "curve25519": p.curve25519}
            for key_id, value in mac.items():
                key = known.get(key_id.split(":", 1)[0]) if self.sas_style != "jitsi" \
                    else p.ed25519                     # Jitsi MACs olmData.ed25519 for any id
                if key is None or self._mac(st, key, base + key_id) != value:
                    st.verified = False
                    return []
            st.verified = True
            return []
        return []


# --- JFrame (lib-jitsi-meet modules/e2ee/Context.ts, crypto-utils.ts) ----------------------

UNENCRYPTED_BYTES = {"key": 10, "delta": 3, "audio": 1}
IV_LENGTH = 12


def _hkdf(material: bytes, salt: bytes, length: int) -> bytes:
    return HKDF(hashes.SHA256(), length, salt, b"").derive(material)


def jframe_key(material: bytes) -> bytes:
    """``deriveKeys``: HKDF-SHA256(material, salt "JFrameEncryptionKey", info "", 128 bit)."""
    return _hkdf(material, b"JFrameEncryptionKey", 16)


def jframe_seal(material: bytes, key_index: int, frame: bytes, frame_type: str, *,
                ssrc: int, timestamp: int, send_count: int) -> bytes:
    """``encodeFunction``: clear header ‖ AES-GCM(rest, AAD = header) ‖ IV ‖ 12 ‖ KID."""
    n = UNENCRYPTED_BYTES[frame_type]
    iv = (ssrc.to_bytes(4, "big") + timestamp.to_bytes(4, "big")
          + (send_count % 0xFFFF).to_bytes(4, "big"))
    ct = AESGCM(jframe_key(material)).encrypt(iv, frame[n:], frame[:n])
    return frame[:n] + ct + iv + bytes((IV_LENGTH, key_index % 16))


def jframe_open(material: bytes, data: bytes, frame_type: str) -> tuple[int, bytes]:
    """``_decryptFrame`` without the ratchet retries: ``(KID, plaintext frame)``."""
    n = UNENCRYPTED_BYTES[frame_type]
    iv_len, kid = data[-2], data[-1]
    iv = data[-2 - iv_len:-2]
    plain = AESGCM(jframe_key(material)).decrypt(iv, data[n:-2 - iv_len], data[:n])
    return kid, data[:n] + plain


__all__ = [
    "JITSI_EMOJI",
    "JitsiPeer",
    "OracleSas",
    "ReceivedKey",
    "decimals",
    "emoji_indices",
    "jframe_open",
    "jframe_seal",
]
