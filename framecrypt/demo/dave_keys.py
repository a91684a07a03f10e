"""The demo's keys for ``framecrypt demo --format dave``: a DAVE call's MLS group.

Every participant is an MLS member (:class:`~framecrypt.keys.dave_group.DaveMember`) of
one call that framecrypt's in-process voice gateway runs (:mod:`framecrypt.keys.
dave_call`: the external sender's proposals, the first commit wins, Welcomes to the
joiners). After each epoch every member keys the pool contexts it owns from its own
group state, never from another member's: its sender (``name``, sealing from nonce 1 in
the new epoch) and one receiver per other sender (``name<-other``). The relay forwards
RTP and sees no key. This object offers the demo what :class:`~framecrypt.demo.keyroom.
KeyRoom` offers (open, join, leave, verify, close), without Olm or SAS: a DAVE call's
members compare the epoch authenticator (the call's security code) instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from framecrypt.keys.dave_call import Gateway, LocalMember

CHANNEL = 0x0DA5E


@dataclass(frozen=True)
class _Config:
    keyring_size: int = 256


class DaveKeys:
    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.gateway = Gateway(CHANNEL)
        self.members: dict[str, LocalMember] = {}
        self.present: list[str] = []
        self.drivers: dict[str, Any] = {}  # (no Olm drivers: nothing for the SAS report)
        self.errors: list[str] = []
        self.config = _Config()
        self.epochs: list[int] = []

    def __repr__(self) -> str:
        return f"DaveKeys({self.gateway!r})"

    def _member(self, name: str) -> LocalMember:
        # a user id per participant (standing in for a Discord snowflake)
        m = self.members[name] = LocalMember(1000 + len(self.members), CHANNEL)
        return m

    async def open(self, names: Iterable[str]) -> None:
        names = list(names)
        joining = [self._member(n) for n in names]
        await asyncio.to_thread(self.gateway.change, add=joining)
        self.present = names
        await self._key_all()

    async def join(self, name: str) -> None:
        await asyncio.to_thread(self.gateway.change, add=[self._member(name)])
        self.present.append(name)
        await self._key_all()

    async def leave(self, name: str) -> None:
        await asyncio.to_thread(self.gateway.change, remove=[self.members[name].user_id])
        self.present.remove(name)
        await self._key_all()

    async def _key_all(self) -> None:
        """Each present member keys its own contexts for its current epoch."""
        for r in self.present:
            m = self.members[r]
            epoch = m.changes[-1].epoch
            await self.pool.set_dave_key(r, epoch, m.member.base_secret(m.user_id))
            for s in self.present:
                if s != r:
                    await self.pool.set_dave_key(f"{r}<-{s}", epoch, m.member.base_secret(
                        self.members[s].user_id))
        self.epochs.append(self.members[self.present[0]].changes[-1].epoch)

    async def verify(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Every pair shows the same security code (the epoch authenticator)."""
        for a, b in pairs:
            if self.members[a].member.epoch_authenticator() != \
                    self.members[b].member.epoch_authenticator():
                self.errors.append(f"{a} and {b} show different security codes")

    def security_code(self) -> str:
        """The call's voice privacy code as every member computes it."""
        return str(self.members[self.present[0]].member.voice_privacy_code())

    def switches(self, cause: str) -> dict[str, tuple[int, float]]:
        return {}  # (DAVE frames carry no key index: the demo's key timeline is LiveKit's)

    def messages(self) -> int:
        return len(self.gateway.committers)

    async def close(self) -> None:
        return None
