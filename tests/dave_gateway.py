"""A test DAVE voice gateway driving members of three implementations through the
binary opcodes 25-30: davey (Rust, OpenMLS), dave-py (Discord's libdave over mlspp) and
framecrypt's :class:`DaveMember` (rfc9420). framecrypt.keys.dave_external signs the
proposals and keeps the roster; the gateway sends every existing member the proposals,
takes the first commit returned (members in join order), announces it to everyone and
hands the Welcome to the joiners. Wire formats: ../shared/reference/dave.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from framecrypt.keys import mls_wire
from framecrypt.keys.dave_external import ExternalSender, Roster, proposals_payload
from framecrypt.keys.dave_group import DaveMember
from framecrypt.workers.dave import ratchet, receiver, sender

# dave-py's codec numbers (libdave Codec enum) and davey's
DAVE_CODECS = {"opus": 1, "vp8": 2, "vp9": 3, "h264": 4, "h265": 5, "av1": 6}


class Davey:
    kind = "davey"

    def __init__(self, user_id: int, channel: int) -> None:
        import davey
        self.m = davey
        self.user_id = user_id
        self.s = davey.DaveSession(1, user_id, channel)

    def external_sender(self, payload: bytes) -> None:
        self.s.set_external_sender(payload)

    def key_package(self) -> bytes:
        return bytes(self.s.get_serialized_key_package())

    def proposals(self, payload: bytes, recognized: set[int]) -> bytes | None:
        ops = self.m.ProposalsOperationType
        op = ops.append if payload[0] == 0 else ops.revoke
        cw = self.s.process_proposals(op, payload[1:], sorted(recognized))
        if cw is None:
            return None
        return bytes(cw.commit) + (bytes(cw.welcome) if cw.welcome is not None else b"")

    def commit(self, commit: bytes) -> None:
        self.s.process_commit(commit)

    def welcome(self, welcome: bytes, recognized: set[int]) -> None:
        self.s.process_welcome(welcome)

    def epoch_authenticator(self) -> bytes:
        return bytes(self.s.get_epoch_authenticator())

    def voice_privacy_code(self) -> str:
        return str(self.s.voice_privacy_code)

    def pairwise(self, other: int) -> bytes:
        return bytes(self.s.get_pairwise_fingerprint(0, other))

    def seal(self, codec: str, data: bytes) -> bytes:
        media = self.m.MediaType.audio if codec == "opus" else self.m.MediaType.video
        return bytes(self.s.encrypt(media, getattr(self.m.Codec, codec), data))

    def open(self, user_id: int, codec: str, data: bytes) -> bytes | None:
        media = self.m.MediaType.audio if codec == "opus" else self.m.MediaType.video
        try:
            return bytes(self.s.decrypt(user_id, media, data))
        except Exception:
            return None


class DavePy:
    kind = "dave-py"

    def __init__(self, user_id: int, channel: int) -> None:
        import dave
        self.m = dave
        self.user_id = user_id
        self.s = dave.Session()
        self.s.init(1, channel, str(user_id))
        self.enc: Any = None
        self.decs: dict[int, Any] = {}

    def external_sender(self, payload: bytes) -> None:
        self.s.set_external_sender(payload)

    def key_package(self) -> bytes:
        return bytes(self.s.get_marshalled_key_package())

    def proposals(self, payload: bytes, recognized: set[int]) -> bytes | None:
        out = self.s.process_proposals(payload, {str(u) for u in recognized})
        return bytes(out) if out else None

    def _rekey(self, roster: Any) -> None:
        if roster is None or not isinstance(roster, dict):
            return
        self.enc = self.m.Encryptor()
        self.enc.set_key_ratchet(self.s.get_key_ratchet(str(self.user_id)))
        self.decs = {}

    def commit(self, commit: bytes) -> None:
        self._rekey(self.s.process_commit(commit))

    def welcome(self, welcome: bytes, recognized: set[int]) -> None:
        self._rekey(self.s.process_welcome(welcome, {str(u) for u in recognized}))

    def epoch_authenticator(self) -> bytes:
        return bytes(self.s.get_last_epoch_authenticator())

    def seal(self, codec: str, data: bytes) -> bytes:
        media = self.m.MediaType.audio if codec == "opus" else self.m.MediaType.video
        return bytes(self.enc.encrypt(media, DAVE_CODECS[codec], data))

    def open(self, user_id: int, codec: str, data: bytes) -> bytes | None:
        if user_id not in self.decs:
            dec = self.m.Decryptor()
            dec.transition_to_key_ratchet(self.s.get_key_ratchet(str(user_id)))
            self.decs[user_id] = dec
        media = self.m.MediaType.audio if codec == "opus" else self.m.MediaType.video
        out = self.decs[user_id].decrypt(media, data)
        return bytes(out) if out is not None else None


class Framecrypt:
    kind = "framecrypt"

    def __init__(self, user_id: int, channel: int) -> None:
        self.user_id = user_id
        self.member = DaveMember(user_id, channel)
        self.tx: sender.Sender | None = None
        self.rx: dict[int, receiver.Receiver] = {}

    def external_sender(self, payload: bytes) -> None:
        self.member.set_external_sender(payload)

    def key_package(self) -> bytes:
        return self.member.key_package()

    def proposals(self, payload: bytes, recognized: set[int]) -> bytes | None:
        cw = self.member.process_proposals(payload, recognized)
        return cw.payload() if cw is not None else None

    def _rekey(self) -> None:
        self.tx = sender.Sender(ratchet.KeyRatchet(self.member.base_secret(self.user_id)))
        self.rx = {}

    def commit(self, commit: bytes) -> None:
        self.member.process_commit(commit)
        self._rekey()

    def welcome(self, welcome: bytes, recognized: set[int]) -> None:
        self.member.process_welcome(welcome, recognized)
        self._rekey()

    def epoch_authenticator(self) -> bytes:
        return self.member.epoch_authenticator()

    def seal(self, codec: str, data: bytes) -> bytes:
        assert self.tx is not None
        return self.tx.seal(codec, data)

    def open(self, user_id: int, codec: str, data: bytes) -> bytes | None:
        if user_id not in self.rx:
            if user_id not in self.member.members:
                return None
            rx = receiver.Receiver()
            rx.transition_to_key_ratchet(ratchet.KeyRatchet(self.member.base_secret(user_id)), 0.0)
            self.rx[user_id] = rx
        try:
            return self.rx[user_id].open(data, 0.0, audio=codec == "opus")
        except Exception:
            return None


@dataclass
class Call:
    """The gateway's view of one call."""

    channel: int
    signer: ExternalSender = field(init=False)
    epoch: int = 0
    roster: Roster = field(default_factory=Roster)
    members: dict[int, Any] = field(default_factory=dict)  # user id -> member adapter (in group)
    committers: list[str] = field(default_factory=list)  # kind of each transition's committer

    def __post_init__(self) -> None:
        self.signer = ExternalSender(self.channel)

    @property
    def leaves(self) -> list[int | None]:
        return self.roster.leaves

    @property
    def recognized(self) -> set[int]:
        return set(self.members) | self._joining

    _joining: set[int] = field(default_factory=set)

    def join(self, *newcomers: Any) -> None:
        """Add ``newcomers`` in one transition (the first call forms the group)."""
        self.change(add=newcomers)

    def remove(self, *user_ids: int) -> None:
        self.change(remove=user_ids)

    def change(self, add: tuple[Any, ...] | list[Any] = (),
               remove: tuple[int, ...] = ()) -> None:
        """One transition: Remove proposals for ``remove`` (never sent to the removed),
        then Add proposals for ``add``."""
        add = list(add)
        for m in add:
            m.external_sender(self.signer.package())
        self._joining = {m.user_id for m in add}
        kps = [m.key_package() for m in add]
        if not self.members:  # a new call: the first newcomer creates the group
            first = add.pop(0)
            self.members[first.user_id] = first
            self.roster.add(first.user_id)
            kps = kps[1:]
        props = []
        for user_id in remove:
            props.append(self.signer.remove(self.epoch, self.roster.remove(user_id)))
            self.members.pop(user_id)
        props += [self.signer.add(self.epoch, kp) for kp in kps]
        for m in add:
            self.roster.add(m.user_id)
        self._transition(proposals_payload(*props), joiners=add)
        self._joining = set()

    def _transition(self, payload: bytes, joiners: list[Any]) -> None:
        chosen: bytes | None = None
        committer = None
        for m in list(self.members.values()):
            out = m.proposals(payload, self.recognized)
            if out is not None and chosen is None:
                chosen, committer = out, m
        assert chosen is not None, "no member committed"
        commit, welcome = mls_wire.split_commit_welcome(chosen)
        self.committers.append(committer.kind)
        for m in self.members.values():
            m.commit(commit)
        for j in joiners:
            j.welcome(welcome, self.recognized)
            self.members[j.user_id] = j
        self.epoch += 1
