"""A thin asyncio driver: applies a :class:`~framecrypt.keys.policy.Member`'s actions to
a :class:`framecrypt.Pool` and to the caller's signaling, and runs its timers.

::

    pool = Pool(workers=1, transport="inline", format="jitsi")
    member = Member("alice")
    driver = PoolDriver(member, pool, send=lambda peer, text: ws.send(peer, text))
    await driver.start(members=["bob"])          # then, for every signaling event:
    await driver.join("carol") / await driver.leave("bob")
    await driver.receive("bob", text)           # or driver.feed(...) from a callback
    sealed = await pool.encrypt("alice", frame)  # keys are always current

Actions are applied in order, one input at a time (an ``asyncio.Lock``), so a frame
submitted after a ``KeySwitched`` event is sealed with the new key, and a key-info ack
leaves only after the key it acknowledges is in the pool. Timers: the driver calls
``member.tick(now)`` at ``member.deadline`` (``loop.call_later``), nothing sleeps.
Refused messages (:class:`~framecrypt.keys.errors.KeyExchangeError`) are counted and
reported through ``on_error``; they never stop the driver. Logs (logger
``framecrypt.keys``) name participants and message kinds, never key material.

:class:`LoopbackBus` is an in-process signaling bus (tests, the demo), and
:func:`demo_report` / :func:`run_demo` produce the demo's ``sas`` and ``rotations``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from framecrypt.errors import FramecryptError

from .datamsg import DataReceiver, DataSender, EncryptedPacket, kdf_for
from .envelope import Message, from_json, to_json
from .errors import KeyExchangeError, UnknownSession
from .olm import MediaKey
from .policy import (
    Action,
    Event,
    KeyRatcheted,
    KeySwitched,
    Member,
    PolicyConfig,
    RatchetKey,
    RemoveKeys,
    SasReady,
    SasVerified,
    Send,
    SetKey,
    VisitorKeyUpdated,
)

if TYPE_CHECKING:
    from framecrypt.broker.pool import Pool
    from framecrypt.frame import Frame

log = logging.getLogger("framecrypt.keys")

SendFn = Callable[[str, str], "Awaitable[None] | None"]
_STASH_PER_PEER = 32
_STASH_PEERS = 64


class PoolDriver:
    """Drive ``member`` against ``pool`` (see the module doc).

    ``send(peer, text)`` delivers an envelope (JSON text); it may be a coroutine
    function. ``clock()`` is the time base handed to the member (default: the loop's
    monotonic clock). Messages that arrive before :meth:`start` or from a participant
    not joined yet are kept (bounded) and replayed when it is known."""

    def __init__(self, member: Member, pool: Pool, send: SendFn, *,
                 clock: Callable[[], float] | None = None,
                 on_event: Callable[[Event], None] | None = None,
                 on_error: Callable[[str, KeyExchangeError], None] | None = None,
                 random32: Callable[[], int] | None = None) -> None:
        self.member = member
        self.pool = pool
        self._send = send
        self._clock = clock
        self._on_event = on_event
        self._on_error = on_error
        self._random32 = random32 or (lambda: int.from_bytes(os.urandom(4), "big"))
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._inbox: asyncio.Queue[tuple[str, str | Message]] | None = None
        self._pump: asyncio.Task[None] | None = None
        self._stash: dict[str, deque[str | Message]] = {}
        self._closed = False
        kdf = kdf_for(member.config.format)
        self.data_sender = DataSender(kdf, keyring_size=member.config.keyring_size)
        self.data_receiver = DataReceiver(kdf, keyring_size=member.config.keyring_size)
        self.started_at: float | None = None
        self.events: list[Event] = []
        self.errors: deque[tuple[str, str, str]] = deque(maxlen=1000)  # (peer, type, reason)
        self.counters = {"sent": 0, "received": 0, "refused": 0, "pool_errors": 0}

    def __repr__(self) -> str:
        return f"PoolDriver({self.member.id!r}, events={len(self.events)})"

    def now(self) -> float:
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time()

    # --- inputs ------------------------------------------------------------------------

    async def start(self, members: Iterable[str] = (), visitors: Iterable[str] = (), *,
                    identity_keys: Mapping[str, Mapping[str, str]] | None = None) -> None:
        async with self._lock:
            now = self.now()
            self.started_at = now
            await self._apply(self.member.start(now, members, visitors,
                                                identity_keys=identity_keys))
            await self._replay_stash()

    async def join(self, peer: str, *, visitor: bool = False,
                   identity_keys: Mapping[str, str] | None = None) -> None:
        async with self._lock:
            await self._apply(self.member.join(peer, self.now(), visitor=visitor,
                                               identity_keys=identity_keys))
            await self._replay_stash()

    async def leave(self, peer: str) -> None:
        async with self._lock:
            self._stash.pop(peer, None)
            await self._apply(self.member.leave(peer, self.now()))
            self.data_receiver.remove(peer)

    async def receive(self, peer: str, message: str | Message) -> None:
        """Process one envelope (JSON text or a parsed message) from ``peer``."""
        async with self._lock:
            await self._receive_locked(peer, message)

    def feed(self, peer: str, message: str | Message) -> None:
        """Queue an envelope from a synchronous callback (a data channel's ``message``
        handler); processed in arrival order by a background task."""
        if self._inbox is None:
            self._inbox = asyncio.Queue()
            self._pump = asyncio.get_running_loop().create_task(self._run_inbox())
        self._inbox.put_nowait((peer, message))

    async def rekey(self) -> None:
        async with self._lock:
            await self._apply(self.member.rekey(self.now()))

    async def start_verification(self, peer: str) -> None:
        async with self._lock:
            await self._apply(self.member.start_verification(peer, self.now()))

    async def confirm_sas(self, peer: str, matches: bool) -> None:
        async with self._lock:
            await self._apply(self.member.confirm_sas(peer, matches, self.now()))

    async def run_due(self) -> bool:
        """Run the member's timers if due now; True if anything was due."""
        async with self._lock:
            deadline = self.member.deadline
            now = self.now()
            if deadline is None or deadline > now:
                return False
            await self._apply(self.member.tick(now))
            return True

    @property
    def busy(self) -> bool:
        """True while queued input is still being processed."""
        return self._lock.locked() or (self._inbox is not None and not self._inbox.empty())

    # --- data messages and visitor frames ----------------------------------------------

    def encrypt_data(self, payload: bytes, *, now_ms: int | None = None) -> bytes:
        """Seal ``payload`` (e.g. :func:`~framecrypt.keys.datamsg.chat_payload`) with our
        current media key: ``livekit.EncryptedPacket`` protobuf bytes."""
        key = self.member.current_key
        if key is None:
            raise UnknownSession(self.member.id, "no media key")
        ms = int(time.monotonic() * 1000) if now_ms is None else now_ms
        return self.data_sender.seal(payload, key, now_ms=ms,
                                     random32=self._random32()).to_bytes()

    def decrypt_data(self, sender: str, packet: bytes | EncryptedPacket) -> bytes:
        """Open a data packet from ``sender`` (typed errors: ``UnknownKey``,
        ``AuthenticationFailed``, ``ReplayedFrame``, ``MalformedFrame``)."""
        return self.data_receiver.open(sender, packet)

    async def encrypt_for_visitors(self, frame: Frame) -> bytes:
        """Seal ``frame`` for visitors (our visitor stream key)."""
        stream = self.member.visitor_stream
        if stream is None:
            raise UnknownSession(self.member.id, "no visitor key")
        return await self.pool.encrypt(stream, frame)

    # --- internals ---------------------------------------------------------------------

    async def _run_inbox(self) -> None:
        assert self._inbox is not None
        while True:
            peer, message = await self._inbox.get()
            try:
                await self.receive(peer, message)
            except Exception:  # never let the pump die
                log.exception("driver %s: receive failed", self.member.id)

    async def _replay_stash(self) -> None:
        for peer in [p for p in self._stash if p in self.member.members
                     or p in self.member.visitors]:
            for item in self._stash.pop(peer):
                await self._receive_locked(peer, item)

    async def _receive_locked(self, peer: str, message: str | Message) -> None:
        if not self.member.started:
            self._keep(peer, message)          # early bird: kept until start()
            return
        self.counters["received"] += 1
        try:
            msg = from_json(message) if isinstance(message, str) else message
            actions = self.member.receive(peer, msg, self.now())
        except UnknownSession as e:
            if e.reason == "unknown participant" and not self._closed:
                self._keep(peer, message)
                return
            self._refused(peer, e)
            return
        except KeyExchangeError as e:
            self._refused(peer, e)
            return
        await self._apply(actions)

    def _keep(self, peer: str, message: str | Message) -> None:
        q = self._stash.get(peer)
        if q is None:
            if len(self._stash) >= _STASH_PEERS:
                return
            q = self._stash[peer] = deque(maxlen=_STASH_PER_PEER)
        q.append(message)

    def _refused(self, peer: str, err: KeyExchangeError) -> None:
        self.counters["refused"] += 1
        reason = str(getattr(err, "reason", "")) or type(err).__name__
        self.errors.append((peer, type(err).__name__, reason))
        log.info("driver %s: refused a message from %s: %s", self.member.id, peer,
                 type(err).__name__)
        if self._on_error is not None:
            self._on_error(peer, err)

    async def _apply(self, actions: list[Action]) -> None:
        for a in actions:
            try:
                if isinstance(a, Send):
                    self.counters["sent"] += 1
                    log.debug("driver %s: send %s to %s", self.member.id, a.message.KIND, a.to)
                    r = self._send(a.to, to_json(a.message))
                    if inspect.isawaitable(r):
                        await r
                elif isinstance(a, SetKey):
                    log.debug("driver %s: set key of %s at index %d", self.member.id,
                              a.participant, a.index)
                    await self.pool.set_key(a.participant, a.material, a.index)
                    if a.participant != self.member.id and not a.participant.endswith(
                            self.member.config.visitor_suffix):
                        self.data_receiver.set_key(a.participant, MediaKey(a.material, a.index))
                elif isinstance(a, RatchetKey):
                    log.debug("driver %s: ratchet %s at index %d", self.member.id,
                              a.participant, a.index)
                    await self.pool.ratchet_key(a.participant, a.index)
                elif isinstance(a, RemoveKeys):
                    await self.pool.remove_participant(a.participant)
                    self.data_receiver.remove(a.participant)
                elif isinstance(a, Event):
                    self.events.append(a)
                    log.debug("driver %s: %s", self.member.id, type(a).__name__)
                    if self._on_event is not None:
                        self._on_event(a)
            except FramecryptError as e:
                self.counters["pool_errors"] += 1
                log.warning("driver %s: %s failed: %s", self.member.id, type(a).__name__,
                            type(e).__name__)
        self._reschedule()

    def _reschedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.member.deadline
        if deadline is None or self._closed:
            return
        delay = max(0.0, deadline - self.now())
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        task = asyncio.get_running_loop().create_task(self._tick())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tick(self) -> None:
        if self._closed:
            return
        async with self._lock:
            await self._apply(self.member.tick(self.now()))

    async def close(self) -> None:
        """Stop timers and the inbox task (the pool is the caller's to close)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for t in [*self._tasks, *([self._pump] if self._pump else [])]:
            t.cancel()
        for t in [*self._tasks, *([self._pump] if self._pump else [])]:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass


class LoopbackBus:
    """In-process signaling between drivers: one FIFO (so per-pair order holds),
    delivered by a background task. ``intercept(frm, to, text)`` may return the list of
    ``(frm, to, text)`` to deliver instead (drop, duplicate, reroute: tests)."""

    def __init__(self) -> None:
        self._drivers: dict[str, PoolDriver] = {}
        self._queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.intercept: Callable[[str, str, str], list[tuple[str, str, str]]] | None = None
        self.log: list[tuple[str, str, str]] = []

    def attach(self, participant: str, driver: PoolDriver) -> None:
        self._drivers[participant] = driver

    def detach(self, participant: str) -> None:
        self._drivers.pop(participant, None)

    def sender(self, participant: str) -> Callable[[str, str], None]:
        return lambda to, text: self.send(participant, to, text)

    def send(self, frm: str, to: str, text: str) -> None:
        items = [(frm, to, text)] if self.intercept is None else self.intercept(frm, to, text)
        for item in items:
            self.log.append(item)
            self._pending += 1
            self._idle.clear()
            self._queue.put_nowait(item)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            frm, to, text = await self._queue.get()
            try:
                d = self._drivers.get(to)
                if d is not None:
                    await d.receive(frm, text)
            except Exception:
                log.exception("bus: delivery to %s failed", to)
            finally:
                self._pending -= 1
                if not self._pending:
                    self._idle.set()

    async def idle(self) -> None:
        await self._idle.wait()

    async def settle(self, drivers: Iterable[PoolDriver] | None = None,
                     rounds: int = 1000) -> None:
        """Deliver everything and run every timer that is due now, until nothing moves."""
        ds = list(drivers) if drivers is not None else list(self._drivers.values())
        for _ in range(rounds):
            await self.idle()
            ran = False
            for d in ds:
                ran |= await d.run_due()
            await asyncio.sleep(0)
            if not ran and self._idle.is_set() and not any(d.busy for d in ds):
                return
        raise RuntimeError("signaling did not settle")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None


# --- demo data --------------------------------------------------------------------------


def demo_report(drivers: Iterable[PoolDriver], *, t0: float | None = None) -> dict[str, Any]:
    """The demo's JSON from a run: ``sas`` = one entry per verified or compared pair
    ``{pair, emoji_a, emoji_b, match, verified}``; ``rotations`` = every key change after
    start ``{participant, cause, key_index, switched_at_s}`` (``cause``: ``join`` for a
    ratchet, ``leave``/``manual`` for a new key, ``visitor-key`` for the visitor key)."""
    ds = list(drivers)
    starts = [d.started_at for d in ds if d.started_at is not None]
    base = t0 if t0 is not None else (min(starts) if starts else 0.0)
    by_id = {d.member.id: d for d in ds}
    sas: list[dict[str, Any]] = []
    for a in sorted(by_id):
        for b in sorted(by_id):
            if a >= b:
                continue
            ra = _last(by_id[a].events, SasReady, b)
            rb = _last(by_id[b].events, SasReady, a)
            if ra is None or rb is None:
                continue
            sas.append({
                "pair": [a, b],
                "emoji_a": list(ra.result.emoji), "emoji_b": list(rb.result.emoji),
                "names_a": list(ra.result.names), "names_b": list(rb.result.names),
                "decimals_a": list(ra.result.decimals), "decimals_b": list(rb.result.decimals),
                "match": ra.result.indices == rb.result.indices,
                "verified": (_last(by_id[a].events, SasVerified, b) is not None
                             and _last(by_id[b].events, SasVerified, a) is not None),
            })
    rotations: list[dict[str, Any]] = []
    for d in ds:
        for ev in d.events:
            if isinstance(ev, KeySwitched) and ev.cause != "start":
                rotations.append({"participant": d.member.id, "cause": ev.cause,
                                  "key_index": ev.key_index,
                                  "switched_at_s": round(ev.at - base, 6)})
            elif isinstance(ev, KeyRatcheted):
                rotations.append({"participant": d.member.id, "cause": ev.cause,
                                  "key_index": ev.key_index,
                                  "switched_at_s": round(ev.at - base, 6)})
            elif isinstance(ev, VisitorKeyUpdated) and ev.cause != "received":
                rotations.append({"participant": d.member.id, "cause": "visitor-key",
                                  "key_index": ev.key_index,
                                  "switched_at_s": round(ev.at - base, 6)})
    rotations.sort(key=lambda r: (r["switched_at_s"], r["participant"]))
    return {"sas": sas, "rotations": rotations}


def _last(events: list[Event], cls: type[Any], peer: str) -> Any:
    for ev in reversed(events):
        if isinstance(ev, cls) and getattr(ev, "peer", None) == peer:
            return ev
    return None


async def run_demo(participants: tuple[str, ...] = ("alice", "bob", "carol"), *,
                   leaver: str | None = "carol", debounce_s: float = 0.05,
                   ack_timeout_s: float = 2.0, timeout_s: float = 20.0) -> dict[str, Any]:
    """Run a small call in this process: each participant with its own inline
    ``Pool(format="jitsi")``, joining one after the other over a :class:`LoopbackBus`;
    SAS between every pair; frames checked both ways; then ``leaver`` leaves and the
    others rotate. Returns :func:`demo_report` plus ``checks`` (all decode, the leaver
    opens nothing sealed after the switch)."""
    return await asyncio.wait_for(_demo(participants, leaver, debounce_s, ack_timeout_s),
                                  timeout_s)


async def _demo(participants: tuple[str, ...], leaver: str | None, debounce_s: float,
                ack_timeout_s: float) -> dict[str, Any]:
    from framecrypt.broker.pool import Pool
    from framecrypt.errors import AuthenticationFailed, UnknownKey
    from framecrypt.frame import Frame

    cfg = PolicyConfig(join_debounce_s=debounce_s, leave_debounce_s=debounce_s,
                       ack_timeout_s=ack_timeout_s)
    bus = LoopbackBus()
    pools: dict[str, Pool] = {}
    drivers: dict[str, PoolDriver] = {}
    frame = Frame(bytes(range(10)) + bytes(200), "vp8", keyframe=True, ssrc=1, timestamp=90)
    checks: dict[str, Any] = {}
    try:
        for p in participants:
            pool = Pool(workers=1, transport="inline", format="jitsi")
            await pool.start()
            pools[p] = pool
            d = PoolDriver(Member(p, config=cfg), pool, bus.sender(p))
            drivers[p] = d
            bus.attach(p, d)
            present = [q for q in drivers if q != p]
            for q in present:
                await drivers[q].join(p)
            await d.start(members=present)
            await _settle_until_quiet(bus, drivers.values(), debounce_s)
        for a in participants:
            for b in participants:
                if a < b:
                    await drivers[a].start_verification(b)
        await _settle_until_quiet(bus, drivers.values(), 0)
        for a in participants:
            for b in participants:
                if a != b and _last(drivers[a].events, SasReady, b) is not None:
                    await drivers[a].confirm_sas(b, True)
        await _settle_until_quiet(bus, drivers.values(), 0)
        ok = True
        for a in participants:
            sealed = await pools[a].encrypt(a, frame)
            for b in participants:
                if b != a:
                    opened = await pools[b].decrypt(a, Frame(sealed, "vp8", keyframe=True))
                    ok &= opened == frame.data
        checks["all_decode"] = ok
        if leaver is not None and leaver in drivers:
            stay = [p for p in participants if p != leaver]
            for p in stay:
                await drivers[p].leave(leaver)
            bus.detach(leaver)
            await _settle_until_quiet(bus, [drivers[p] for p in stay], debounce_s)
            blocked = True
            for p in stay:
                sealed = await pools[p].encrypt(p, frame)
                try:
                    await pools[leaver].decrypt(p, Frame(sealed, "vp8", keyframe=True))
                    blocked = False
                except (AuthenticationFailed, UnknownKey):
                    pass
            checks["leaver_blocked"] = blocked
    finally:
        await bus.close()
        for d in drivers.values():
            await d.close()
        for pool in pools.values():
            await pool.close()
    report = demo_report(drivers.values())
    report["checks"] = checks
    return report


async def _settle_until_quiet(bus: LoopbackBus, drivers: Iterable[PoolDriver],
                              wait_s: float) -> None:
    """Settle, and let debounce timers of ``wait_s`` run out (real time)."""
    ds = list(drivers)
    loop = asyncio.get_running_loop()
    end = loop.time() + wait_s
    while True:
        await bus.settle(ds)
        pending = [d.member.deadline for d in ds if d.member.deadline is not None]
        soon = [t for t in pending if t <= end + 1e-3]
        if not soon:
            return
        await asyncio.sleep(max(0.0, min(soon) - loop.time()) + 1e-3)


__all__ = ["LoopbackBus", "PoolDriver", "SendFn", "demo_report", "run_demo"]
