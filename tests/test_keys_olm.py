"""Olm key exchange: the Jitsi JSON envelope, pairwise channels (vodozemac), refusal of
replayed / reordered / forged messages, the participant state machine over a signaling
bus, and a real aiortc data channel carrying the envelopes."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keys_helpers import FAST, PureNet, room, run, seeded, vp8

from framecrypt import Pool, jitsi
from framecrypt.errors import FramecryptError
from framecrypt.keys import envelope
from framecrypt.keys.driver import PoolDriver
from framecrypt.keys.envelope import (
    Ciphertext,
    KeyInfo,
    KeyInfoAck,
    SasMac,
    SessionAck,
    SessionInit,
)
from framecrypt.keys.errors import (
    KeyExchangeError,
    MalformedMessage,
    OlmError,
    ReplayedMessage,
    UnexpectedMessage,
    UnknownSession,
)
from framecrypt.keys.olm import (
    MediaKey,
    OlmChannel,
    OlmIdentity,
    b64_decode,
    key_payload,
    prekey_identity_key,
)
from framecrypt.keys.policy import (
    ChannelReady,
    Event,
    KeySwitched,
    Member,
    PeerKeyUpdated,
    SetKey,
)

KEY_A = MediaKey(bytes(range(32)), 0)
KEY_B = MediaKey(bytes(range(100, 132)), 3)


def pair() -> tuple[OlmChannel, OlmChannel]:
    """An established channel a <-> b (a initiates: "a" < "b")."""
    a_id, b_id = OlmIdentity(), OlmIdentity()
    a = OlmChannel(a_id, "a", "b")
    b = OlmChannel(b_id, "b", "a")
    ack = b.accept(a.initiate(), KEY_B)
    opened = a.complete(ack)
    assert opened.key is not None and opened.key.material == KEY_B.material
    return a, b


# --- the envelope -----------------------------------------------------------------------


def test_envelope_is_jitsis_json_shape() -> None:
    init = SessionInit("IDKEY", "OTKEY", "u-1", "EDKEY")
    assert envelope.to_dict(init) == {
        "type": "olm",
        "olm": {"type": "session-init",
                "data": {"idKey": "IDKEY", "otKey": "OTKEY", "uuid": "u-1", "edKey": "EDKEY"}},
    }
    info = KeyInfo(Ciphertext(1, "Ym9keQ"), "u-2")
    assert envelope.to_dict(info)["olm"] == {
        "type": "key-info", "data": {"ciphertext": {"type": 1, "body": "Ym9keQ"}, "uuid": "u-2"}}
    mac = SasMac("t", "KEYS", (("ed25519:b", "M1"),))
    assert envelope.to_dict(mac)["olm"]["data"] == {
        "keys": "KEYS", "mac": {"ed25519:b": "M1"}, "transactionId": "t"}


@pytest.mark.parametrize("msg", [
    SessionInit("I", "O", "u", None),
    SessionInit("I", "O", "u", "E"),
    SessionAck(Ciphertext(0, "AAAA"), "u", "E"),
    KeyInfo(Ciphertext(1, "AAAA"), "u"),
    KeyInfoAck(Ciphertext(1, "AAAA"), "u"),
    envelope.VisitorKey(Ciphertext(1, "AA"), "u"),
    envelope.VisitorKeyAck(Ciphertext(1, "AA"), "u"),
    envelope.Ping(Ciphertext(1, "AA"), "u"),
    envelope.Pong(Ciphertext(1, "AA"), "u"),
    envelope.ErrorMessage("Session already established"),
    envelope.SasStart("t"),
    envelope.SasAccept("t", "c"),
    envelope.SasKey("t", "k"),
    SasMac("t", "k", (("curve25519:a", "x"), ("ed25519:a", "y"))),
])
def test_envelope_round_trip(msg: envelope.Message) -> None:
    assert envelope.from_json(envelope.to_json(msg)) == msg


@pytest.mark.parametrize("text", [
    "", "not json", "[]", '{"type":"other"}', '{"type":"olm"}', '{"type":"olm","olm":[]}',
    '{"type":"olm","olm":{"type":"key-info","data":{}}}',
    '{"type":"olm","olm":{"type":"key-info","data":{"ciphertext":{"type":2,"body":"x"},'
    '"uuid":"u"}}}',
    '{"type":"olm","olm":{"type":"key-info","data":{"ciphertext":{"type":1,"body":7},'
    '"uuid":"u"}}}',
    '{"type":"olm","olm":{"type":"session-init","data":{"idKey":"a","otKey":"b"}}}',
    '{"type":"olm","olm":{"type":"nope","data":{}}}',
    '{"type":"olm","olm":{"type":"sas-mac","data":{"keys":"k","transactionId":"t","mac":{}}}}',
    "x" * (envelope.MAX_ENVELOPE_CHARS + 1),
])
def test_malformed_envelopes_are_refused(text: str) -> None:
    with pytest.raises(MalformedMessage):
        envelope.from_json(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({"type": st.just("olm"), "olm": st.fixed_dictionaries({
    "type": st.sampled_from(sorted([*envelope.ENCRYPTED_KINDS, "session-init", "sas-mac",
                                    "sas-key", "error", "x"])),
    "data": st.dictionaries(st.sampled_from(["ciphertext", "uuid", "idKey", "otKey", "mac",
                                             "keys", "transactionId", "key", "error"]),
                            json_values, max_size=6)})}))
def test_envelope_parser_only_raises_malformed(obj: dict[str, object]) -> None:
    try:
        envelope.from_dict(obj)
    except MalformedMessage:
        pass


# --- pairwise channels ----------------------------------------------------------------


def test_session_setup_follows_jitsi_roles() -> None:
    a_id, b_id = OlmIdentity(), OlmIdentity()
    a = OlmChannel(a_id, "alice", "bob")
    b = OlmChannel(b_id, "bob", "alice")
    assert a.initiator and not b.initiator
    with pytest.raises(UnexpectedMessage):
        b.initiate()                         # the higher id never initiates
    init = a.initiate()
    assert init.id_key == a_id.curve25519 and init.ed_key == a_id.ed25519
    assert len(b64_decode(init.ot_key)) == 32
    ack = b.accept(init, KEY_B)
    assert ack.ciphertext.type == 0          # a pre-key message, as in Jitsi
    assert prekey_identity_key(b64_decode(ack.ciphertext.body)) == b_id.curve25519
    assert b.ready and not a.ready
    opened = a.complete(ack)
    assert a.ready and opened.kind == "session-ack"
    assert opened.key == KEY_B
    assert a.peer_curve25519 == b_id.curve25519 and a.peer_ed25519 == b_id.ed25519
    assert b.peer_curve25519 == a_id.curve25519


def test_key_info_round_trip_and_jitsi_plaintext() -> None:
    a, b = pair()
    for key in (KEY_A, MediaKey(None, 4), None):
        msg = a.seal("key-info", "u", key=key)
        assert isinstance(msg, KeyInfo)
        opened = b.open(msg)
        assert opened.kind == "key-info" and opened.uuid == "u" and opened.key == key
    assert key_payload(KEY_A) == {"key": base64.b64encode(KEY_A.material or b"").decode(),
                                  "keyIndex": 0}
    assert key_payload(MediaKey(None, 2)) == {"key": False, "keyIndex": 2}


def test_non_strict_accepts_lib_jitsi_meet_plaintext() -> None:
    """lib-jitsi-meet sends bare {key, keyIndex} without type/seq."""
    a_id, b_id = OlmIdentity(), OlmIdentity()
    a = OlmChannel(a_id, "a", "b", strict=False)
    b = OlmChannel(b_id, "b", "a", strict=False)
    a.complete(b.accept(a.initiate(), None))
    plain = json.dumps({"key": base64.b64encode(bytes(32)).decode(), "keyIndex": 5}).encode()
    assert b._session is not None
    t, body = b._session.encrypt(plain).to_parts()
    msg = KeyInfo(Ciphertext(t, base64.b64encode(body).decode().rstrip("=")), "u")
    assert a.open(msg).key == MediaKey(bytes(32), 5)
    strict = OlmChannel(OlmIdentity(), "c", "d")
    assert strict.strict


def test_replayed_message_is_refused() -> None:
    a, b = pair()
    msg = a.seal("key-info", "u", key=KEY_A)
    b.open(msg)
    with pytest.raises(ReplayedMessage) as e:
        b.open(msg)
    assert e.value.reason == "duplicate"
    b.open(a.seal("key-info", "u2", key=KEY_A))   # the channel still works


def test_reordered_message_is_refused() -> None:
    a, b = pair()
    first = a.seal("key-info", "u1", key=KEY_A)
    second = a.seal("key-info", "u2", key=KEY_B)
    assert b.open(second).key == KEY_B
    with pytest.raises(ReplayedMessage) as e:
        b.open(first)               # Olm alone would decrypt it (skipped message key)
    assert e.value.reason == "out of order"


def test_forged_and_corrupted_messages_are_refused() -> None:
    a, b = pair()
    good = a.seal("key-info", "u", key=KEY_A)
    body = bytearray(b64_decode(good.ciphertext.body))
    body[-5] ^= 1
    flipped = KeyInfo(Ciphertext(1, base64.b64encode(bytes(body)).decode()), "u")
    with pytest.raises(OlmError):
        b.open(flipped)
    with pytest.raises(OlmError):
        b.open(KeyInfo(Ciphertext(1, base64.b64encode(b"\x03" + bytes(80)).decode()), "u"))
    with pytest.raises(MalformedMessage):
        b.open(KeyInfo(Ciphertext(1, "not base64 !"), "u"))
    # a third party with its own session to b cannot inject into the a<->b channel
    c_id = OlmIdentity()
    c = OlmChannel(c_id, "a", "b")           # pretends to be "a"
    c.complete(OlmChannel(OlmIdentity(), "b", "a").accept(c.initiate(), None))
    with pytest.raises(OlmError):
        b.open(c.seal("key-info", "u", key=KEY_A))
    assert b.open(good).key == KEY_A         # the genuine one still opens


def test_relabelled_ciphertext_is_refused() -> None:
    a, b = pair()
    info = a.seal("key-info", "u", key=KEY_A)
    with pytest.raises(OlmError):
        b.open(KeyInfoAck(info.ciphertext, info.uuid))


def test_session_messages_out_of_turn() -> None:
    a_id, b_id = OlmIdentity(), OlmIdentity()
    a = OlmChannel(a_id, "a", "b")
    b = OlmChannel(b_id, "b", "a")
    init = a.initiate()
    ack = b.accept(init, None)
    with pytest.raises(UnexpectedMessage):
        b.accept(init, None)                 # second session-init
    with pytest.raises(UnexpectedMessage):
        a.complete(SessionAck(ack.ciphertext, "other-uuid"))
    a.complete(ack)
    with pytest.raises(ReplayedMessage):
        a.complete(ack)                      # replayed session-ack
    with pytest.raises(UnexpectedMessage):
        OlmChannel(OlmIdentity(), "x", "y").open(KeyInfo(Ciphertext(1, "AA"), "u"))


def test_published_identity_keys_are_enforced() -> None:
    a_id, b_id, m_id = OlmIdentity(), OlmIdentity(), OlmIdentity()
    # b knows a's published key; m's session-init claiming to be a is refused
    b = OlmChannel(b_id, "b", "a", peer_curve25519=a_id.curve25519)
    m = OlmChannel(m_id, "a", "b")
    with pytest.raises(OlmError):
        b.accept(m.initiate(), None)
    # a knows b's published key; a session-ack built by m is refused
    a = OlmChannel(a_id, "a", "b", peer_curve25519=b_id.curve25519)
    init = a.initiate()
    ack = OlmChannel(m_id, "b", "a").accept(init, None)
    with pytest.raises(OlmError):
        a.complete(ack)


def test_reprs_show_no_key_material() -> None:
    a, b = pair()
    msg = a.seal("key-info", "u", key=KEY_A)
    texts = [repr(KEY_A), str(KEY_A), repr(msg), repr(a), repr(b), repr(a.identity),
             repr(b.open(msg)), repr(SetKey("a", KEY_A.material or b"", 0))]
    secrets = [KEY_A.material.hex(), base64.b64encode(KEY_A.material).decode(),  # type: ignore[union-attr]
               repr(KEY_A.material), msg.ciphertext.body[:16]]
    for t in texts:
        for s in secrets:
            assert s not in t, t


# --- the participant state machine over a signaling bus ----------------------------


def three(net: PureNet) -> dict[str, Member]:
    ms = {}
    for i, pid in enumerate(("alice", "bob", "carol")):
        rng, uid = seeded(i)
        ms[pid] = Member(pid, config=FAST, rng=rng, uuid_factory=uid)
        net.enter(ms[pid])
        net.settle()
    return ms


def test_three_members_exchange_keys() -> None:
    net = PureNet()
    three(net)
    for a in ("alice", "bob", "carol"):
        assert {e.peer for e in net.events(a, ChannelReady)} == {"alice", "bob", "carol"} - {a}
        for b in ("alice", "bob", "carol"):
            if a != b:
                assert net.opens(a, b), (a, b)
        assert net.events(a, KeySwitched)[0].cause == "start"


def test_member_refuses_replayed_reordered_forged_and_unknown() -> None:
    net = PureNet()
    ms = three(net)
    bob, alice = ms["bob"], ms["alice"]
    ch = alice.channel("bob")
    assert ch is not None
    m1 = ch.seal("key-info", "x1", key=KEY_A)
    m2 = ch.seal("key-info", "x2", key=KEY_B)
    bob.receive("alice", m2, net.now)
    with pytest.raises(ReplayedMessage):
        bob.receive("alice", m2, net.now)                 # replayed
    with pytest.raises(ReplayedMessage):
        bob.receive("alice", m1, net.now)                 # reordered
    forged = KeyInfo(Ciphertext(1, m1.ciphertext.body[:-4] + "AAAA"), "x3")
    with pytest.raises(OlmError):
        bob.receive("alice", forged, net.now)             # forged
    with pytest.raises(UnknownSession):
        bob.receive("mallory", m2, net.now)               # not in the room
    with pytest.raises(UnexpectedMessage):
        bob.receive("alice", SessionInit("a", "b", "c"), net.now)
    # all typed, all FramecryptError
    for cls in (ReplayedMessage, OlmError, UnknownSession, UnexpectedMessage,
                MalformedMessage):
        assert issubclass(cls, KeyExchangeError) and issubclass(cls, FramecryptError)
    # and the channel still works afterwards
    acts = bob.receive("alice", ch.seal("key-info", "x4", key=MediaKey(bytes(32), 9)), net.now)
    assert PeerKeyUpdated("alice", 9) in acts


def test_refused_messages_leave_the_room_working() -> None:
    """Replay every message of the run into its recipient again: each is refused with a
    typed error and nobody's keys change."""
    net = PureNet()
    three(net)
    before = {pid: {p: dict(r) for p, r in m.rings.items()} for pid, m in net.models.items()}
    net.raise_errors = False
    for frm, to, text in list(net.wire):
        net.queue.append((frm, to, text))
    net.deliver()
    assert net.refused and all(isinstance(e, KeyExchangeError) for _, _, e in net.refused)
    after = {pid: {p: dict(r) for p, r in m.rings.items()} for pid, m in net.models.items()}
    assert before == after


# --- with real pools --------------------------------------------------------------------


def test_three_participants_with_pools_decode_each_other() -> None:
    async def main() -> None:
        async with room() as r:
            for p in ("alice", "bob", "carol"):
                await r.enter(p)
            for a in ("alice", "bob", "carol"):
                f = vp8(ord(a[0]))
                sealed = await r.seal(a, f)
                for b in ("alice", "bob", "carol"):
                    if b != a:
                        assert await r.open(b, a, sealed, f) == f.data
            assert not r.errors

    run(main)


def test_no_key_material_in_logs_or_reprs(caplog: pytest.LogCaptureFixture,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    materials: list[bytes] = []
    texts: list[str] = []
    real_apply = PoolDriver._apply

    async def spy(self: PoolDriver, actions: list) -> None:  # type: ignore[type-arg]
        for a in actions:
            texts.append(repr(a))
            if isinstance(a, SetKey):
                materials.append(a.material)
        await real_apply(self, actions)

    monkeypatch.setattr(PoolDriver, "_apply", spy)

    async def main() -> None:
        async with room() as r:
            for p in ("alice", "bob", "carol"):
                await r.enter(p)
            await r.enter("v1", visitor=True)
            await r.drivers["alice"].start_verification("bob")
            await r.settle()
            await r.leave("carol")
            for d in r.drivers.values():
                texts.extend([repr(d), repr(d.member), repr(d.events), repr(d.data_sender),
                              repr(d.data_receiver), repr(d.member.current_key),
                              repr(d.member.visitor_key), repr(d.pool)])
                texts.extend(repr(c) for c in d.member._channels.values())
            texts.append(repr(r.drivers["alice"].encrypt_data(b"chat", now_ms=1)))

    with caplog.at_level(logging.DEBUG, logger="framecrypt"):
        run(main)
    assert len(materials) > 10
    log_text = caplog.text
    assert "set key of" in log_text and "send key-info" in log_text   # the driver did log
    everything = log_text + "\n".join(texts)
    for m in materials:
        b64 = base64.b64encode(m).decode()
        for form in (m.hex(), m.hex()[:16], b64, b64[:16], repr(m)[2:24]):
            assert form not in everything


# --- a real aiortc data channel --------------------------------------------------------


def test_over_an_aiortc_data_channel() -> None:
    aiortc = pytest.importorskip("aiortc")

    async def main() -> None:
        pc_a, pc_b = aiortc.RTCPeerConnection(), aiortc.RTCPeerConnection()
        pools = [Pool(workers=1, transport="inline", format="jitsi") for _ in range(2)]
        drivers: list[PoolDriver] = []
        try:
            for p in pools:
                await p.start()
            loop = asyncio.get_running_loop()
            ch_a = pc_a.createDataChannel("e2ee")
            opened = loop.create_future()
            got_b: asyncio.Future[object] = loop.create_future()
            ch_a.on("open", lambda: opened.done() or opened.set_result(True))

            @pc_b.on("datachannel")
            def on_datachannel(ch: object) -> None:
                got_b.set_result(ch)

            await pc_a.setLocalDescription(await pc_a.createOffer())
            await pc_b.setRemoteDescription(pc_a.localDescription)
            await pc_b.setLocalDescription(await pc_b.createAnswer())
            await pc_a.setRemoteDescription(pc_b.localDescription)
            try:
                await asyncio.wait_for(opened, 10)
                ch_b = await asyncio.wait_for(got_b, 10)
            except TimeoutError:
                pytest.skip("aiortc could not open a data channel over loopback here")
            ready = {who: loop.create_future() for who in ("alice", "bob")}

            def watch(who: str) -> Callable[[Event], None]:
                def cb(ev: Event) -> None:
                    if isinstance(ev, PeerKeyUpdated) and not ready[who].done():
                        ready[who].set_result(True)
                return cb

            a = PoolDriver(Member("alice", config=FAST), pools[0], lambda to, t: ch_a.send(t),
                           on_event=watch("alice"))
            b = PoolDriver(Member("bob", config=FAST), pools[1],
                           lambda to, t: ch_b.send(t),  # type: ignore[attr-defined]
                           on_event=watch("bob"))
            drivers += [a, b]
            ch_a.on("message", lambda t: a.feed("bob", t))
            ch_b.on("message", lambda t: b.feed("alice", t))  # type: ignore[attr-defined]
            await a.start()
            await b.start(members=["alice"])
            await a.join("bob")
            await asyncio.wait_for(asyncio.gather(*ready.values()), 10)
            # the join ratchet (debounce 0) has run on alice before she gave bob her key
            for (src, dst) in ((0, 1), (1, 0)):
                name = ("alice", "bob")[src]
                f = vp8(src)
                sealed = await pools[src].encrypt(name, f)
                opened_frame = await pools[dst].decrypt(name, type(f)(sealed, "vp8",
                                                                      keyframe=True))
                assert opened_frame == f.data
            assert a.counters["refused"] == b.counters["refused"] == 0
        finally:
            for d in drivers:
                await d.close()
            await pc_a.close()
            await pc_b.close()
            for p in pools:
                await p.close()

    run(main, timeout=20)


def test_jitsi_ratchet_matches_pool() -> None:
    """The policy's own ratchet and the pool's (format="jitsi") agree."""
    async def main() -> None:
        async with Pool(workers=1, transport="inline", format="jitsi") as pool:
            m = bytes(range(32))
            await pool.set_key("x", m, 0)
            await pool.ratchet_key("x", 0)
            f = vp8(1)
            sealed = await pool.encrypt("x", f)
            assert jitsi.unprotect(sealed, key=jitsi.derive_key(jitsi.ratchet(m)), codec="vp8",
                                   keyframe=True) == f.data

    run(main)
