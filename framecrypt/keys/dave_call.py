"""An in-process DAVE voice gateway: runs a call's MLS transitions between members.

Discord's voice gateway sends each transition's proposals to every member (opcode 27),
takes the first commit that comes back (28), announces it to all (29) and hands the
Welcome to the joiners (30). :class:`Gateway` does the same between objects of this
process that speak :class:`CallMember` — framecrypt's own (:class:`LocalMember`, over
:class:`~framecrypt.keys.dave_group.DaveMember`) or adapters of other implementations
(the tests drive davey and libdave through it). The demo runs its DAVE call on it, and
:func:`key_pool` keys a DAVE :class:`framecrypt.Pool` from a member after each epoch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from . import mls_wire
from .dave_external import ExternalSender, Roster, proposals_payload
from .dave_group import DaveMember, EpochChanged
from .errors import MlsError

if TYPE_CHECKING:
    from framecrypt.broker.pool import Pool


class CallMember(Protocol):
    """What the gateway needs of a member (one method per opcode)."""

    user_id: int

    def external_sender(self, payload: bytes) -> None: ...
    def key_package(self) -> bytes: ...
    def proposals(self, payload: bytes, recognized: set[int]) -> bytes | None: ...
    def commit(self, commit: bytes) -> None: ...
    def welcome(self, welcome: bytes, recognized: set[int]) -> None: ...


class LocalMember:
    """A :class:`DaveMember` as a :class:`CallMember`; :attr:`changes` lists the epochs
    it entered."""

    kind = "framecrypt"

    def __init__(self, user_id: int, channel_id: int) -> None:
        self.user_id = user_id
        self.member = DaveMember(user_id, channel_id)
        self.changes: list[EpochChanged] = []

    def __repr__(self) -> str:
        return f"LocalMember({self.member!r})"

    def external_sender(self, payload: bytes) -> None:
        self.member.set_external_sender(payload)

    def key_package(self) -> bytes:
        return self.member.key_package()

    def proposals(self, payload: bytes, recognized: set[int]) -> bytes | None:
        out = self.member.process_proposals(payload, recognized)
        return out.payload() if out is not None else None

    def commit(self, commit: bytes) -> None:
        self.changes.append(self.member.process_commit(commit))

    def welcome(self, welcome: bytes, recognized: set[int]) -> None:
        self.changes.append(self.member.process_welcome(welcome, recognized))


class Gateway:
    """A call's voice gateway: the external sender, the roster and the transitions."""

    def __init__(self, channel_id: int) -> None:
        self.channel_id = channel_id
        self.signer = ExternalSender(channel_id)
        self.roster = Roster()
        self.epoch = 0
        self.members: dict[int, CallMember] = {}
        self.committers: list[int] = []  # the user id whose commit each transition took
        self._joining: set[int] = set()

    def __repr__(self) -> str:
        return (f"Gateway(channel={self.channel_id}, epoch={self.epoch}, "
                f"members={len(self.members)})")

    @property
    def recognized(self) -> set[int]:
        return set(self.members) | self._joining

    def order(self, first: int) -> None:
        """Ask ``first`` before the others in the next transitions (its commit wins)."""
        self.members = {first: self.members[first], **self.members}

    def change(self, add: Iterable[CallMember] = (), remove: Iterable[int] = ()) -> None:
        """One transition: Removes (never sent to the removed), then Adds. The first
        member added to an empty call creates the group."""
        joiners = list(add)
        removed = list(remove)
        if {m.user_id for m in joiners} & (set(self.members) | set(removed)):
            raise MlsError("a user is already in the call")
        for m in joiners:
            m.external_sender(self.signer.package())
        self._joining = {m.user_id for m in joiners}
        kps = [m.key_package() for m in joiners]
        if not self.members and joiners:
            first = joiners.pop(0)
            kps.pop(0)
            self.members[first.user_id] = first
            self.roster.add(first.user_id)
        props = []
        for user_id in removed:
            props.append(self.signer.remove(self.epoch, self.roster.remove(user_id)))
            del self.members[user_id]
        props += [self.signer.add(self.epoch, kp) for kp in kps]
        for m in joiners:
            self.roster.add(m.user_id)
        try:
            self._transition(proposals_payload(*props), joiners)
        finally:
            self._joining = set()

    def _transition(self, payload: bytes, joiners: list[CallMember]) -> None:
        chosen: bytes | None = None
        for m in list(self.members.values()):
            out = m.proposals(payload, self.recognized)
            if out is not None and chosen is None:
                chosen = out
                self.committers.append(m.user_id)
        if chosen is None:
            raise MlsError("no member committed the transition")
        commit, welcome = mls_wire.split_commit_welcome(chosen)
        for m in self.members.values():
            m.commit(commit)
        for j in joiners:
            if not welcome:
                raise MlsError("the commit added members but came without a Welcome")
            j.welcome(welcome, self.recognized)
            self.members[j.user_id] = j
        self.epoch += 1


def participant(user_id: int) -> str:
    """The pool participant name of a DAVE user (its decimal user id)."""
    return str(user_id)


async def key_pool(pool: Pool, member: DaveMember, changed: EpochChanged) -> None:
    """Key a DAVE pool after ``member`` entered ``changed.epoch``: every member's base
    secret of the new epoch (senders this process seals for and those it opens)."""
    for user_id in sorted(changed.members):
        await pool.set_dave_key(participant(user_id), changed.epoch, member.base_secret(user_id))
