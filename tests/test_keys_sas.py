"""SAS verification (Matrix style over vodozemac's Sas): matching strings, completion
only after both users confirm, and detection of a man in the middle."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable

import pytest
from keys_helpers import FAST, PureNet, seeded

from framecrypt.keys import envelope
from framecrypt.keys.errors import OlmError, UnexpectedMessage, UnknownSession
from framecrypt.keys.olm import OlmIdentity
from framecrypt.keys.policy import (
    Action,
    Member,
    PolicyConfig,
    SasAvailable,
    SasFailed,
    SasReady,
    SasVerified,
    Send,
)
from framecrypt.keys.sas import EMOJI, EMOJI_TABLES, SasVerification

JITSI_STYLE = PolicyConfig(join_debounce_s=0, leave_debounce_s=0, sas_style="jitsi")


def pair(config: PolicyConfig = FAST) -> PureNet:
    net = PureNet()
    for i, pid in enumerate(("alice", "bob")):
        rng, uid = seeded(10 + i)
        net.enter(Member(pid, config=config, rng=rng, uuid_factory=uid))
        net.settle()
    return net


def ready(net: PureNet, pid: str) -> SasReady:
    [ev] = net.events(pid, SasReady)
    return ev


def test_emoji_table_is_the_matrix_one() -> None:
    assert len(EMOJI) == 64 and len({e for e, _ in EMOJI}) == 64
    assert EMOJI[0] == ("\U0001F436", "Dog") and EMOJI[30] == ("\U0001F600", "Smiley")
    assert EMOJI[36] == ("\U0001F44D", "Thumbs Up") and EMOJI[63] == ("\U0001F4CC", "Pin")


@pytest.mark.parametrize("config", [FAST, JITSI_STYLE], ids=["framecrypt", "jitsi"])
def test_sas_matches_and_completes_after_both_confirm(config: PolicyConfig) -> None:
    net = pair(config)
    assert SasAvailable("bob") in net.events("alice")
    net.apply("alice", net.members["alice"].start_verification("bob", net.now))
    net.settle()
    a, b = ready(net, "alice"), ready(net, "bob")
    assert a.peer == "bob" and b.peer == "alice"
    assert a.result == b.result
    assert len(a.result.emoji) == 7 and all(0 <= i < 64 for i in a.result.indices)
    table = EMOJI_TABLES[config.sas_style]
    assert a.result.emoji == tuple(table[i][0] for i in a.result.indices)
    assert all(1000 <= d <= 9191 for d in a.result.decimals)
    kinds = [json.loads(t)["olm"]["type"] for _, _, t in net.wire if "sas-" in t]
    assert kinds == ["sas-start", "sas-accept", "sas-key", "sas-key"]
    # alice confirms: her MAC goes out, nothing is verified yet
    net.apply("alice", net.members["alice"].confirm_sas("bob", True, net.now))
    net.settle()
    assert not net.events("alice", SasVerified) and not net.events("bob", SasVerified)
    net.apply("bob", net.members["bob"].confirm_sas("alice", True, net.now))
    net.settle()
    assert net.events("alice", SasVerified) == [SasVerified("bob")]
    assert net.events("bob", SasVerified) == [SasVerified("alice")]
    assert net.members["alice"].verified("bob") and net.members["bob"].verified("alice")
    assert not net.events("alice", SasFailed) and not net.events("bob", SasFailed)


def test_a_new_verification_gives_new_strings() -> None:
    net = pair()
    for _ in range(2):
        net.apply("bob", net.members["bob"].start_verification("alice", net.now))
        net.settle()
        net.apply("alice", net.members["alice"].confirm_sas("bob", True, net.now))
        net.apply("bob", net.members["bob"].confirm_sas("alice", True, net.now))
        net.settle()
    r1, r2 = net.events("alice", SasReady)
    assert r1.result != r2.result
    assert len(net.events("alice", SasVerified)) == 2


def test_users_say_no() -> None:
    net = pair()
    net.apply("alice", net.members["alice"].start_verification("bob", net.now))
    net.settle()
    acts = net.members["bob"].confirm_sas("alice", False, net.now)
    assert acts == [SasFailed("alice", "the users saw different SAS")]
    assert not any(isinstance(a, Send) for a in acts)
    assert not net.members["bob"].verified("alice")


def tamper(kind: str, field: str) -> Callable[[str, str, str], list[tuple[str, str, str]]]:
    def f(frm: str, to: str, text: str) -> list[tuple[str, str, str]]:
        obj = json.loads(text)
        if obj["olm"]["type"] == kind:
            data = obj["olm"]["data"]
            if field == "mac":
                data["mac"] = {k: v[:-2] + ("AA" if v[-2:] != "AA" else "BB")
                               for k, v in data["mac"].items()}
            else:
                v = data[field]
                data[field] = v[:-2] + ("AA" if v[-2:] != "AA" else "BB")
            text = json.dumps(obj)
        return [(frm, to, text)]
    return f


def test_bad_commitment_fails() -> None:
    net = pair()
    net.intercept = tamper("sas-accept", "commitment")
    net.apply("alice", net.members["alice"].start_verification("bob", net.now))
    net.settle()
    assert net.events("alice", SasFailed) == [SasFailed("bob", "commitment mismatch")]
    assert not net.events("alice", SasReady)


def test_bad_mac_fails() -> None:
    net = pair()
    net.apply("alice", net.members["alice"].start_verification("bob", net.now))
    net.settle()
    net.intercept = tamper("sas-mac", "mac")
    net.apply("alice", net.members["alice"].confirm_sas("bob", True, net.now))
    net.apply("bob", net.members["bob"].confirm_sas("alice", True, net.now))
    net.settle()
    assert [e.reason for e in net.events("bob", SasFailed)] == ["MAC mismatch"]
    assert not net.members["bob"].verified("alice")


def test_out_of_turn_and_unknown() -> None:
    net = pair()
    alice = net.members["alice"]
    with pytest.raises(UnknownSession):
        alice.start_verification("nobody", net.now)
    with pytest.raises(UnexpectedMessage):
        alice.receive("bob", envelope.SasKey("no-such-transaction", "AAAA"), net.now)
    with pytest.raises(UnknownSession):
        alice.confirm_sas("bob", True, net.now)
    s = SasVerification("a", "b", own_ed25519="x", own_curve25519="y", peer_ed25519=None,
                        peer_curve25519=None)
    with pytest.raises(UnexpectedMessage):
        s.confirm(True)
    with pytest.raises(ValueError):
        SasVerification("a", "b", own_ed25519="x", own_curve25519="y", peer_ed25519=None,
                        peer_curve25519=None, style="other")  # type: ignore[arg-type]


# --- a man in the middle ---------------------------------------------------------------


class Mitm:
    """Mallory sits between alice and bob: her own Olm sessions with each (impersonating
    the other, with her own identity keys), while SAS messages are relayed untouched."""

    def __init__(self, config: PolicyConfig, presence: dict[str, dict[str, str]] | None = None
                 ) -> None:
        self.real = {p: Member(p, config=config) for p in ("alice", "bob")}
        mallory = OlmIdentity()
        # fake[x] plays x towards the other real participant
        self.fake = {p: Member(p, config=config, identity=mallory) for p in ("alice", "bob")}
        self.queue: deque[tuple[Member, str, Action]] = deque()
        self.events: dict[str, list[Action]] = {"alice": [], "bob": []}
        other = {"alice": "bob", "bob": "alice"}
        keys = presence or {}
        self.push(self.real["alice"], self.real["alice"].start(0.0, ["bob"],
                                                               identity_keys=keys))
        self.push(self.real["bob"], self.real["bob"].start(0.0, ["alice"], identity_keys=keys))
        for p in ("alice", "bob"):
            f = self.fake[p]
            self.push(f, f.start(0.0, [other[p]]))

    def push(self, src: Member, actions: list[Action]) -> None:
        for a in actions:
            self.queue.append((src, src.id, a))

    def run(self) -> None:
        while self.queue:
            src, frm, a = self.queue.popleft()
            if not isinstance(a, Send):
                if src is self.real[frm]:
                    self.events[frm].append(a)
                continue
            msg = envelope.from_json(envelope.to_json(a.message))
            sas = msg.KIND.startswith("sas-")
            if src is self.real[frm]:
                # real -> other: to mallory's fake of the other, except SAS (relayed)
                dst = self.real[a.to] if sas else self.fake[a.to]
            else:
                # mallory's fake of frm -> the real participant it talks to
                dst = self.real[a.to]
            self.push(dst, dst.receive(frm, msg, 0.0))

    def ev(self, pid: str, cls: type) -> list:  # type: ignore[type-arg]
        return [e for e in self.events[pid] if isinstance(e, cls)]


def test_swapped_identity_key_changes_the_strings_and_fails_the_mac() -> None:
    m = Mitm(FAST)
    m.run()
    alice, bob = m.real["alice"], m.real["bob"]
    # each real participant has a working channel … with mallory
    assert alice.channel("bob").ready and bob.channel("alice").ready  # type: ignore[union-attr]
    assert alice.channel("bob").peer_curve25519 == m.fake["bob"].identity.curve25519  # type: ignore[union-attr]
    m.push(alice, alice.start_verification("bob", 0.0))
    m.run()
    [ra], [rb] = m.ev("alice", SasReady), m.ev("bob", SasReady)
    assert ra.result.indices != rb.result.indices          # the users see different emoji
    assert ra.result.decimals != rb.result.decimals
    # even careless users who confirm anyway are stopped by the MACs
    m.push(alice, alice.confirm_sas("bob", True, 0.0))
    m.push(bob, bob.confirm_sas("alice", True, 0.0))
    m.run()
    assert [e.reason for e in m.ev("alice", SasFailed)] == ["MAC mismatch"]
    assert [e.reason for e in m.ev("bob", SasFailed)] == ["MAC mismatch"]
    assert not alice.verified("bob") and not bob.verified("alice")


def test_without_the_mitm_the_same_setup_verifies() -> None:
    net = pair()
    net.apply("alice", net.members["alice"].start_verification("bob", net.now))
    net.settle()
    assert ready(net, "alice").result == ready(net, "bob").result


def test_jitsi_style_does_not_bind_the_olm_identity_key() -> None:
    """Why framecrypt's default binds the curve25519 keys: with lib-jitsi-meet's strings
    and only the ed25519 key from presence, an Olm-layer man in the middle who relays
    the SAS messages gets matching emoji and valid MACs."""
    m = Mitm(JITSI_STYLE)
    # presence carries the real ed25519 keys (as Jitsi checks them), no curve25519 check
    for p, other in (("alice", "bob"), ("bob", "alice")):
        m.real[p]._presence[other] = {"ed25519": m.real[other].identity.ed25519}
    m.run()
    alice, bob = m.real["alice"], m.real["bob"]
    m.push(alice, alice.start_verification("bob", 0.0))
    m.run()
    [ra], [rb] = m.ev("alice", SasReady), m.ev("bob", SasReady)
    assert ra.result == rb.result                          # the MITM stays invisible
    m.push(alice, alice.confirm_sas("bob", True, 0.0))
    m.push(bob, bob.confirm_sas("alice", True, 0.0))
    m.run()
    assert alice.verified("bob") and bob.verified("alice")
    # the framecrypt style with the same presence catches it
    f = Mitm(FAST)
    for p, other in (("alice", "bob"), ("bob", "alice")):
        f.real[p]._presence[other] = {"ed25519": f.real[other].identity.ed25519}
    f.run()
    f.push(f.real["alice"], f.real["alice"].start_verification("bob", 0.0))
    f.run()
    [fa], [fb] = f.ev("alice", SasReady), f.ev("bob", SasReady)
    assert fa.result != fb.result


def test_published_curve25519_key_stops_the_mitm_before_sas() -> None:
    ids = {p: OlmIdentity() for p in ("alice", "bob")}
    alice = Member("alice", config=FAST, identity=ids["alice"])
    acts = alice.start(0.0, ["bob"], identity_keys={"bob": ids["bob"].identity_keys()})
    [init] = [a.message for a in acts if isinstance(a, Send)]
    mallory = Member("bob", config=FAST)              # answers as "bob", her own keys
    mallory.start(0.0, ["alice"])
    [ack] = [a.message for a in mallory.receive("alice", init, 0.0)
             if isinstance(a, Send) and a.message.KIND == "session-ack"]
    with pytest.raises(OlmError):
        alice.receive("bob", ack, 0.0)
    assert not alice.channel("bob").ready  # type: ignore[union-attr]
