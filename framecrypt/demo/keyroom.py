"""The demo's key exchange: every participant's media key comes from
:mod:`framecrypt.keys` (Olm over the demo's in-process signaling bus), not from a shared
secret.

Each participant has a :class:`~framecrypt.keys.Member` and a
:class:`~framecrypt.keys.PoolDriver` on the demo's one pool, seen through a
:class:`PoolView`: its own key is pool participant ``name`` (what its senders seal
with), the key it got from ``peer`` over Olm is ``name<-peer`` (what its receivers of
``peer``'s tracks open with). Olm messages travel over a
:class:`~framecrypt.keys.LoopbackBus`, the demo's signaling server; the relay only ever
sees RTP.

:class:`TrackedReceiver` notes the key index (the frame trailer's last byte, livekit and
jitsi formats) of every frame a receiver opens or rejects, so the demo can say when the
first frame on a new key was decoded, and that a participant who left decoded nothing
sealed under the key the others switched to.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from framecrypt.keys import LoopbackBus, Member, PolicyConfig, PoolDriver
from framecrypt.keys.policy import KeyRatcheted, KeySwitched
from framecrypt.webrtc import ReceiverTransform

if TYPE_CHECKING:
    from framecrypt import Pool
    from framecrypt.frame import Frame

# short enough to show a join and a leave in a run of a few seconds
DEMO_POLICY = PolicyConfig(join_debounce_s=0.5, leave_debounce_s=0.5, max_delay_s=2.0,
                           ack_timeout_s=1.0, format="livekit")


class PoolView:
    """One participant's view of the shared pool (see the module doc)."""

    def __init__(self, pool: Pool, owner: str) -> None:
        self.pool = pool
        self.owner = owner

    def name(self, participant: str) -> str:
        return participant if participant == self.owner else f"{self.owner}<-{participant}"

    async def set_key(self, participant: str, material: bytes | str, index: int = 0) -> None:
        await self.pool.set_key(self.name(participant), material, index)

    async def ratchet_key(self, participant: str, index: int | None = None) -> int:
        return await self.pool.ratchet_key(self.name(participant), index)

    async def remove_participant(self, participant: str) -> None:
        await self.pool.remove_participant(self.name(participant))

    async def encrypt(self, participant: str, frame: Frame) -> bytes:
        return await self.pool.encrypt(self.name(participant), frame)


@dataclass
class KeyLog:
    """Per key index: frames opened / rejected and when the first one was opened."""

    opened: dict[int, int] = field(default_factory=dict)
    rejected: dict[int, int] = field(default_factory=dict)
    first_opened: dict[int, float] = field(default_factory=dict)
    first_any: float | None = None


class TrackedReceiver(ReceiverTransform):
    """A :class:`~framecrypt.webrtc.ReceiverTransform` that logs key indices."""

    def __init__(self, pool: Pool, participant: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(pool, participant)
        self.keys = KeyLog()
        self._clock = clock

    def open(self, codec: str, data: bytes, done: Callable[[bytes], None],
             failed: Callable[[], None]) -> None:
        index = data[-1] if data else -1
        log = self.keys

        def ok(result: bytes) -> None:
            now = self._clock()
            log.opened[index] = log.opened.get(index, 0) + 1
            log.first_opened.setdefault(index, now)
            if log.first_any is None:
                log.first_any = now
            done(result)

        def bad() -> None:
            log.rejected[index] = log.rejected.get(index, 0) + 1
            failed()

        super().open(codec, data, ok, bad)


class KeyRoom:
    """The participants' drivers on one pool and one signaling bus."""

    def __init__(self, pool: Pool, config: PolicyConfig = DEMO_POLICY) -> None:
        self.pool = pool
        self.config = config
        self.bus = LoopbackBus()
        self.drivers: dict[str, PoolDriver] = {}
        self.present: list[str] = []
        self.errors: list[tuple[str, str, str]] = []

    def _driver(self, name: str) -> PoolDriver:
        view = PoolView(self.pool, name)
        d = PoolDriver(Member(name, config=self.config), cast("Pool", view),
                       self.bus.sender(name),
                       on_error=lambda peer, e: self.errors.append(
                           (name, peer, type(e).__name__)))
        self.drivers[name] = d
        self.bus.attach(name, d)
        return d

    async def open(self, names: Iterable[str]) -> None:
        """The members present from the start: no join ratchets, keys in place when
        this returns."""
        names = list(names)
        for n in names:
            self._driver(n)
        for n in names:
            await self.drivers[n].start(members=[m for m in names if m != n])
        self.present = names
        await self.settle()

    async def join(self, name: str) -> None:
        """``name`` joins: the others learn it (their join ratchet runs after the
        debounce, on the drivers' timers); its own key is set when this returns."""
        present = list(self.present)
        d = self._driver(name)
        for p in present:
            await self.drivers[p].join(name)
        await d.start(members=present)
        self.present.append(name)

    async def leave(self, name: str) -> None:
        """``name`` leaves the signaling room: the others drop its keys at once and
        rotate theirs after the debounce. Its own pool entries stay (an ex-member who
        still gets the relay's RTP keeps what it had)."""
        self.bus.detach(name)
        self.present.remove(name)
        for p in self.present:
            await self.drivers[p].leave(name)

    async def settle(self) -> None:
        await self.bus.settle([self.drivers[p] for p in self.present])

    async def verify(self, pairs: Iterable[tuple[str, str]]) -> None:
        """SAS between each pair (both sides confirm when their emoji match)."""
        from framecrypt.keys.policy import SasReady

        pairs = list(pairs)
        await self.settle()
        for a, b in pairs:
            await self.drivers[a].start_verification(b)
        await self.settle()
        for a, b in pairs:
            ra = _last_sas(self.drivers[a].events, SasReady, b)
            rb = _last_sas(self.drivers[b].events, SasReady, a)
            same = ra is not None and rb is not None and ra.result.indices == rb.result.indices
            await self.drivers[a].confirm_sas(b, same)
            await self.drivers[b].confirm_sas(a, same)
        await self.settle()

    def switches(self, cause: str) -> dict[str, tuple[int, float]]:
        """Per participant: (key index, time) of its last own-key change for ``cause``."""
        out: dict[str, tuple[int, float]] = {}
        for name, d in self.drivers.items():
            for ev in d.events:
                if isinstance(ev, KeySwitched) and ev.cause == cause:
                    out[name] = (ev.key_index, ev.at)
                elif isinstance(ev, KeyRatcheted) and ev.cause == cause:
                    out[name] = (ev.key_index, ev.at)
        return out

    def messages(self) -> int:
        return len(self.bus.log)

    async def close(self) -> None:
        await self.bus.close()
        for d in self.drivers.values():
            await d.close()


def _last_sas(events: list[Any], cls: type[Any], peer: str) -> Any:
    for ev in reversed(events):
        if isinstance(ev, cls) and getattr(ev, "peer", None) == peer:
            return ev
    return None
