"""DAVE's MLS group across three implementations: framecrypt's DaveMember (rfc9420),
davey (OpenMLS) and dave-py (Discord's libdave + mlspp), driven by a test voice gateway
(tests/dave_gateway.py) through opcodes 25-30.

Outside truth: the other two implementations decide whether framecrypt's key packages,
commits and Welcomes are valid, and whether the keys it derives open their frames.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import struct

import pytest
from dave_gateway import Call, DavePy, Davey, Framecrypt
from hypothesis import given, settings
from hypothesis import strategies as st

from framecrypt.keys import dave_codes, mls_wire
from framecrypt.keys.dave_group import DaveMember
from framecrypt.keys.errors import MlsError
from framecrypt.keys.mls_wire import vec

pytestmark = pytest.mark.timeout(120)

CHANNEL = 4242
# one frame of each codec, valid enough for every sender's codec-aware ranges
FRAMES = {
    "opus": bytes(range(1, 81)),
    "vp8": bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x80, 0x02, 0xE0, 0x01]) + bytes(200),
    "vp9": bytes([0x82, 0x49, 0x83]) + bytes(range(200)),
    "h264": (b"\x00\x00\x00\x01\x67\x42\x00\x1f" + b"\x00\x00\x00\x01\x65\x88\x84"
             + bytes(range(1, 200))),
    # one frame OBU without a size field: what the packetizer keeps unchanged (the
    # sender's AV1 rewriting itself is checked byte for byte in test_dave_media.py)
    "av1": bytes([0x30]) + bytes(range(1, 120)),
}


def _all_open(members: list[object], codecs: tuple[str, ...] = tuple(FRAMES)) -> None:
    for s in members:
        for codec in codecs:
            sealed = s.seal(codec, FRAMES[codec])  # type: ignore[attr-defined]
            for r in members:
                if r is not s:
                    got = r.open(s.user_id, codec, sealed)  # type: ignore[attr-defined]
                    assert got == FRAMES[codec], (s.kind, r.kind, codec)  # type: ignore[attr-defined]


def _authenticators(members: list[object]) -> set[bytes]:
    return {m.epoch_authenticator() for m in members}  # type: ignore[attr-defined]


def test_framecrypt_creates_the_call_and_commits_the_adds() -> None:
    """framecrypt is the first member: it creates the group and commits the Adds of a
    davey and a dave-py member, who join from its Welcome; every member's frames, every
    codec, open in both others."""
    call = Call(CHANNEL)
    f, a, b = Framecrypt(3, CHANNEL), Davey(1, CHANNEL), DavePy(2, CHANNEL)
    call.join(f, a, b)
    assert call.committer_kinds == ["framecrypt"]
    assert f.member.epoch == 1 and f.member.members == {1, 2, 3}
    assert len(_authenticators([f, a, b])) == 1
    _all_open([f, a, b])


def test_framecrypt_joins_from_davey_and_libdave_welcomes_and_follows_their_commits() -> None:
    call = Call(CHANNEL)
    a, b, f = Davey(11, CHANNEL), DavePy(22, CHANNEL), Framecrypt(33, CHANNEL)
    call.join(a, f)  # davey creates, commits framecrypt's Add
    call.join(b)  # davey (first in join order) commits again
    d = DavePy(44, CHANNEL)
    call.order(22)  # dave-py answers first: libdave's commit wins
    call.join(d)
    assert call.committer_kinds == ["davey", "davey", "dave-py"]
    assert f.member.epoch == 3 and len(_authenticators([a, b, f, d])) == 1
    _all_open([a, b, f, d], ("opus", "vp8", "h264"))


def test_removed_member_opens_nothing_after_the_commit() -> None:
    """A Remove needs an UpdatePath. davey commits it here (asked first), framecrypt
    follows the path; the removed member cannot open what is sealed in the new epoch."""
    call = Call(CHANNEL)
    f, a, b = Framecrypt(7, CHANNEL), Davey(8, CHANNEL), DavePy(9, CHANNEL)
    call.join(f, a, b)
    call.order(8)
    call.remove(9)
    assert call.committer_kinds[-1] == "davey"
    assert f.member.members == {7, 8}
    assert len(_authenticators([f, a])) == 1
    _all_open([f, a])
    for s in (f, a):
        assert b.open(s.user_id, "opus", s.seal("opus", FRAMES["opus"])) is None

    # framecrypt removed (by libdave's commit): its old keys open nothing new
    call2 = Call(CHANNEL + 1)
    f2, a2, b2 = Framecrypt(70, CHANNEL + 1), Davey(80, CHANNEL + 1), DavePy(90, CHANNEL + 1)
    call2.join(a2, b2, f2)
    call2.order(90)
    call2.remove(70)
    assert call2.committer_kinds[-1] == "dave-py"
    _all_open([a2, b2], ("opus",))
    for s in (a2, b2):
        assert f2.open(s.user_id, "opus", s.seal("opus", FRAMES["opus"])) is None


@pytest.mark.parametrize("committer", ["framecrypt", "davey", "dave-py"])
def test_path_commits_with_removes_and_adds(committer: str) -> None:
    """Path commits (framecrypt's come from mls_path.DaveRatchetTree): a Remove, then a
    Remove and two Adds in one commit, where one new member sits alone under a copath
    node (a filtered-direct-path node whose copath holds only joiners: no ciphertext,
    but still in the path). Whoever commits, every other member follows the path; the
    joiners (davey, dave-py) join from the committer's Welcome; the removed members open
    nothing afterwards."""
    call = Call(CHANNEL)
    f, g = Framecrypt(1, CHANNEL), Framecrypt(2, CHANNEL)
    a, b, c = Davey(3, CHANNEL), DavePy(4, CHANNEL), Davey(5, CHANNEL)
    call.join(f, g, a, b, c)
    first = {"framecrypt": f, "davey": a, "dave-py": b}[committer]
    call.order(first.user_id)
    call.remove(5)
    assert call.committer_kinds[-1] == committer
    assert len(_authenticators([f, g, a, b])) == 1
    _all_open([f, g, a, b], ("opus", "vp8"))
    assert c.open(1, "opus", f.seal("opus", FRAMES["opus"])) is None

    if committer == "davey":  # davey is removed next: let the other davey-less order stand
        call.order(f.user_id)
    d, e = DavePy(6, CHANNEL), Davey(7, CHANNEL)
    call.change(add=(d, e), remove=(3,))
    assert call.leaves == [1, 2, 6, 4, 7]  # leaf 4 (the joiner e) alone under its copath
    assert f.member.epoch == 3 and f.member.members == {1, 2, 4, 6, 7} == g.member.members
    members = [f, g, b, d, e]
    assert len(_authenticators(members)) == 1
    _all_open(members, ("opus", "h264"))
    assert a.open(1, "opus", f.seal("opus", FRAMES["opus"])) is None


def test_verification_codes_match_davey_and_libdave() -> None:
    call = Call(CHANNEL)
    f, a, b = Framecrypt(1001, CHANNEL), Davey(1002, CHANNEL), DavePy(1003, CHANNEL)
    call.join(a, f, b)
    assert f.member.voice_privacy_code() == a.voice_privacy_code()
    assert len(f.member.voice_privacy_code()) == 30
    # the pairwise fingerprint framecrypt computes for (framecrypt, davey) is davey's
    assert f.member.pairwise_fingerprint(1002) == a.pairwise(1001)
    # and its key fingerprint format is davey's exported helper's
    import davey
    key = mls_wire.public_key_bytes(f.member._signing)
    theirs = bytes(davey.generate_key_fingerprint(0, key, 1001))
    assert dave_codes.key_fingerprint(key, 1001) == theirs
    # libdave's (a future, resolved on its own thread)
    async def libdave_pairwise() -> bytes:
        return bytes(await b.s.get_pairwise_fingerprint(0, "1001"))

    assert f.member.pairwise_fingerprint(1003) == asyncio.run(libdave_pairwise())
    assert dave_codes.displayable_code(bytes(range(40)), 30, 5) == davey.generate_displayable_code(
        bytes(range(40)), 30, 5)


# --- hostile gateway input: typed error, counter, state unchanged ------------------------

def _formed() -> tuple[Call, Framecrypt, Davey]:
    call = Call(CHANNEL)
    f, a = Framecrypt(21, CHANNEL), Davey(22, CHANNEL)
    call.join(f, a)
    return call, f, a


@pytest.mark.parametrize("payload", [
    b"", b"\x00", b"\x02" + vec(b""), b"\x00" + vec(b"\x00\x01\x00\x01"),
    b"\x00\x40", b"\x00" + vec(b"\x00\x01\x00\x02" + bytes(40)), b"\x00" + vec(b"") + b"x",
])
def test_malformed_proposals_are_refused_without_harm(payload: bytes) -> None:
    _, f, a = _formed()
    before = (f.member.epoch, f.epoch_authenticator())
    with pytest.raises(MlsError):
        f.member.process_proposals(payload, {21, 22})
    assert f.member.rejected["proposals"] == 1
    assert (f.member.epoch, f.epoch_authenticator()) == before
    _all_open([f, a], ("opus",))


def test_forged_and_misdirected_proposals_are_refused() -> None:
    call, f, a = _formed()
    other = Call(CHANNEL)  # a different gateway key
    kp = DavePy(23, CHANNEL).key_package()
    forged = other.signer.add(f.member.epoch or 0, kp)
    with pytest.raises(MlsError):
        f.member.process_proposals(b"\x00" + vec(forged), {21, 22, 23})
    stale = call.signer.add(0, kp)  # last epoch's
    with pytest.raises(MlsError, match="wrong epoch"):
        f.member.process_proposals(b"\x00" + vec(stale), {21, 22, 23})
    good = call.signer.add(f.member.epoch or 0, kp)
    with pytest.raises(MlsError, match="unrecognized"):
        f.member.process_proposals(b"\x00" + vec(good), {21, 22})
    assert f.member.rejected["proposals"] == 3
    _all_open([f, a], ("opus",))


def test_tampered_commit_and_welcome_are_refused_without_harm() -> None:
    call, f, a = _formed()
    d = DavePy(24, CHANNEL)
    d.external_sender(call.signer.package())
    props = b"\x00" + vec(call.signer.add(1, d.key_package()))
    f.member.process_proposals(props, {21, 22, 24})
    out = a.proposals(props, {21, 22, 24})
    assert out is not None
    commit, _ = mls_wire.split_commit_welcome(out)
    before = f.epoch_authenticator()
    for i in (10, len(commit) // 2, len(commit) - 5):
        bad = bytearray(commit)
        bad[i] ^= 0x40
        with pytest.raises(MlsError):
            f.member.process_commit(bytes(bad))
    with pytest.raises(MlsError):
        f.member.process_commit(commit[:-3])
    assert f.member.rejected["commit"] == 4 and f.epoch_authenticator() == before
    # a Welcome for someone else, or garbage: refused
    g = Framecrypt(25, CHANNEL)
    g.key_package()
    with pytest.raises(MlsError):
        g.member.process_welcome(b"\x00\x02" + bytes(50), {21, 22, 25})
    assert g.member.rejected["welcome"] == 1 and not g.member.ready


def test_member_api_refuses_out_of_state_use() -> None:
    m = DaveMember(1, 2)
    with pytest.raises(MlsError):
        m.base_secret(1)
    with pytest.raises(MlsError):
        m.process_proposals(b"\x00" + vec(b""), {1})  # no external sender yet
    with pytest.raises(MlsError):
        m.set_external_sender(vec(b"\x04" + bytes(64)) + b"\x00\x01" + vec(b""))  # not on the curve
    with pytest.raises(MlsError):
        DaveMember(-1, 2)
    assert "DaveMember(user=1" in repr(m) and struct.pack(">Q", 1).hex() not in repr(m)


def test_external_sender_and_roster() -> None:
    from framecrypt.keys.dave_external import ExternalSender, Roster

    gw = ExternalSender(9)
    kp = Framecrypt(1, 9).key_package()
    with pytest.raises(MlsError):
        gw.add(0, kp[:-1])  # cut
    with pytest.raises(MlsError):
        gw.add(0, kp + b"\x00")  # trailing
    assert "ExternalSender(channel=9)" == repr(gw)
    r = Roster()
    assert [r.add(u) for u in (10, 11, 12, 13)] == [0, 1, 2, 3]
    assert r.remove(11) == 1 and r.remove(13) == 3
    assert r.leaves == [10, None, 12]  # trailing blanks truncated
    assert r.add(14) == 1 and r.add(15) == 3  # leftmost free leaf, then the end
    with pytest.raises(MlsError):
        r.add(14)
    with pytest.raises(MlsError):
        r.remove(99)


def test_pool_keyed_from_the_mls_group_interoperates() -> None:
    """dave_call.key_pool keys a DAVE pool (real workers) from framecrypt's member: the
    pool's sealed frames open in davey and libdave, theirs open in the pool; after a
    Remove and rekey, the pool seals under the new epoch, which the removed member
    cannot open."""
    from pool_helpers import run

    from framecrypt import Frame, Pool
    from framecrypt.keys.dave_call import key_pool, participant

    call = Call(CHANNEL)
    f, a, b = Framecrypt(501, CHANNEL), Davey(502, CHANNEL), DavePy(503, CHANNEL)
    call.join(f, a, b)

    async def main() -> None:
        async with Pool(workers=2, transport="shm", format="dave") as pool:
            await key_pool(pool, f.member, f.changes[-1])
            frames = [Frame(FRAMES[c], c) for c in ("opus", "vp8", "vp9", "h264")] * 3
            sealed = await pool.encrypt_many(participant(501), frames)
            for fr, s in zip(frames, sealed, strict=True):
                assert a.open(501, fr.codec, s) == fr.data
                assert b.open(501, fr.codec, s) == fr.data
            for other in (a, b):
                theirs = [Frame(other.seal(fr.codec, fr.data), fr.codec) for fr in frames]
                opened = await pool.decrypt_many(participant(other.user_id), theirs)
                assert opened == [fr.data for fr in frames]

            call.order(502)
            call.remove(503)
            await key_pool(pool, f.member, f.changes[-1])
            s = (await pool.encrypt_many(participant(501), [Frame(FRAMES["opus"], "opus")]))[0]
            assert a.open(501, "opus", s) == FRAMES["opus"]
            assert b.open(501, "opus", s) is None

    run(main)


# --- property: any mutation of a gateway message is refused cleanly or taken whole -------

def _mutate(data: bytes, draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["flip", "cut", "insert", "zero_run"]))
    i = draw(st.integers(0, max(len(data) - 1, 0)))
    if kind == "flip":
        return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
    if kind == "cut":
        return data[:i]
    if kind == "insert":
        return data[:i] + draw(st.binary(min_size=1, max_size=8)) + data[i:]
    n = draw(st.integers(1, 16))
    return data[:i] + bytes(min(n, len(data) - i)) + data[i + n:]


@functools.cache
def _hostile_material() -> tuple[DaveMember, DaveMember, DaveMember, dict[str, bytes]]:
    """framecrypt member f in a call with davey (epoch 1); f again after queuing the
    gateway's Add of framecrypt member g; g waiting for its Welcome; and the valid
    proposals, davey's commit and Welcome to mutate."""
    call = Call(CHANNEL)
    f, a = Framecrypt(61, CHANNEL), Davey(62, CHANNEL)
    call.join(a, f)
    g = Framecrypt(63, CHANNEL)
    g.external_sender(call.signer.package())
    props = b"\x00" + vec(call.signer.add(1, g.key_package()))
    before_props = copy.deepcopy(f.member)
    f.member.process_proposals(props, {61, 62, 63})
    out = a.proposals(props, {61, 62, 63})
    assert out is not None
    commit, welcome = mls_wire.split_commit_welcome(out)
    return before_props, f.member, g.member, {
        "proposals": props, "commit": commit, "welcome": welcome}


@settings(max_examples=300, deadline=None)
@given(which=st.sampled_from(["proposals", "commit", "welcome"]), data=st.data())
def test_mutated_gateway_messages_are_refused_cleanly_or_taken_whole(
        which: str, data: st.DataObject) -> None:
    """Flipped, cut, padded or zeroed proposals, commits and Welcomes: every byte is
    covered (signatures, membership tag, AEAD, walked lengths), so the member raises
    MlsError with its epoch, authenticator, members and proposal queue as before."""
    fresh, queued, joiner, material = _hostile_material()
    mutated = _mutate(material[which], data.draw)
    m = copy.deepcopy({"proposals": fresh, "commit": queued, "welcome": joiner}[which])
    before = (m.epoch, m.epoch_authenticator() if m.ready else None, m.members,
              m._group._inner._pending_proposals if m.ready else None)
    try:
        if which == "proposals":
            m.process_proposals(mutated, {61, 62, 63})
        elif which == "commit":
            m.process_commit(mutated)
        else:
            m.process_welcome(mutated, {61, 62, 63})
    except MlsError:
        after = (m.epoch, m.epoch_authenticator() if m.ready else None, m.members,
                 m._group._inner._pending_proposals if m.ready else None)
        assert after == before
    else:
        assert mutated == material[which], f"a mutated {which} message was accepted"
