"""A test DAVE voice gateway driving members of three implementations through the
binary opcodes 25-30: davey (Rust, OpenMLS), dave-py (Discord's libdave over mlspp) and
framecrypt's :class:`DaveMember` (rfc9420), all on framecrypt.keys.dave_call's
in-process gateway: each transition's proposals go to every member (in join order, or
as :meth:`Gateway.order` puts them), the first commit wins. Wire formats:
../shared/reference/dave.md.
"""

from __future__ import annotations

from typing import Any

from framecrypt.bench.contenders.dave_members import DaveyMember as Davey
from framecrypt.bench.contenders.dave_members import LibdaveMember as DavePy
from framecrypt.keys.dave_call import Gateway, LocalMember
from framecrypt.workers.dave import ratchet, receiver, sender

__all__ = ["Call", "DavePy", "Davey", "Framecrypt"]


class Framecrypt(LocalMember):
    """framecrypt's member with the pure media layer keyed from its epochs."""

    def __init__(self, user_id: int, channel: int) -> None:
        super().__init__(user_id, channel)
        self.tx: sender.Sender | None = None
        self.rx: dict[int, receiver.Receiver] = {}

    def commit(self, commit: bytes) -> None:
        super().commit(commit)
        self._rekey()

    def welcome(self, welcome: bytes, recognized: set[int]) -> None:
        super().welcome(welcome, recognized)
        self._rekey()

    def _rekey(self) -> None:
        self.tx = sender.Sender(ratchet.KeyRatchet(self.member.base_secret(self.user_id)))
        self.rx = {}

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


class Call(Gateway):
    """framecrypt's in-process gateway, remembering each member's implementation."""

    def __init__(self, channel: int) -> None:
        super().__init__(channel)
        self.kinds: dict[int, str] = {}

    def change(self, add: Any = (), remove: Any = ()) -> None:
        add = list(add)
        self.kinds.update({m.user_id: m.kind for m in add})
        super().change(add, remove)

    def join(self, *newcomers: Any) -> None:
        self.change(add=newcomers)

    def remove(self, *user_ids: int) -> None:
        self.change(remove=user_ids)

    @property
    def committer_kinds(self) -> list[str]:
        return [self.kinds[u] for u in self.committers]

    @property
    def leaves(self) -> list[int | None]:
        return self.roster.leaves
