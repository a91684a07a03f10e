"""The automatic key policy: ratchet on join (debounced, joiners never get a pre-join key),
rotation on leave (acks or timeout), visitors and their separate key, E2EE ping; pure
with a fake clock, then with real pools."""

from __future__ import annotations

import json
import zlib

import pytest
from keys_helpers import FAST, PureNet, room, run, seeded, vp8

from framecrypt import jitsi
from framecrypt.errors import AuthenticationFailed, UnknownKey
from framecrypt.keys import envelope
from framecrypt.keys.driver import demo_report, run_demo
from framecrypt.keys.errors import UnexpectedMessage
from framecrypt.keys.olm import MediaKey
from framecrypt.keys.ping import PingConfig, PingTracker
from framecrypt.keys.policy import (
    KeyAckTimeout,
    KeyRatcheted,
    KeySwitched,
    Member,
    PeerKeyDisabled,
    PingFailed,
    PingRtt,
    PolicyConfig,
    RemoveKeys,
    SetKey,
    VisitorKeyUpdated,
    visitor_stream_key,
)

JITSI_LIKE = PolicyConfig()          # 5 s debounce, 5 s ack wait


def member(pid: str, config: PolicyConfig = JITSI_LIKE, *, visitor: bool = False) -> Member:
    rng, uid = seeded(zlib.crc32(pid.encode()))
    return Member(pid, role="visitor" if visitor else "member", config=config, rng=rng,
                  uuid_factory=uid)


def set_keys(net: PureNet, owner: str, participant: str) -> list[SetKey]:
    return [a for a in net.actions[owner]
            if isinstance(a, SetKey) and a.participant == participant]


# --- join ----------------------------------------------------------------------------


def test_join_ratchets_after_the_debounce_and_holds_the_key_until_then() -> None:
    net = PureNet()
    alice = net.add(member("alice"))
    net.apply("alice", alice.start(0.0))
    k0 = alice.current_key
    assert k0 is not None and k0.material is not None
    net.enter(member("bob"))
    net.settle()
    assert net.opens("alice", "bob")            # bob's session-ack carried his key
    assert not net.opens("bob", "alice")        # alice holds hers until she ratcheted
    net.advance(4.9)
    assert not net.events("alice", KeyRatcheted) and not net.opens("bob", "alice")
    net.advance(0.2)
    [ev] = net.events("alice", KeyRatcheted)
    assert ev.at == pytest.approx(5.0) and ev.key_index == 0
    assert net.opens("bob", "alice")
    # bob was never handed the key alice used before he joined
    got = set_keys(net, "bob", "alice")
    assert got and all(s.material != k0.material for s in got)
    assert got[0].material == jitsi.ratchet(k0.material)
    assert not net.events("bob", KeyRatcheted)  # the joiner does not ratchet


def test_joins_are_debounced_and_capped() -> None:
    net = PureNet()
    alice = net.add(member("alice"))
    net.apply("alice", alice.start(0.0))
    net.advance(1.0)
    net.enter(member("bob"))
    net.advance(2.0)                 # t = 3
    net.enter(member("carol"))
    net.advance(10.0)                # t = 13
    rs = net.events("alice", KeyRatcheted)
    assert [r.at for r in rs] == [pytest.approx(8.0)]       # one ratchet, 5 s after carol
    for pid in ("bob", "carol"):
        assert net.opens(pid, "alice")
    # a join every 4 s would postpone a plain debounce forever: max_delay_s caps it
    for i in range(8):
        net.enter(member(f"d{i}"))
        net.advance(4.0)
    later = [r.at for r in net.events("alice", KeyRatcheted)][1:]
    assert later and later[0] - 13.0 <= JITSI_LIKE.max_delay_s + 1e-9
    everyone = [p for p in net.members if p != "alice"]
    net.advance(6.0)
    assert all(net.opens(p, "alice") for p in everyone)


# --- leave -----------------------------------------------------------------------------


def abc(config: PolicyConfig = JITSI_LIKE) -> PureNet:
    net = PureNet()
    for pid in ("alice", "bob", "carol"):
        net.enter(member(pid, config))
        net.advance(6.0)
    return net


def test_leave_rotates_after_all_acks() -> None:
    net = abc()
    t_leave = net.now
    before = {p: net.members[p].current_key for p in ("alice", "bob")}
    net.exit("carol")
    for p in ("alice", "bob"):
        assert RemoveKeys("carol") in net.actions[p]          # at once
        assert "carol" not in net.models[p].rings
    net.advance(4.9)
    assert not [e for e in net.events("alice", KeySwitched) if e.cause == "leave"]
    net.advance(0.2)
    for p in ("alice", "bob"):
        [sw] = [e for e in net.events(p, KeySwitched) if e.cause == "leave"]
        assert sw.at == pytest.approx(t_leave + 5.0)
        assert sw.key_index == 1 and sw.acked == 1 and sw.timed_out == 0
        new = net.members[p].current_key
        assert new is not None and new.index == 1 and new != before[p]
    assert net.opens("alice", "bob") and net.opens("bob", "alice")
    assert not net.opens("carol", "alice") and not net.opens("carol", "bob")


def test_switch_after_ack_timeout() -> None:
    net = abc()
    t_leave = net.now

    def drop_acks(frm: str, to: str, text: str) -> list[tuple[str, str, str]]:
        if frm == "bob" and json.loads(text)["olm"]["type"] == "key-info-ack":
            return []
        return [(frm, to, text)]

    net.intercept = drop_acks
    net.exit("carol")
    net.advance(9.9)
    assert not [e for e in net.events("alice", KeySwitched) if e.cause == "leave"]
    net.advance(0.2)
    [sw] = [e for e in net.events("alice", KeySwitched) if e.cause == "leave"]
    assert sw.at == pytest.approx(t_leave + 10.0) and sw.timed_out == 1
    assert KeyAckTimeout("bob", 1) in net.events("alice")
    assert net.opens("bob", "alice")            # bob had the key, only the ack was lost


def test_leave_during_a_pending_rotation_starts_over() -> None:
    net = abc()
    net.enter(member("dave"))
    net.advance(6.0)

    def carol_never_acks(frm: str, to: str, text: str) -> list[tuple[str, str, str]]:
        if frm == "carol" and json.loads(text)["olm"]["type"] == "key-info-ack":
            return []
        return [(frm, to, text)]

    net.intercept = carol_never_acks
    net.exit("dave")
    net.advance(5.5)                          # rotation sent, carol's ack missing
    alice = net.members["alice"]
    assert alice.pending_key_index == 1
    seen_by_carol = net.models["carol"].rings["alice"][1]
    net.exit("carol")                         # carol got the pending key: start over
    assert alice.pending_key_index is None
    net.advance(6.0)
    final = alice.current_key
    assert final is not None and final.index == 1 and final.material != seen_by_carol
    assert net.opens("bob", "alice") and not net.opens("carol", "alice")


def test_rekey_and_config_switches() -> None:
    cfg = PolicyConfig(ratchet_on_join=False, rotate_on_leave=False, join_debounce_s=0,
                       leave_debounce_s=0)
    net = PureNet()
    for pid in ("alice", "bob"):
        net.enter(member(pid, cfg))
        net.settle()
    assert net.opens("bob", "alice") and net.opens("alice", "bob")   # no hold without ratchet
    net.enter(member("carol", cfg))
    net.exit("carol")
    net.advance(10)
    assert not net.events("alice", KeyRatcheted)
    assert [e.cause for e in net.events("alice", KeySwitched)] == ["start"]
    net.apply("alice", net.members["alice"].rekey(net.now))
    net.settle()
    assert [e.cause for e in net.events("alice", KeySwitched)] == ["start", "manual"]
    assert net.opens("bob", "alice")
    with pytest.raises(ValueError):
        PolicyConfig(keyring_size=0)


# --- visitors --------------------------------------------------------------------------


def visitor_room(config: PolicyConfig = JITSI_LIKE) -> PureNet:
    net = PureNet()
    for pid in ("alice", "bob"):
        net.enter(member(pid, config))
        net.advance(6.0)
    for pid in ("v1", "v2"):
        net.enter(member(pid, config, visitor=True))
        net.advance(6.0)
    return net


def visitor_material(net: PureNet, m: str) -> tuple[int, bytes]:
    return net.models[m].sealing_key(m + "#visitors")


def test_visitors_get_the_visitor_key_and_never_a_member_key() -> None:
    net = visitor_room()
    alice, bob = net.members["alice"], net.members["bob"]
    assert alice.holder == "alice" and net.members["v1"].holder == "alice"
    vkey = alice.visitor_key
    assert vkey is not None and vkey.material is not None and bob.visitor_key == vkey
    for v in ("v1", "v2"):
        for m in ("alice", "bob"):
            slot, mat = visitor_material(net, m)
            assert mat == visitor_stream_key(vkey.material, m)
            assert net.models[v].can_open(m, slot, mat)      # visitors open visitor streams
            assert not net.opens(v, m)                        # … never member streams
        # every key a visitor was ever given is a visitor stream key
        allowed = {visitor_stream_key(vkey.material, m) for m in ("alice", "bob")}
        assert {a.material for a in net.actions[v] if isinstance(a, SetKey)} <= allowed
        # visitors only talk to the holder
        assert net.members[v].channel("bob") is None and bob.channel(v) is None
    # nothing that left the holder for a visitor carries alice's member key
    ka = alice.current_key
    assert ka is not None and ka.material is not None
    assert not net.models["v1"].rings.get("alice", {}).get(0) == ka.material
    # two members never share a visitor (key, IV) space
    assert visitor_material(net, "alice")[1] != visitor_material(net, "bob")[1]


def test_visitor_key_rotation_leaves_member_keys_alone() -> None:
    net = visitor_room()
    member_keys = {m: net.members[m].current_key for m in ("alice", "bob")}
    n_member_actions = {m: len([a for a in net.actions[m] if isinstance(a, SetKey)
                                and a.participant == m]) for m in ("alice", "bob")}
    old = {m: visitor_material(net, m) for m in ("alice", "bob")}
    net.exit("v1")
    net.advance(6.0)
    rotated = [e for e in net.events("alice", VisitorKeyUpdated) if e.cause == "rotated"]
    assert rotated and rotated[-1].key_index == 1
    for m in ("alice", "bob"):
        assert net.members[m].current_key == member_keys[m]
        assert len([a for a in net.actions[m] if isinstance(a, SetKey)
                    and a.participant == m]) == n_member_actions[m]
        assert not [e for e in net.events(m, KeySwitched) if e.cause != "start"] or \
            all(e.at < net.now - 6.0 for e in net.events(m, KeySwitched))
        slot, mat = visitor_material(net, m)
        assert (slot, mat) != old[m]
        assert net.models["v2"].can_open(m, slot, mat)
        assert not net.models["v1"].can_open(m, slot, mat)     # the leaver is out


def test_holder_leaves_next_member_takes_over() -> None:
    net = visitor_room()
    net.enter(member("carol"))
    net.advance(6.0)
    net.exit("alice")
    net.advance(12.0)
    bob = net.members["bob"]
    assert bob.holder == "bob" and net.members["v2"].holder == "bob"
    assert bob.channel("v2") is not None and bob.channel("v2").ready  # type: ignore[union-attr]
    for m in ("bob", "carol"):
        slot, mat = visitor_material(net, m)
        assert net.models["v1"].can_open(m, slot, mat)
        assert net.models["v2"].can_open(m, slot, mat)
        assert not net.models["alice"].rings.get(m + "#visitors", {}).get(slot) == mat
    assert "alice" not in net.models["v1"].rings


def test_visitor_cannot_push_keys() -> None:
    net = visitor_room()
    v1 = net.members["v1"]
    ch = v1.channel("alice")
    assert ch is not None
    forged = ch.seal("visitor-key", "u", key=v1.visitor_key)
    with pytest.raises(UnexpectedMessage):
        net.members["alice"].receive("v1", forged, net.now)


# --- ping --------------------------------------------------------------------------------


def test_ping_rtt_and_failure_after_misses() -> None:
    cfg = PolicyConfig(join_debounce_s=0, leave_debounce_s=0,
                       ping=PingConfig(interval_s=10, timeout_s=2, max_misses=3))
    net = PureNet()
    for pid in ("alice", "bob"):
        net.enter(member(pid, cfg))
        net.settle()
    net.advance(25)
    rtts = [e for e in net.events("alice", PingRtt) if e.peer == "bob"]
    assert len(rtts) >= 3 and all(e.rtt_s == 0 for e in rtts)
    # every ping and pong travelled encrypted on the Olm channel
    kinds = {json.loads(t)["olm"]["type"] for _, _, t in net.wire}
    assert {"ping", "pong"} <= kinds
    for _, _, t in net.wire:
        if json.loads(t)["olm"]["type"] in ("ping", "pong"):
            assert set(json.loads(t)["olm"]["data"]) == {"ciphertext", "uuid"}

    net.intercept = lambda f, to, t: ([] if json.loads(t)["olm"]["type"] == "pong"
                                      else [(f, to, t)])
    net.advance(45)
    fails = [e for e in net.events("alice", PingFailed) if e.peer == "bob"]
    assert len(fails) == 1 and fails[0].misses == 3
    net.intercept = None
    n = len(net.events("alice", PingRtt))
    net.advance(20)
    assert len(net.events("alice", PingRtt)) > n


def test_ping_tracker_alone() -> None:
    t = PingTracker(PingConfig(interval_s=5, timeout_s=1, max_misses=2), start=0.0)
    first = t.poll(0.0)
    assert first.send_id == 1 and t.deadline == 1.0
    assert t.on_pong(99, 0.5) is None                  # not the outstanding ping
    assert t.on_pong(1, 0.25) == pytest.approx(0.25)
    assert t.poll(1.0).send_id is None and t.deadline == 5.0
    assert t.poll(5.0).send_id == 2
    miss = t.poll(6.0)
    assert miss.missed and not miss.failed
    t.poll(10.0)
    second = t.poll(11.0)
    assert second.missed and second.failed and t.misses == 2
    with pytest.raises(ValueError):
        PingConfig(interval_s=1, timeout_s=2)


# --- with real pools --------------------------------------------------------------------


def test_leaver_opens_nothing_sealed_after_the_switch() -> None:
    async def main() -> None:
        async with room() as r:
            for p in ("alice", "bob", "carol"):
                await r.enter(p)
            f = vp8(1)
            before = await r.seal("alice", f)
            assert await r.open("carol", "alice", before, f) == f.data
            await r.leave("carol")
            for p in ("alice", "bob"):
                sw = [e for e in r.drivers[p].events
                      if isinstance(e, KeySwitched) and e.cause == "leave"]
                assert len(sw) == 1 and sw[0].key_index == 1 and sw[0].acked == 1
            for sender, other in (("alice", "bob"), ("bob", "alice")):
                for i in range(3):
                    g = vp8(10 + i)
                    sealed = await r.seal(sender, g)
                    assert sealed[-1] == 1                    # KID: the new key index
                    assert await r.open(other, sender, sealed, g) == g.data
                    with pytest.raises((AuthenticationFailed, UnknownKey)):
                        await r.open("carol", sender, sealed, g)
            assert not r.errors

    run(main)


def test_visitors_with_pools() -> None:
    async def main() -> None:
        async with room() as r:
            for p in ("alice", "bob"):
                await r.enter(p)
            for v in ("v1", "v2"):
                await r.enter(v, visitor=True)
            f = vp8(3)
            for m in ("alice", "bob"):
                d = r.drivers[m]
                for_visitors = await d.encrypt_for_visitors(f)
                for_members = await r.seal(m, f)
                for v in ("v1", "v2"):
                    assert await r.open(v, m, for_visitors, f) == f.data
                    with pytest.raises((AuthenticationFailed, UnknownKey)):
                        await r.open(v, m, for_members, f)
            keys_before = {m: r.drivers[m].member.current_key for m in ("alice", "bob")}
            await r.leave("v1")
            for m in ("alice", "bob"):
                assert r.drivers[m].member.current_key == keys_before[m]
                member_frame = await r.seal(m, f)
                other = "bob" if m == "alice" else "alice"
                assert await r.open(other, m, member_frame, f) == f.data
                sealed = await r.drivers[m].encrypt_for_visitors(f)
                assert await r.open("v2", m, sealed, f) == f.data
                with pytest.raises((AuthenticationFailed, UnknownKey)):
                    await r.open("v1", m, sealed, f)
            assert not r.errors

    run(main)


def test_run_demo_and_report() -> None:
    report = run(lambda: run_demo(debounce_s=0.0))
    assert report["checks"] == {"all_decode": True, "leaver_blocked": True}
    assert [s["pair"] for s in report["sas"]] == [["alice", "bob"], ["alice", "carol"],
                                                  ["bob", "carol"]]
    for s in report["sas"]:
        assert s["emoji_a"] == s["emoji_b"] and len(s["emoji_a"]) == 7
        assert s["match"] and s["verified"]
    leaves = [x for x in report["rotations"] if x["cause"] == "leave"]
    assert {x["participant"] for x in leaves} == {"alice", "bob"}
    assert all(x["key_index"] == 1 and x["switched_at_s"] >= 0 for x in leaves)
    joins = [x for x in report["rotations"] if x["cause"] == "join"]
    assert joins and all(x["key_index"] == 0 for x in joins)
    json.dumps(report, ensure_ascii=False)
    assert demo_report([]) == {"sas": [], "rotations": []}


def test_envelopes_on_the_wire_are_json_text() -> None:
    net = abc(FAST)
    assert net.wire
    for _, _, text in net.wire:
        obj = json.loads(text)
        assert obj["type"] == "olm" and set(obj["olm"]) == {"type", "data"}
        assert envelope.from_json(text).KIND == obj["olm"]["type"]


def test_lower_id_member_joins_and_takes_over_the_visitor_key() -> None:
    net = visitor_room()
    vkey = net.members["alice"].visitor_key
    net.enter(member("aaron"))
    net.advance(12.0)
    aaron = net.members["aaron"]
    assert aaron.holder == "aaron" and net.members["v1"].holder == "aaron"
    # handed over, not re-created: same key, and the old holder dropped its visitor sessions
    assert aaron.visitor_key == vkey
    assert [e.cause for e in net.events("aaron", VisitorKeyUpdated)] == ["received"]
    assert net.members["alice"].channel("v1") is None
    for v in ("v1", "v2"):
        assert net.members[v].channel("aaron").ready  # type: ignore[union-attr]
        for m in ("aaron", "alice", "bob"):
            slot, mat = visitor_material(net, m)
            assert net.models[v].can_open(m, slot, mat)
            assert not net.opens(v, m)


def test_pending_key_reaches_late_channels_and_disabled_keys() -> None:
    net = abc(FAST)
    alice = net.members["alice"]
    # alice rotates while dave's session is still being set up
    dave = member("dave", FAST)
    net.add(dave)
    for m in ("alice", "bob", "carol"):
        net.apply(m, net.members[m].join("dave", net.now))
    net.apply("dave", dave.start(net.now, ["alice", "bob", "carol"]))
    net.apply("alice", alice.rekey(net.now))      # before anything is delivered
    net.settle()
    assert alice.current_key is not None and alice.current_key.index == 1
    assert net.opens("dave", "alice") and net.opens("bob", "alice")
    # a peer announcing key:false (Jitsi: E2EE off) loses its keys here
    ch = net.members["bob"].channel("alice")
    assert ch is not None
    acts = alice.receive("bob", ch.seal("key-info", "u", key=MediaKey(None, 1)), net.now)
    assert RemoveKeys("bob") in acts and PeerKeyDisabled("bob") in acts
