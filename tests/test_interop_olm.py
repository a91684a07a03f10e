"""framecrypt's Olm key exchange and SAS against libolm (python-olm), the library
lib-jitsi-meet runs: tests/olm_oracle.py re-enacts lib-jitsi-meet's OlmAdapter and SAS
over libolm and builds its envelopes from lib-jitsi-meet's source, not from framecrypt.

Every message crosses as JSON text, as it would over XMPP: framecrypt's side goes
through ``envelope.to_json`` / ``envelope.from_json``, the libolm side through
``json.dumps`` / ``json.loads`` of plain dicts.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any, Literal

import pytest
from cryptography.exceptions import InvalidTag
from olm.account import Account
from olm.session import OlmSessionError
from olm_oracle import JITSI_EMOJI, JitsiPeer, OracleSas, jframe_open, jframe_seal

from framecrypt import jitsi
from framecrypt.errors import AuthenticationFailed
from framecrypt.keys import envelope
from framecrypt.keys.actions import (
    ChannelReady,
    KeySwitched,
    PeerKeyUpdated,
    SasReady,
    SasVerified,
    Send,
    SetKey,
)
from framecrypt.keys.envelope import (
    KEY_INFO,
    KEY_INFO_ACK,
    Encrypted,
    KeyInfo,
    Message,
    SessionAck,
    SessionInit,
)
from framecrypt.keys.errors import OlmError, ReplayedMessage, VerificationFailed
from framecrypt.keys.olm import MediaKey, OlmChannel, OlmIdentity, Opened
from framecrypt.keys.policy import Action, Member, PolicyConfig
from framecrypt.keys.sas import EMOJI, SasResult, SasStyle, SasVerification

Who = Literal["framecrypt", "libolm"]


def fc_to_wire(msg: Message) -> dict[str, Any]:
    """A framecrypt message as the libolm side receives it (JSON text, parsed)."""
    obj = json.loads(envelope.to_json(msg))
    assert isinstance(obj, dict)
    return obj


def wire_to_fc(obj: dict[str, Any]) -> Message:
    """A libolm-side envelope as framecrypt receives it."""
    return envelope.from_json(json.dumps(obj))


def only(replies: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    assert [r["olm"]["type"] for r in replies] == [kind], replies
    return replies[0]


def encrypted(obj: dict[str, Any]) -> Encrypted:
    msg = wire_to_fc(obj)
    assert isinstance(msg, Encrypted)
    return msg


def new_key(index: int) -> MediaKey:
    return MediaKey(os.urandom(32), index)


class Pair:
    """A framecrypt OlmChannel and a libolm JitsiPeer with an established session.

    ``who`` initiates: Jitsi's rule is that the lower id sends ``session-init``, so
    the ids are chosen to make ``who`` the lower one."""

    def __init__(self, who: Who, *, seq: bool = False, fc_key: MediaKey | None = None,
                 lo_key: bytes | None = None) -> None:
        self.fc_id, self.lo_id = ("alice", "bob") if who == "framecrypt" else ("bob", "alice")
        self.ident = OlmIdentity()
        self.lo = JitsiPeer(self.lo_id, seq=seq)
        self.lo.presence(self.fc_id, **self.ident.identity_keys())
        if lo_key is not None:
            self.lo.update_key(lo_key)
        # strict=seq: lib-jitsi-meet's bare {key, keyIndex} plaintexts need strict=False;
        # a peer that adds framecrypt's type/seq is held to strict mode
        self.fc = OlmChannel(self.ident, self.fc_id, self.lo_id, strict=seq,
                             peer_curve25519=self.lo.id_keys["curve25519"],
                             peer_ed25519=self.lo.id_keys["ed25519"])
        if who == "framecrypt":
            init = self.fc.initiate()
            ack = only(self.lo.handle(self.fc_id, fc_to_wire(init)), "session-ack")
            assert ack["olm"]["data"]["ciphertext"]["type"] == 0        # a pre-key message
            msg = wire_to_fc(ack)
            assert isinstance(msg, SessionAck)
            self.ack_opened: Opened | None = self.fc.complete(msg)
        else:
            lo_init = wire_to_fc(self.lo.session_init(self.fc_id))
            assert isinstance(lo_init, SessionInit)
            assert self.lo.handle(self.fc_id, fc_to_wire(self.fc.accept(lo_init, fc_key))) == []
            self.ack_opened = None
        assert self.fc.ready and self.lo.session(self.fc_id) is not None

    def fc_sends(self, kind: str, key: MediaKey | None, uid: str = "u") -> list[dict[str, Any]]:
        return self.lo.handle(self.fc_id, fc_to_wire(self.fc.seal(kind, uid, key=key)))

    def lo_key_info(self) -> Encrypted:
        return encrypted(self.lo.key_info(self.fc_id))


BOTH: list[Who] = ["framecrypt", "libolm"]


# --- sessions and key-info -------------------------------------------------------------


@pytest.mark.parametrize("who", BOTH)
def test_session_establishes_and_carries_the_responders_key(who: Who) -> None:
    fc_key, lo_key = new_key(0), os.urandom(32)
    p = Pair(who, fc_key=fc_key, lo_key=lo_key)
    if who == "framecrypt":
        # libolm answered: its session-ack's pre-key message carried its key-info
        assert p.ack_opened is not None and p.ack_opened.kind == "session-ack"
        assert p.ack_opened.key == MediaKey(lo_key, 0)
    else:
        # framecrypt answered: libolm's create_inbound decrypted framecrypt's key-info
        got = p.lo.keys[p.fc_id]
        assert (got.material, got.index) == (fc_key.material, 0)
    # the session now carries messages both ways
    assert p.fc.open(p.lo_key_info()).key == MediaKey(lo_key, 0)
    p.fc_sends(KEY_INFO, fc_key)
    assert p.lo.keys[p.fc_id].material == fc_key.material


def test_session_init_has_lib_jitsi_meets_shape() -> None:
    """framecrypt's session-init carries what OlmAdapter reads (idKey, otKey, uuid) and
    libolm accepts both keys; libolm's session-init parses on framecrypt's side."""
    ident = OlmIdentity()
    fc = OlmChannel(ident, "alice", "bob", strict=False)
    obj = fc_to_wire(fc.initiate())
    assert obj["type"] == "olm" and obj["olm"]["type"] == "session-init"
    data = obj["olm"]["data"]
    assert data["idKey"] == ident.curve25519 and {"idKey", "otKey", "uuid"} <= set(data)
    lo = JitsiPeer("alice")
    init = wire_to_fc(lo.session_init("bob"))
    assert isinstance(init, SessionInit) and init.id_key == lo.id_keys["curve25519"]
    assert init.ed_key is None                      # Jitsi sends no edKey


@pytest.mark.parametrize("who", BOTH)
def test_key_info_both_ways_and_the_delivered_keys_open_frames(who: Who) -> None:
    fc_key0, lo_key0 = new_key(0), os.urandom(32)
    p = Pair(who, fc_key=fc_key0, lo_key=lo_key0)
    # framecrypt -> libolm: key-info with a new key (index 1); libolm acks with its own
    fc_key = new_key(1)
    ack = only(p.fc_sends(KEY_INFO, fc_key, "req-1"), "key-info-ack")
    assert ack["olm"]["data"]["uuid"] == "req-1"
    got = p.lo.keys[p.fc_id]
    assert (got.material, got.index) == (fc_key.material, 1)
    opened = p.fc.open(encrypted(ack))
    assert opened.kind == KEY_INFO_ACK and opened.uuid == "req-1"
    assert opened.key == MediaKey(lo_key0, 0)
    # libolm -> framecrypt: lib-jitsi-meet's updateKey (index 1), framecrypt acks
    lo_key = os.urandom(32)
    assert p.lo.update_key(lo_key) == 1
    opened = p.fc.open(p.lo_key_info())
    assert opened.kind == KEY_INFO and opened.key == MediaKey(lo_key, 1)
    assert p.fc_sends(KEY_INFO_ACK, fc_key, opened.uuid) == []

    # frames: each side seals with its own key; the other opens with the key it got
    # over Olm (framecrypt: framecrypt.jitsi; libolm side: JFrame from Context.ts)
    frame = bytes(range(10)) + os.urandom(300)
    sealed = jframe_seal(lo_key, 1, frame, "key", ssrc=0x1234, timestamp=90_000,
                         send_count=7)
    assert opened.key is not None and opened.key.material is not None
    assert jitsi.unprotect(sealed, key=jitsi.derive_key(opened.key.material),
                           codec="vp8", keyframe=True) == frame
    audio = b"\x78" + os.urandom(80)
    assert fc_key.material is not None
    ours = jitsi.protect(audio, key=jitsi.derive_key(fc_key.material), codec="opus",
                         keyframe=False, ssrc=0xBEEF, timestamp=960, send_count=3,
                         key_index=fc_key.index)
    delivered = p.lo.keys[p.fc_id].material
    assert delivered and jframe_open(delivered, ours, "audio") == (1, audio)
    # the wrong key opens nothing: the checks above can fail
    with pytest.raises(InvalidTag):
        jframe_open(lo_key, ours, "audio")
    with pytest.raises(AuthenticationFailed):
        jitsi.unprotect(sealed, key=jitsi.derive_key(fc_key.material), codec="vp8",
                        keyframe=True)


@pytest.mark.parametrize("who", BOTH)
def test_disabled_and_absent_keys_both_ways(who: Who) -> None:
    p = Pair(who)                                   # neither side had a key: `{}`
    assert p.ack_opened is None or p.ack_opened.key is None
    assert p.fc_id not in p.lo.keys
    # E2EE switched off: key false
    assert p.fc_sends(KEY_INFO, MediaKey(None, 3))[0]["olm"]["type"] == "key-info-ack"
    got = p.lo.keys[p.fc_id]
    assert (got.material, got.index) == (False, 3)
    # the plaintext is lib-jitsi-meet's own shape: {"key": false, "keyIndex": n}
    plain = p.lo.peers[p.fc_id].plaintexts[-1]
    assert plain["key"] is False and plain["keyIndex"] == 3
    p.lo.update_key(False)
    assert p.fc.open(p.lo_key_info()).key == MediaKey(None, 0)
    # lib-jitsi-meet does not ack a key-info that carries no key
    assert p.fc_sends(KEY_INFO, None) == []


# --- replay, reorder, tamper ---------------------------------------------------------------


@pytest.mark.parametrize("seq", [False, True], ids=["jitsi-plaintext", "framecrypt-seq"])
@pytest.mark.parametrize("who", BOTH)
def test_replayed_libolm_message_is_refused(who: Who, seq: bool) -> None:
    p = Pair(who, seq=seq, lo_key=os.urandom(32))
    msg = p.lo_key_info()
    p.fc.open(msg)
    with pytest.raises(ReplayedMessage) as e:
        p.fc.open(msg)
    assert e.value.reason == "duplicate"
    assert p.fc.open(p.lo_key_info()).kind == KEY_INFO      # the channel still works
    # libolm, for its part, does not decrypt a framecrypt message twice either
    sent = fc_to_wire(p.fc.seal(KEY_INFO, "r", key=new_key(1)))
    p.lo.handle(p.fc_id, sent)
    with pytest.raises(OlmSessionError):
        p.lo.handle(p.fc_id, sent)


@pytest.mark.parametrize("seq", [False, True], ids=["jitsi-plaintext", "framecrypt-seq"])
@pytest.mark.parametrize("who", BOTH)
def test_reordered_libolm_messages_are_refused(who: Who, seq: bool) -> None:
    """Two key-infos on one Olm chain delivered newest first: libolm's sender keeps the
    skipped message key, so Olm alone would decrypt the older one and roll the key
    back. framecrypt refuses it, with framecrypt's seq field and (lib-jitsi-meet's
    bare plaintext) without it."""
    p = Pair(who, seq=seq, lo_key=os.urandom(32))
    p.lo.update_key(os.urandom(32))
    older = p.lo_key_info()
    newest_key = os.urandom(32)
    p.lo.update_key(newest_key)
    newer = p.lo_key_info()
    assert p.fc.open(newer).key == MediaKey(newest_key, 2)
    with pytest.raises(ReplayedMessage) as e:
        p.fc.open(older)
    assert e.value.reason == "out of order"
    assert p.fc.open(p.lo_key_info()).key == MediaKey(newest_key, 2)   # still works


@pytest.mark.parametrize("seq", [False, True], ids=["jitsi-plaintext", "framecrypt-seq"])
def test_message_from_an_older_olm_chain_is_refused(seq: bool) -> None:
    """The libolm side sends ``held`` on its first chain; framecrypt answers (a new
    ratchet step), libolm sends on a new chain; ``held`` arrives last. libolm keeps old
    receiver chains, so it would still decrypt: framecrypt refuses it as out of order."""
    p = Pair("framecrypt", seq=seq, lo_key=os.urandom(32))
    p.fc.open(p.lo_key_info())
    p.lo.update_key(os.urandom(32))
    held = p.lo_key_info()
    only(p.fc_sends(KEY_INFO, new_key(1)), "key-info-ack")   # the ack: libolm's new chain
    newer = wire_to_fc(p.lo.key_info(p.fc_id))
    assert isinstance(newer, KeyInfo)
    assert p.fc.open(newer).kind == KEY_INFO
    with pytest.raises(ReplayedMessage) as e:
        p.fc.open(held)
    assert e.value.reason == "out of order"


def _flip(body: str, at: int) -> str:
    raw = bytearray(base64.b64decode(body + "=" * (-len(body) % 4)))
    raw[at] ^= 0x01
    return base64.b64encode(bytes(raw)).decode().rstrip("=")


@pytest.mark.parametrize("at", [-12, -3], ids=["ciphertext", "mac"])
@pytest.mark.parametrize("who", BOTH)
def test_tampered_ciphertext_fails_on_both_sides(who: Who, at: int) -> None:
    p = Pair(who, lo_key=os.urandom(32))
    # libolm -> framecrypt
    good = p.lo.key_info(p.fc_id)
    bad = json.loads(json.dumps(good))
    bad["olm"]["data"]["ciphertext"]["body"] = _flip(good["olm"]["data"]["ciphertext"]["body"], at)
    with pytest.raises(OlmError) as e:
        p.fc.open(encrypted(bad))
    assert not isinstance(e.value, ReplayedMessage)
    assert p.fc.open(encrypted(good)).kind == KEY_INFO         # the genuine one still opens
    # framecrypt -> libolm
    sent = fc_to_wire(p.fc.seal(KEY_INFO, "t", key=new_key(1)))
    forged = json.loads(json.dumps(sent))
    forged["olm"]["data"]["ciphertext"]["body"] = _flip(sent["olm"]["data"]["ciphertext"]["body"],
                                                        at)
    with pytest.raises(OlmSessionError):
        p.lo.handle(p.fc_id, forged)
    assert only(p.lo.handle(p.fc_id, sent), "key-info-ack")


def test_tampered_session_ack_fails_on_both_sides() -> None:
    # libolm's session-ack, tampered, to framecrypt
    ident = OlmIdentity()
    lo = JitsiPeer("bob")
    fc = OlmChannel(ident, "alice", "bob", strict=False)
    ack = only(lo.handle("alice", fc_to_wire(fc.initiate())), "session-ack")
    ack["olm"]["data"]["ciphertext"]["body"] = _flip(ack["olm"]["data"]["ciphertext"]["body"], -3)
    bad = wire_to_fc(ack)
    assert isinstance(bad, SessionAck)
    with pytest.raises(OlmError):
        fc.complete(bad)
    assert not fc.ready
    # framecrypt's session-ack, tampered, to libolm
    lo2 = JitsiPeer("alice")
    fc2 = OlmChannel(OlmIdentity(), "bob", "alice", strict=False)
    init = wire_to_fc(lo2.session_init("bob"))
    assert isinstance(init, SessionInit)
    sent = fc_to_wire(fc2.accept(init, new_key(0)))
    sent["olm"]["data"]["ciphertext"]["body"] = _flip(sent["olm"]["data"]["ciphertext"]["body"],
                                                      -3)
    with pytest.raises(OlmSessionError):
        lo2.handle("bob", sent)


# --- a framecrypt Member (the key policy) in a room with a libolm participant ---------


def _route(member: Member, lo: JitsiPeer, actions: list[Action], now: float,
           log: list[Action]) -> None:
    """Deliver framecrypt's Sends to the libolm side and its replies back, to quiescence."""
    queue = list(actions)
    while queue:
        a = queue.pop(0)
        log.append(a)
        if isinstance(a, Send):
            assert a.to == lo.my_id
            for reply in lo.handle(member.id, fc_to_wire(a.message)):
                queue += member.receive(lo.my_id, wire_to_fc(reply), now)


@pytest.mark.parametrize("who", BOTH)
def test_member_policy_with_a_libolm_participant(who: Who) -> None:
    fc_id, lo_id = ("alice", "bob") if who == "framecrypt" else ("bob", "alice")
    cfg = PolicyConfig(join_debounce_s=0, leave_debounce_s=0, strict=False, sas_style="jitsi")
    m = Member(fc_id, config=cfg)
    lo = JitsiPeer(lo_id)
    lo.presence(fc_id, **m.identity_keys())
    log: list[Action] = []
    # lib-jitsi-meet: initSessions(), then updateKey() broadcasts key-info
    lo_key = os.urandom(32)
    lo.update_key(lo_key)
    _route(m, lo, m.start(0.0, [lo_id], identity_keys={lo_id: lo.id_keys}), 0.0, log)
    if who == "libolm":
        _route(m, lo, m.receive(lo_id, wire_to_fc(lo.session_init(fc_id)), 0.0), 0.0, log)
    assert ChannelReady(lo_id) in log
    _route(m, lo, m.receive(lo_id, encrypted(lo.key_info(fc_id)), 0.0), 0.0, log)
    sets = [a for a in log if isinstance(a, SetKey) and a.participant == lo_id]
    assert sets and sets[-1].material == lo_key and sets[-1].index == 0
    assert PeerKeyUpdated(lo_id, 0) in log
    own = m.current_key
    assert own is not None and lo.keys[fc_id].material == own.material
    # a manual rotation: key-info to libolm, its key-info-ack completes the switch
    _route(m, lo, m.rekey(1.0), 1.0, log)
    switched = [a for a in log if isinstance(a, KeySwitched)]
    assert switched[-1].cause == "manual" and switched[-1].acked == 1
    new = m.current_key
    assert new is not None and new.index == 1
    got = lo.keys[fc_id]
    assert (got.material, got.index) == (new.material, 1)
    # SAS, Jitsi style, started by framecrypt; both users confirm
    _route(m, lo, m.start_verification(lo_id, 2.0), 2.0, log)
    [ready] = [a for a in log if isinstance(a, SasReady)]
    lo_sas = lo.sas(fc_id)
    assert lo_sas is not None and ready.result.indices == lo_sas.indices
    assert ready.result.decimals == lo_sas.decimals
    _route(m, lo, m.confirm_sas(lo_id, True, 3.0), 3.0, log)
    assert lo.sas_verified(fc_id) is True
    _route(m, lo, m.receive(lo_id, wire_to_fc(lo.sas_mac(fc_id)), 3.0), 3.0, log)
    assert SasVerified(lo_id) in log and m.verified(lo_id)


# --- SAS against libolm's Sas ----------------------------------------------------------


class SasPair:
    """framecrypt's SasVerification and the libolm side over an Olm session between
    "alice" and "bob" (``who`` starts the verification)."""

    def __init__(self, who: Who, style: SasStyle, *,
                 fc_sees_peer_curve: str | None = None,
                 lo_sees_fc_ed: str | None = None,
                 fc_sees_peer_ed: str | None = None) -> None:
        self.p = Pair("framecrypt")
        self.p.lo.sas_style = style
        lo = self.p.lo
        ident = self.p.ident
        if lo_sees_fc_ed is not None:
            lo.presence(self.p.fc_id, curve25519=ident.curve25519, ed25519=lo_sees_fc_ed)
        self.fc = SasVerification(
            self.p.fc_id, self.p.lo_id, own_ed25519=ident.ed25519,
            own_curve25519=ident.curve25519,
            peer_ed25519=fc_sees_peer_ed or lo.id_keys["ed25519"],
            peer_curve25519=fc_sees_peer_curve or lo.id_keys["curve25519"], style=style)
        self.fc_result: SasResult | None = None
        self.fc_verified = False
        if who == "framecrypt":
            self._to_lo([self.fc.start()])
        else:
            self._to_fc([lo.start_sas(self.p.fc_id)])

    def _to_lo(self, msgs: tuple[Message, ...] | list[Message]) -> None:
        for msg in msgs:
            self._to_fc(self.p.lo.handle(self.p.fc_id, fc_to_wire(msg)))

    def _to_fc(self, objs: list[dict[str, Any]]) -> None:
        for obj in objs:
            step = self.fc.receive(wire_to_fc(obj))
            if step.ready is not None:
                self.fc_result = step.ready
            self.fc_verified |= step.verified
            self._to_lo(step.replies)

    @property
    def lo_result(self) -> OracleSas:
        r = self.p.lo.sas(self.p.fc_id)
        assert r is not None
        return r

    def confirm_both(self) -> None:
        self._to_lo(self.fc.confirm(True).replies)
        self._to_fc([self.p.lo.sas_mac(self.p.fc_id)])


STYLES: list[SasStyle] = ["jitsi", "framecrypt"]


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("who", BOTH)
def test_sas_strings_match_libolm(who: Who, style: SasStyle) -> None:
    s = SasPair(who, style)
    fc, lo = s.fc_result, s.lo_result
    assert fc is not None
    assert fc.indices == lo.indices and len(fc.indices) == 7
    assert fc.decimals == lo.decimals
    assert [n.lower() for n in fc.names] == list(lo.names)
    s.confirm_both()
    assert s.fc_verified and s.fc.verified          # framecrypt checked libolm's MAC
    assert s.p.lo.sas_verified(s.p.fc_id) is True   # libolm checked framecrypt's MAC


def test_sas_many_runs_match_libolm() -> None:
    """Over many runs every emoji index shows up: both sides agree on all of them."""
    seen: set[int] = set()
    for i in range(40):
        s = SasPair(BOTH[i % 2], STYLES[i // 2 % 2])
        assert s.fc_result is not None
        assert (s.fc_result.indices, s.fc_result.decimals) == (s.lo_result.indices,
                                                               s.lo_result.decimals)
        seen.update(s.lo_result.indices)
    assert len(seen) > 32


def test_framecrypt_style_sas_exposes_a_swapped_identity_key() -> None:
    """A man in the middle who swapped the curve25519 identity key (the Olm session is
    with him) but relays the SAS messages untouched: framecrypt's style binds the
    identity keys, so the two users see different strings; MACs fail too."""
    mallory = Account().identity_keys["curve25519"]
    s = SasPair("framecrypt", "framecrypt", fc_sees_peer_curve=mallory)
    assert s.fc_result is not None
    assert s.fc_result.indices != s.lo_result.indices
    assert s.fc_result.decimals != s.lo_result.decimals


def test_jitsi_style_sas_binds_the_ed25519_key_only_through_the_mac() -> None:
    """lib-jitsi-meet's info string has ids and SAS keys only: with a swapped curve25519
    key the strings still match (the documented limit of the Jitsi style). A swapped
    ed25519 key in presence fails the MAC on both sides."""
    mallory = Account().identity_keys
    s = SasPair("libolm", "jitsi", fc_sees_peer_curve=mallory["curve25519"])
    assert s.fc_result is not None and s.fc_result.indices == s.lo_result.indices
    s = SasPair("framecrypt", "jitsi", lo_sees_fc_ed=mallory["ed25519"],
                fc_sees_peer_ed=mallory["ed25519"])
    assert s.fc_result is not None and s.fc_result.indices == s.lo_result.indices
    s._to_lo(s.fc.confirm(True).replies)
    assert s.p.lo.sas_verified(s.p.fc_id) is False            # libolm refuses our MAC
    with pytest.raises(VerificationFailed):
        s._to_fc([s.p.lo.sas_mac(s.p.fc_id)])               # and we refuse libolm's


@pytest.mark.parametrize("style", STYLES)
def test_sas_commitment_mismatch_is_caught_by_libolm(style: SasStyle) -> None:
    """framecrypt's commitment is lib-jitsi-meet's sha256(pubkey + JSON(start)): libolm
    as initiator checks it (a tampered commitment is refused, so the check is real)."""
    p = Pair("framecrypt")
    p.lo.sas_style = style
    ident = p.ident
    fc = SasVerification(p.fc_id, p.lo_id, own_ed25519=ident.ed25519,
                         own_curve25519=ident.curve25519,
                         peer_ed25519=p.lo.id_keys["ed25519"],
                         peer_curve25519=p.lo.id_keys["curve25519"], style=style)
    start = p.lo.start_sas(p.fc_id)
    [accept] = fc.receive(wire_to_fc(start)).replies
    accept_obj = fc_to_wire(accept)
    good = dict(accept_obj["olm"]["data"])
    accept_obj["olm"]["data"]["commitment"] = _flip(good["commitment"], 0)
    [key] = p.lo.handle(p.fc_id, accept_obj)
    replies = p.lo.handle(p.fc_id, fc_to_wire(fc.receive(wire_to_fc(key)).replies[0]))
    assert only(replies, "error")["olm"]["data"]["error"] == "OlmAdapter commitments mismatched"
    assert p.lo.sas(p.fc_id) is None


def test_jitsi_style_shows_lib_jitsi_meets_emoji() -> None:
    """The symbols a framecrypt user is shown in a Jitsi-style SAS are those the Jitsi
    user is shown (run until a string holds index 30 or 60, where the tables differ)."""
    for i in range(300):
        s = SasPair(BOTH[i % 2], "jitsi")
        assert s.fc_result is not None and s.fc_result.indices == s.lo_result.indices
        if {30, 60} & set(s.lo_result.indices):
            assert s.fc_result.emoji == s.lo_result.emoji
            return
    pytest.fail("no SAS string with index 30 or 60 in 300 runs")


def test_emoji_tables_differ_only_where_lib_jitsi_meet_departs_from_matrix() -> None:
    """Names agree everywhere (case aside); the symbols differ only at 30 and 60."""
    assert [n.lower() for _, n in EMOJI] == [n for _, n in JITSI_EMOJI]
    assert [i for i in range(64) if EMOJI[i][0] != JITSI_EMOJI[i][0]] == [30, 60]
