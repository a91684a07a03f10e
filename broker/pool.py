"""The worker pool: :class:`Pool` seals and opens frames in crypto worker processes
fed over ZeroMQ and shared-memory rings, with credits, ordering, supervision and key
operations ordered with the frames.

This module is the public face; the machinery lives in small modules:
:mod:`.ledger` (sans-I/O core: credits, counters, in-flight table, ordering,
outcomes, liveness, expiry), :mod:`.batcher` (PACKED messages and their results),
:mod:`.keydir` (keys, generations, replay floors, snapshots), :mod:`.placement`
(where a run goes), :mod:`.inline` (sealing in this process), :mod:`.supervisor`
(processes), :mod:`.remote` (workers on other hosts) and :mod:`.service` (asyncio).

One pipeline: every call becomes a :class:`~framecrypt.batch.FrameBatch` (the
per-``Frame`` API builds one), checked at the boundary — a bad argument is a typed
error at once and the pool is untouched.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from framecrypt.batch import BatchResult, FrameBatch, RingBatch
from framecrypt.batch import drop_pieces as _drop_pieces
from framecrypt.broker.events import EventHub, HealthHub, ParticipantHealth, PoolEvent
from framecrypt.broker.health import ParticipantStats
from framecrypt.broker.inline import InlineSealer
from framecrypt.broker.keydir import KeyDirectory
from framecrypt.broker.ledger import LATENCY_BUCKETS_S, Ledger, SlotBook
from framecrypt.broker.placement import Placement, PlacementModel
from framecrypt.broker.remote import RemoteMembers
from framecrypt.broker.runs import DECRYPT, ENCRYPT, Control, Group
from framecrypt.broker.service import BrokerService
from framecrypt.conf import Settings, load_settings
from framecrypt.errors import (
    FramecryptError,
    InvalidArgument,
    InvalidKeyMaterial,
    InvalidParameter,
    Overloaded,
    PoolClosed,
    UnknownKey,
)
from framecrypt.frame import Frame
from framecrypt.workers.engine import EngineConfig

__all__ = ["LATENCY_BUCKETS_S", "ParticipantHealth", "ParticipantStats", "Pool", "PoolEvent"]

_KDFS = (None, "pbkdf2", "hkdf")


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _finish(fut: asyncio.Future[None], g: Group, batch: FrameBatch) -> None:
    """A batch's group is complete: a reserved input buffer goes back to its ring (no
    worker reads it any more); wake the caller; if the caller went away (its await
    was cancelled), zero-copy outputs have no owner: give their ring space back."""
    if isinstance(batch, RingBatch):
        batch.release()
    if fut.cancelled():
        _drop_pieces(g.pieces)
        g.pieces = []
    else:
        _resolve(fut)


def _participant(p: object) -> str:
    if not isinstance(p, str):
        raise InvalidArgument("participant must be a str")
    if not p.isascii():  # a lone surrogate cannot be hashed to its worker or sent
        try:
            p.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgument("participant must be valid Unicode text") from None
    return p


class Pool:
    """A pool of crypto workers. Use as ``async with Pool() as pool:``.

    ``workers`` (default: CPU count), ``transport`` ("shm" | "ipc" | "inline"),
    ``format`` ("livekit" | "jitsi" | "sframe" | "dave"), ``placement`` ("auto" |
    "inline" | "pool"; DAVE always "pool": its nonces and windows live in workers);
    any other setting of :mod:`framecrypt.conf` as a keyword
    (``max_frames_in_flight=…``, ``heartbeat_interval_s=…``, ``supervision__…=``).
    """

    def __init__(self, workers: int | None = None, transport: str = "shm",
                 format: str = "livekit", placement: str = "auto",
                 settings: Settings | None = None, **options: Any) -> None:
        base = settings or load_settings()
        self.settings = s = base.replace(workers=workers, transport=transport, format=format,
                                         placement=placement, **options)
        self.transport, self.format = s.pool.transport, s.pool.format
        self.placement = "pool" if self.format == "dave" else s.pool.placement
        n = s.pool.resolved_workers()
        sframe = self.format == "sframe"
        cfg = EngineConfig(
            format=self.format, iv=s.livekit.iv, ratchet_window=s.livekit.ratchet_window,
            failure_tolerance=s.livekit.failure_tolerance, keyring_size=s.livekit.keyring_size,
            ratchet_salt=s.livekit.ratchet_salt_bytes,
            sif_trailer=s.livekit.sif_trailer_bytes or b"", suite=s.sframe.suite)
        # Nonces must not repeat across broker restarts either (keys outlive a process):
        # LiveKit/Jitsi "counter" IVs are ssrc || epoch || counter with a random 32-bit
        # epoch per pool instead of the RTP timestamp; SFrame counters start at a random
        # 48-bit offset per participant.
        counter_iv = not sframe and s.livekit.iv == "counter"
        epoch = secrets.randbits(32) if counter_iv else -1
        self._ledger = led = Ledger(s, rand48=lambda: secrets.randbits(48), sframe=sframe)
        for i in range(n):
            led.add_slot(f"w{i}")
        self._keys = KeyDirectory(sframe=sframe)
        model = PlacementModel(oversubscribed=n + 1 > (os.cpu_count() or 1))
        self._placement = Placement(self.placement, model,
                                    inline_budget=s.placement.inline_budget,
                                    inline_max_bytes=s.placement.inline_max_bytes,
                                    sframe_suite=s.sframe.suite if sframe else None,
                                    counter_iv=counter_iv)
        self._events = EventHub(led.counters)
        self._health = HealthHub(led.counters)
        led.health.on_change = self._health.emit
        #: the machinery (ledger, sockets, workers): a seam for tools and tests
        self.service = BrokerService(s, cfg, led, self._keys, self._placement,
                                  InlineSealer(cfg, epoch), self._events, epoch)
        self._remote = RemoteMembers(self.service)
        self._started = self._closed = False
        self.metrics_server: Any = None

    def __repr__(self) -> str:
        return (f"Pool(workers={len(self._ledger.slots)}, transport={self.transport!r}, "
                f"format={self.format!r}, placement={self.placement!r})")

    # --- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Pool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        from framecrypt.tuning import tune_allocator

        tune_allocator()
        name = "".join(c for c in self.settings.pool.name if c.isalnum())[:16]
        try:
            if self.settings.remote.listen:
                self.service.loop = asyncio.get_running_loop()
            await self.service.start(name, secrets.token_hex(4))
            if self.settings.remote.listen:
                self._remote.listen()
        except BaseException:
            await self._teardown()
            raise
        if self.settings.metrics.http_port:
            from framecrypt.broker.metrics import serve

            self.metrics_server = serve(self, self.settings.metrics.http_port,
                                        self.settings.metrics.http_addr)

    async def close(self, timeout: float | None = None) -> None:
        """Stop accepting frames, let the ones in flight finish (up to ``timeout``,
        default ``supervision.shutdown_timeout_s``), then stop the workers and remove
        every shm segment and ipc endpoint. Frames still pending get PoolClosed."""
        if self._closed:
            return
        svc = self.service
        svc.closing = True
        if not self._started:
            self._closed = True
            return
        loop = asyncio.get_running_loop()
        wait = timeout if timeout is not None else self.settings.supervision.shutdown_timeout_s
        credit = self._ledger.credit
        if credit.frames_out > 0:
            drained = loop.create_future()
            credit.on_drained = lambda: _resolve(drained)
            svc.schedule_flush()
            try:
                await asyncio.wait_for(drained, timeout=wait)
            except TimeoutError:
                pass
            credit.on_drained = None
        await self._teardown()

    async def _teardown(self) -> None:
        self.service.closing = True
        await self.service.stop()
        self._remote.stop()
        self.service.term()
        if self.metrics_server is not None:
            self.metrics_server.close()
            self.metrics_server = None
        self._closed = True

    def _check_open(self) -> None:
        if self.service.closing or not self._started:
            raise PoolClosed()

    # --- keys --------------------------------------------------------------------------

    async def set_key(self, participant: str, material: bytes | str, index: int = 0, *,
                      kdf: str | None = None, make_current: bool = True) -> None:
        """Set a participant's key at ``index`` (as livekit-client: ``str`` is a
        passphrase → PBKDF2, ``bytes`` a raw key → HKDF). Frames submitted after this
        returns are sealed with it; frames submitted before, with the previous key.
        The derivation runs in the participant's worker, never on the event loop."""
        self._check_open()
        name = _participant(participant)
        if self.format == "dave":
            raise InvalidParameter("a DAVE pool is keyed with set_dave_key")
        if not isinstance(material, bytes | str) or not material:
            raise InvalidKeyMaterial("key material must be non-empty str or bytes")
        if type(index) is not int:
            raise InvalidArgument("key index must be an int")
        if not 0 <= index < (256 if self.format == "sframe" else
                             self.settings.livekit.keyring_size):
            raise InvalidParameter("key index out of the key ring")
        if kdf is not None and not isinstance(kdf, str):
            raise InvalidArgument("kdf must be None or a str")
        if kdf not in _KDFS:
            raise InvalidParameter("kdf must be None, 'pbkdf2' or 'hkdf'")
        if not isinstance(make_current, bool):
            raise InvalidArgument("make_current must be a bool")
        pidx = self._ledger.participant(name)
        await self._control(pidx, "keyset", (pidx, name, index, bytes(material)
                                             if isinstance(material, bytes) else material,
                                             kdf, 0, make_current))

    async def set_dave_key(self, participant: str, epoch: int, base_secret: bytes) -> None:
        """DAVE (``format="dave"``): sender ``participant``'s base secret in MLS epoch
        ``epoch`` (16 bytes: :func:`framecrypt.dave.base_secret` of the epoch's exporter
        secret and the user id). Frames submitted after this returns are sealed with it
        from nonce 1, earlier ones with the epoch before; its frames open with it (the
        previous epoch's for 10 s more, as libdave). The last 3 epochs are kept."""
        from framecrypt.broker.keydir import DaveEpoch
        from framecrypt.transports.to_worker import DAVE_MAX_EPOCH

        self._check_open()
        name = _participant(participant)
        if self.format != "dave":
            raise InvalidParameter("set_dave_key needs a pool of format 'dave'")
        if type(epoch) is not int or not 0 <= epoch <= DAVE_MAX_EPOCH:
            raise InvalidParameter("a DAVE epoch is an int in 0..2**62-1")
        if not isinstance(base_secret, bytes) or len(base_secret) != 16:
            raise InvalidKeyMaterial("a DAVE base secret is 16 bytes")
        pidx = self._ledger.participant(name)
        known = self._keys.dave_epochs(pidx)
        base = self._ledger.reserve_counters(pidx, 0)  # the next counter it hands out
        if any(e.epoch == epoch and e.secret != base_secret for e in known):
            raise InvalidParameter("another base secret for a DAVE epoch already set")
        entry = DaveEpoch(epoch, bytes(base_secret), base)
        await self._control(pidx, "dave_key", (pidx, name, epoch, entry.secret, base),
                            lambda: self._keys.set_dave_epoch(pidx, name, entry))

    async def set_dave_passthrough(self, participant: str, enabled: bool) -> None:
        """DAVE: while ``enabled``, ``participant``'s frames are sent unencrypted and its
        unencrypted frames accepted (a call changing to or from E2EE); once disabled,
        unencrypted frames are refused after libdave's 10 s transition."""
        self._check_open()
        name = _participant(participant)
        if self.format != "dave":
            raise InvalidParameter("set_dave_passthrough needs a pool of format 'dave'")
        if not isinstance(enabled, bool):
            raise InvalidArgument("enabled must be a bool")
        pidx = self._ledger.participant(name)
        await self._control(pidx, "dave_passthrough", (pidx, name, enabled),
                            lambda: self._keys.set_dave_passthrough(pidx, name, enabled))

    async def ratchet_key(self, participant: str, index: int | None = None) -> int:
        """Ratchet a participant's key one step (as livekit's ``ratchetKey``); returns
        the new generation."""
        self._check_open()
        pidx = self._ledger.participant(_participant(participant))
        if index is None:
            index = self._keys.current(pidx)
            if index is None:
                raise UnknownKey(0)
        elif type(index) is not int:
            raise InvalidArgument("key index must be an int")
        elif not 0 <= index < 256:
            raise InvalidParameter("key index must be in 0..255")
        result = await self._control(pidx, "ratchet", (pidx, index))
        return int(result[0])

    async def remove_participant(self, participant: str) -> None:
        """Forget a participant's keys (frames already submitted are still processed)."""
        self._check_open()
        pidx = self._ledger.participant(_participant(participant))
        await self._control(pidx, "remove", (pidx,))
        self._ledger.health.removed(pidx)  # its metrics label goes to the next one

    def _control(self, pidx: int, op: str, args: tuple[Any, ...],
                 then: Callable[[], None] | None = None) -> asyncio.Future[list[Any]]:
        """A key operation queued behind the participant's frames; ``then`` runs when
        the worker acknowledged it, before anything else (the key directory's record)."""
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()

        def done(_: Control, result: list[Any] | None, err: BaseException | None) -> None:
            if err is None and then is not None:
                then()
            if not fut.done():
                if err is not None:
                    fut.set_exception(err)
                else:
                    fut.set_result(result or [])

        self._ledger.control(pidx, op, args, done)
        self.service.schedule_flush()
        return fut

    # --- events --------------------------------------------------------------------------

    def on_event(self, callback: Callable[[PoolEvent], None]) -> None:
        """Call ``callback(event)`` on the event loop for every participant event."""
        self._events.add(callback)

    def events(self) -> AsyncIterator[PoolEvent]:
        """Participant events as an async iterator (bounded: the oldest are dropped and
        counted when nobody reads)."""
        return self._events.stream(lambda: self._closed)

    def on_health(self, callback: Callable[[ParticipantHealth], None]) -> None:
        """Call ``callback(event)`` on the event loop when a stream of a participant
        turns failing or recovers (:class:`ParticipantHealth`; never per frame)."""
        self._health.add(callback)

    def health_events(self) -> AsyncIterator[ParticipantHealth]:
        """:class:`ParticipantHealth` transitions as a bounded async iterator."""
        return self._health.stream(lambda: self._closed)

    def participant_stats(self, participant: str | None = None
                          ) -> dict[str, ParticipantStats]:
        """Frames ok/failed by error class per participant and per stream (direction
        ``seal``/``open`` and SSRC), with its state and metrics label: every
        participant with an outcome, or only ``participant``. No key material."""
        if participant is not None:
            _participant(participant)
        return self._ledger.health.participant_stats(participant)

    # --- frames --------------------------------------------------------------------------

    async def encrypt(self, participant: str, frame: Frame) -> bytes:
        """Seal one frame with the participant's current key."""
        return await self._one(participant, frame, ENCRYPT, True)

    async def decrypt(self, participant: str, frame: Frame) -> bytes:
        """Open one frame sealed by ``participant`` (``frame.data`` is the ciphertext)."""
        return await self._one(participant, frame, DECRYPT, True)

    async def try_encrypt(self, participant: str, frame: Frame) -> bytes:
        """Like :meth:`encrypt` but raises :class:`Overloaded` at once when full."""
        return await self._one(participant, frame, ENCRYPT, False)

    async def try_decrypt(self, participant: str, frame: Frame) -> bytes:
        return await self._one(participant, frame, DECRYPT, False)

    async def _one(self, participant: str, frame: Frame, op: int, wait: bool) -> bytes:
        r = (await self._batch(participant, FrameBatch.from_frames([frame]), op, wait))[0]
        if isinstance(r, BaseException):
            raise r
        return r

    async def encrypt_many(self, participant: str, frames: Sequence[Frame], *,
                           return_exceptions: bool = False) -> list[Any]:
        """Seal many frames with one await; results in order. With
        ``return_exceptions`` failed frames give their exception in place, otherwise
        the first error is raised once every frame has its outcome."""
        return await self._many(participant, frames, ENCRYPT, return_exceptions)

    async def decrypt_many(self, participant: str, frames: Sequence[Frame], *,
                           return_exceptions: bool = False) -> list[Any]:
        return await self._many(participant, frames, DECRYPT, return_exceptions)

    async def _many(self, participant: str, frames: Sequence[Frame], op: int,
                    return_exceptions: bool) -> list[Any]:
        res = await self._batch(participant, FrameBatch.from_frames(frames), op, True)
        out = list(res)
        if res.failed and not return_exceptions:
            raise next(r for r in out if isinstance(r, BaseException))
        return out

    def reserve(self, participant: str, nbytes: int) -> RingBatch:
        """A :class:`~framecrypt.batch.RingBatch` of ``nbytes`` to write frames into in
        place: zero-copy ingress. With the shm transport its buffer is a reservation
        in the request ring of the worker that owns ``participant``, which then reads
        the frames where they were written (no copy into the ring); elsewhere (no
        ring, no room now, more than a quarter of the ring) private memory, counted
        as ``reserve_private``. One ``encrypt_batch``/``decrypt_batch`` consumes it.
        Fill and submit it promptly: the ring is FIFO, so a held reservation keeps
        the space after it from being reused."""
        self._check_open()
        name = _participant(participant)
        if type(nbytes) is not int or not 0 < nbytes <= 1 << 31:
            raise InvalidArgument("nbytes must be an int in 1..2**31")
        got = self.service.reserve(name, nbytes)
        if got is None:
            self._ledger.counters["reserve_private"] += 1
            return RingBatch(memoryview(bytearray(nbytes)))
        return RingBatch(*got)

    async def encrypt_batch(self, participant: str, batch: FrameBatch, *,
                            wait: bool = True, zero_copy: bool = False) -> BatchResult:
        """Seal a :class:`~framecrypt.batch.FrameBatch` with one await and no Python
        object per frame in this process; outcomes in order in the result. Invalid
        batches (bad codec number, a frame over ``max_frame_bytes``) raise before
        anything is admitted; ``wait=False`` fails frames with :class:`Overloaded`
        instead of waiting for credit. ``zero_copy=True``: outputs sealed by workers
        stay in the shared reply ring (views, no copy) until ``result.release()``
        (or a ``with`` block ends, or the result is collected)."""
        return await self._batch(participant, batch, ENCRYPT, wait, zero_copy)

    async def decrypt_batch(self, participant: str, batch: FrameBatch, *,
                            wait: bool = True, zero_copy: bool = False) -> BatchResult:
        """Open a batch of frames sealed by ``participant``; see :meth:`encrypt_batch`."""
        return await self._batch(participant, batch, DECRYPT, wait, zero_copy)

    def submit(self, participant: str, frame: Frame, callback: Callable[
            [int, bytes | None, BaseException | None], None], *, decrypt: bool = False
               ) -> None:
        """Fire-and-callback on the loop thread: ``callback(0, result, error)`` later.
        Never waits: raises :class:`Overloaded` when there is no credit."""
        self._check_open()
        batch = FrameBatch.from_frames([frame])
        batch.check(self.settings.limits.max_frame_bytes)
        name = _participant(participant)
        led = self._ledger
        if not led.credit.try_take(1, batch.nbytes):
            led.counters["overloaded"] += 1
            raise Overloaded()

        def done(g: Group) -> None:
            r = BatchResult(1, g.results, g.pieces, g.errors)[0]
            try:
                if isinstance(r, BaseException):
                    callback(0, None, r)
                else:
                    callback(0, r, None)
            except Exception:
                led.counters["events_dropped"] += 1

        self.service.place(name, batch, batch.offsets(), 0, 1, DECRYPT if decrypt else ENCRYPT,
                    Group(1, done))

    def submit_threadsafe(self, participant: str, frame: Frame, *, decrypt: bool = False
                          ) -> concurrent.futures.Future[bytes]:
        """From any thread (e.g. aiortc's encoder thread): a concurrent Future of the
        result. Waits for credit on the loop, not in the calling thread."""
        loop = self.service.loop
        if loop is None or self.service.closing:
            raise PoolClosed()
        coro = (self.decrypt if decrypt else self.encrypt)(participant, frame)
        return asyncio.run_coroutine_threadsafe(coro, loop)

    async def _batch(self, participant: str, batch: FrameBatch, op: int,
                     wait: bool, zero_copy: bool = False) -> BatchResult:
        self._check_open()
        name = _participant(participant)
        if not isinstance(batch, FrameBatch):
            raise InvalidArgument("batch must be a FrameBatch")
        batch.check(self.settings.limits.max_frame_bytes)
        n = len(batch)
        if n == 0:
            return BatchResult(0, [], [], 0)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        group = Group(n, lambda g: _finish(fut, g, batch), zero_copy=bool(zero_copy))
        offsets = batch.offsets()
        led = self._ledger
        chunk = max(1, min(n, self.settings.limits.max_frames_in_flight // 2))
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            nbytes = offsets[hi] - offsets[lo]
            if not led.credit.try_take(hi - lo, nbytes):
                err: FramecryptError | None = None
                if not wait or self.settings.limits.on_overload == "reject":
                    led.counters["overloaded"] += n - lo
                    err = Overloaded()
                elif not await self._acquire(hi - lo, nbytes):
                    err = PoolClosed()
                if err is not None:
                    for i in range(lo, n):
                        led.fail_now(group, i, err)
                    led.health.fail_range(led.participant(name), op, batch.ssrcs, batch.codecs,
                                          lo, n, type(err).__name__)
                    break
            self.service.place(name, batch, offsets, lo, hi, op, group)
        await fut
        return BatchResult(n, group.results, group.pieces, group.errors)

    async def _acquire(self, frames: int, nbytes: int) -> bool:
        """Wait for credit (FIFO); False if the pool closed meanwhile."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def grant() -> bool:
            if fut.done():
                return False
            fut.set_result(not self.service.closing)
            return True

        self._ledger.credit.wait(frames, nbytes, grant)
        if await fut:
            return True
        self._ledger.credit.release(frames, nbytes)
        return False

    # --- introspection -------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the pool runs on (None before :meth:`start`)."""
        return self.service.loop

    @property
    def remote_endpoint(self) -> str:
        """Where remote workers connect (``remote.listen``), once started."""
        return self._remote.endpoint

    @property
    def swept(self) -> list[str]:
        """Stale files of SIGKILLed pools this pool removed when it started."""
        return self.service.swept

    def worker_pids(self) -> list[int]:
        """PIDs of the live worker processes (empty for the inline transport)."""
        return self.service.worker_pids()

    def _worker_stats(self, sl: SlotBook) -> dict[str, Any]:
        w = self.service.worker_of(sl)
        return {"slot": sl.index, "name": sl.name, "remote": sl.remote, "state": sl.state,
                "pid": w.pid if w is not None else 0, "queued": len(sl.queue),
                "frames_done": sl.frames_done, "frames_in_flight": sl.frames,
                "bytes_in_flight": sl.bytes, "restarts": sl.restarts,
                "deaths_in_row": w.deaths_in_row if w is not None else 0}

    def stats(self) -> dict[str, Any]:
        """Counters and gauges (no key material)."""
        led = self._ledger
        return {
            **led.counters,
            "errors_by_reason": dict(led.errors_by_reason),
            "placement_costs": self._placement.model.snapshot(),
            "frames_in_flight": led.credit.frames_out,
            "bytes_in_flight": led.credit.bytes_out,
            "waiters": led.credit.waiting,
            "participants": len(led.names),
            "participants_moving": len(led.moving),  # waiting to be idle to move
            "workers": [self._worker_stats(sl) for sl in led.slots],
            "transport": self.transport, "format": self.format, "placement": self.placement,
            # pool-path latency (submit -> outcome), counts per upper bound in seconds
            "latency_buckets_s": list(LATENCY_BUCKETS_S),
            "latency_counts": list(led.latency),
            # per participant (bounded: labelled ones and "_other", see broker/health.py)
            "streams_failing": sum(led.health.failing.values()),
            "participant_metrics": led.health.metrics(),
        }
