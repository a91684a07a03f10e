"""Shared helpers for the framecrypt.keys tests.

* :class:`PureNet`: synchronous, clock-free signaling between sans-I/O ``Member``\\ s
  (every message goes through the JSON wire form), with a model of each member's key
  ring (what its Pool would hold) to ask "can X open what Y seals now?".
* :func:`room`: an asyncio room of real ``Pool(workers=1, transport="inline",
  format="jitsi")`` + ``PoolDriver`` per participant over a ``LoopbackBus``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from framecrypt import Frame, Pool, jitsi
from framecrypt.keys import envelope
from framecrypt.keys.driver import LoopbackBus, PoolDriver
from framecrypt.keys.policy import (
    Action,
    Event,
    Member,
    PolicyConfig,
    RatchetKey,
    RemoveKeys,
    Send,
    SetKey,
)

T = TypeVar("T")

# fast policy for tests: no debounce, short ack wait
FAST = PolicyConfig(join_debounce_s=0.0, leave_debounce_s=0.0, ack_timeout_s=5.0)


def seeded(seed: int) -> tuple[Callable[[int], bytes], Callable[[], str]]:
    """A deterministic rng and uuid factory."""
    rnd = random.Random(seed)
    counter = itertools.count(1)
    return rnd.randbytes, lambda: f"uuid-{seed}-{next(counter)}"


def run(fn: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(fn(), timeout)

    return asyncio.run(bounded())


# --- pure signaling ------------------------------------------------------------------------


@dataclass
class KeyModel:
    """What a member's Pool would hold: participant -> {slot: material}, current slot."""

    rings: dict[str, dict[int, bytes]] = field(default_factory=dict)
    current: dict[str, int] = field(default_factory=dict)

    def apply(self, a: Action) -> None:
        if isinstance(a, SetKey):
            self.rings.setdefault(a.participant, {})[a.index] = a.material
            self.current[a.participant] = a.index
        elif isinstance(a, RatchetKey):
            ring = self.rings[a.participant]
            ring[a.index] = jitsi.ratchet(ring[a.index])
        elif isinstance(a, RemoveKeys):
            self.rings.pop(a.participant, None)
            self.current.pop(a.participant, None)

    def sealing_key(self, participant: str) -> tuple[int, bytes]:
        slot = self.current[participant]
        return slot, self.rings[participant][slot]

    def can_open(self, sender: str, slot: int, material: bytes, window: int = 8) -> bool:
        """Would a Pool with ratchet-on-failure (``window`` steps) open a frame of
        ``sender`` sealed under ``material`` at ``slot``?"""
        m = self.rings.get(sender, {}).get(slot)
        for _ in range(window + 1):
            if m is None:
                return False
            if m == material:
                return True
            m = jitsi.ratchet(m)
        return False


Intercept = Callable[[str, str, str], list[tuple[str, str, str]]]


class PureNet:
    """Routes ``Send`` actions between members (FIFO), records every other action."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.members: dict[str, Member] = {}
        self.models: dict[str, KeyModel] = {}
        self.actions: dict[str, list[Action]] = {}
        self.queue: deque[tuple[str, str, str]] = deque()
        self.wire: list[tuple[str, str, str]] = []
        self.refused: list[tuple[str, str, Exception]] = []
        self.intercept: Intercept | None = None
        self.raise_errors = True

    def add(self, member: Member) -> Member:
        self.members[member.id] = member
        self.models[member.id] = KeyModel()
        self.actions[member.id] = []
        return member

    def apply(self, owner: str, actions: Iterable[Action]) -> None:
        for a in actions:
            self.actions[owner].append(a)
            if isinstance(a, Send):
                text = envelope.to_json(a.message)
                items = ([(owner, a.to, text)] if self.intercept is None
                         else self.intercept(owner, a.to, text))
                for item in items:
                    self.wire.append(item)
                    self.queue.append(item)
            else:
                self.models[owner].apply(a)

    def deliver(self, limit: int = 100_000) -> None:
        for _ in range(limit):
            if not self.queue:
                return
            frm, to, text = self.queue.popleft()
            m = self.members.get(to)
            if m is None:
                continue
            try:
                acts = m.receive(frm, envelope.from_json(text), self.now)
            except Exception as e:
                self.refused.append((frm, to, e))
                if self.raise_errors:
                    raise
                continue
            self.apply(to, acts)
        raise RuntimeError("message storm")

    def tick_due(self) -> bool:
        ran = False
        for mid, m in list(self.members.items()):
            d = m.deadline
            if d is not None and d <= self.now:
                self.apply(mid, m.tick(self.now))
                ran = True
        return ran

    def settle(self) -> None:
        for _ in range(1000):
            self.deliver()
            if not self.tick_due() and not self.queue:
                return
        raise RuntimeError("did not settle")

    def advance(self, dt: float) -> None:
        """Move the clock, running every deadline on the way in order."""
        end = self.now + dt
        while True:
            self.settle()
            due = [m.deadline for m in self.members.values() if m.deadline is not None]
            nxt = min((d for d in due if d <= end), default=None)
            if nxt is None:
                break
            self.now = max(self.now, nxt)
        self.now = end
        self.settle()

    # membership shortcuts (every present participant sees the event)
    def enter(self, member: Member) -> None:
        visitor = member.role == "visitor"
        present = [m for m in self.members.values() if m.id != member.id]
        self.add(member)
        for m in present:
            self.apply(m.id, m.join(member.id, self.now, visitor=visitor))
        members = [m.id for m in present if m.role == "member"]
        visitors = [m.id for m in present if m.role == "visitor"]
        self.apply(member.id, member.start(self.now, members, visitors))

    def exit(self, pid: str) -> Member:
        gone = self.members.pop(pid)
        for m in self.members.values():
            self.apply(m.id, m.leave(pid, self.now))
        return gone

    def events(self, pid: str, cls: type[Event] | None = None) -> list[Any]:
        return [a for a in self.actions[pid]
                if isinstance(a, Event) and (cls is None or isinstance(a, cls))]

    def opens(self, receiver: str, sender: str) -> bool:
        """Can ``receiver`` open what ``sender`` seals right now (model check)?"""
        slot, material = self.models[sender].sealing_key(sender)
        return self.models[receiver].can_open(sender, slot, material)


# --- asyncio rooms with real pools -------------------------------------------------------


def vp8(i: int = 0) -> Frame:
    return Frame(bytes(range(10)) + bytes([i & 0xFF]) * 300, "vp8", keyframe=True, ssrc=7,
                 timestamp=90 * i)


class Room:
    def __init__(self, config: PolicyConfig) -> None:
        self.config = config
        self.bus = LoopbackBus()
        self.pools: dict[str, Pool] = {}
        self.drivers: dict[str, PoolDriver] = {}
        self.errors: list[tuple[str, str, Exception]] = []

    async def enter(self, pid: str, *, visitor: bool = False, member: Member | None = None,
                    settle: bool = True) -> PoolDriver:
        pool = Pool(workers=1, transport="inline", format="jitsi")
        await pool.start()
        self.pools[pid] = pool
        m = member or Member(pid, role="visitor" if visitor else "member", config=self.config)
        d = PoolDriver(m, pool, self.bus.sender(pid),
                       on_error=lambda peer, e: self.errors.append((pid, peer, e)))
        present = dict(self.drivers)
        self.drivers[pid] = d
        self.bus.attach(pid, d)
        for other in present.values():
            await other.join(pid, visitor=visitor)
        await d.start(members=[p for p, o in present.items() if o.member.role == "member"],
                      visitors=[p for p, o in present.items() if o.member.role == "visitor"])
        if settle:
            await self.settle()
        return d

    async def leave(self, pid: str) -> None:
        self.bus.detach(pid)
        for p, d in self.drivers.items():
            if p != pid:
                await d.leave(pid)
        await self.settle()

    async def settle(self) -> None:
        await self.bus.settle([d for p, d in self.drivers.items()])

    async def seal(self, sender: str, frame: Frame, *, stream: str | None = None) -> bytes:
        return await self.pools[sender].encrypt(stream or sender, frame)

    async def open(self, receiver: str, sender: str, sealed: bytes, like: Frame) -> bytes:
        return await self.pools[receiver].decrypt(
            sender, Frame(sealed, like.codec, keyframe=like.keyframe))

    async def close(self) -> None:
        await self.bus.close()
        for d in self.drivers.values():
            await d.close()
        for p in self.pools.values():
            await p.close()


@contextlib.asynccontextmanager
async def room(config: PolicyConfig = FAST) -> AsyncIterator[Room]:
    r = Room(config)
    try:
        yield r
    finally:
        await r.close()
