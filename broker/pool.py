"""The worker pool: :class:`Pool` ships frames in batches to crypto worker processes
over ZeroMQ (+ shared-memory rings), with credits, ordering, supervision and key
operations ordered with the frames.

The hot path, per DESIGN.md's performance model:

- a frame costs the broker no object of its own (a call's frames travel as one
  ``_Run``), one packed 40-byte descriptor and one copy into the worker's request
  ring; batches of up to ``batch.max_frames`` / ``batch.max_bytes`` go out when full
  or when the event loop goes idle (a flush is scheduled with ``call_soon``);
- the socket's readiness is awaited once (``add_reader``) and then drained without
  blocking; results come back as one packed array per batch;
- cheap frames may be sealed in the broker's own process (placement ``auto`` /
  ``inline``) when that stream has nothing in flight, so per-stream order holds.

Invariants (DESIGN.md): the broker owns the send counters (a re-dispatched frame keeps
its counter and seals to the same bytes); every submitted frame gets exactly one
outcome; credits bound frames and bytes in flight globally and per worker; a
participant lives on one worker slot (rendezvous hashing) whose messages are FIFO, so
a stream's results come back in order and key operations apply between the right
frames; the key directory here is replayed to a restarted worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import zmq

from framecrypt.batch import BatchResult, FrameBatch, OutputPiece, status_error
from framecrypt.broker.placement import Kind, PlacementModel
from framecrypt.broker.rendezvous import owner
from framecrypt.conf import Settings, load_settings
from framecrypt.errors import (
    FramecryptError,
    FrameExpired,
    MalformedFrame,
    Overloaded,
    PoolClosed,
    ProtocolError,
    UnknownKey,
    UnsupportedCodec,
    WorkerLost,
)
from framecrypt.frame import Frame
from framecrypt.transports import hygiene, wire
from framecrypt.transports.shm import RingAllocator, Segment
from framecrypt.workers.engine import Engine, EngineConfig, reply_capacity, reply_size
from framecrypt.workers.service import WorkerService

ENCRYPT = wire.OP_ENCRYPT
DECRYPT = wire.OP_DECRYPT
_HEAVY_CODECS = frozenset(("h264", "h265"))
_CTR_SUITES = frozenset((1, 2, 3, 6, 7, 8))
_LITTLE = sys.byteorder == "little"

STARTING, READY, DEAD, STOPPED = "starting", "ready", "dead", "stopped"
LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                     0.25, 1.0)


@dataclass(frozen=True, slots=True)
class PoolEvent:
    """A per-participant event, like livekit's EncryptionState changes. No key bytes."""

    participant: str
    kind: str  # key_ratcheted | decryption_failed | missing_key | key_invalid | sif_dropped
    key_index: int


class _Group:
    """The outcome sink of one call (one frame or a batch of frames)."""

    __slots__ = ("callback", "errors", "future", "pieces", "remaining", "results")

    def __init__(self, n: int, future: asyncio.Future[Any] | None,
                 callback: Callable[[int, bytes | None, BaseException | None], None] | None
                 ) -> None:
        self.results: list[Any] = [None] * n
        self.remaining = n
        self.future = future
        self.callback = callback
        self.errors = 0
        self.pieces: list[OutputPiece] = []  # outputs of packed batches


class _Run:
    """The frames of one call that go to the pool (one participant, one op). No
    object per frame: frames, group indexes and counters are parallel lists."""

    __slots__ = ("attempts", "counters", "frames", "group", "idx", "kind", "nbytes", "op",
                 "packed", "pidx", "remaining", "streams", "t0")

    def __init__(self, op: int, pidx: int, group: _Group, t0: float) -> None:
        self.op = op
        self.pidx = pidx
        self.group = group
        self.t0 = t0
        self.frames: Sequence[Frame] = []
        self.idx: Sequence[int] = []
        self.counters: Sequence[int] = []
        self.packed: _Packed | None = None
        self.kind: Kind = (0, False)  # packed runs: their kind for the placement model
        self.attempts: list[int] = []
        self.streams: dict[int, int] = {}  # ssrc -> frames of that stream in this run
        self.remaining = 0
        self.nbytes = 0


class _Packed:
    """A run that is a slice ``[lo, hi)`` of a :class:`FrameBatch`: its frames are
    never objects on the hot path (``run.frames`` makes them on demand for the slow
    paths: expiry, re-dispatch, failures)."""

    __slots__ = ("batch", "counter0", "hi", "lo", "offsets")

    def __init__(self, batch: FrameBatch, offsets: array[int], lo: int, hi: int,
                 counter0: int) -> None:
        self.batch = batch
        self.offsets = offsets
        self.lo = lo
        self.hi = hi
        self.counter0 = counter0


class _LazyFrames(Sequence[Frame]):
    __slots__ = ("pk",)

    def __init__(self, pk: _Packed) -> None:
        self.pk = pk

    def __len__(self) -> int:
        return self.pk.hi - self.pk.lo

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        pk = self.pk
        return pk.batch.frame(pk.lo + i, pk.offsets)


def _le(col: array[int]) -> bytes:
    """A u32 column as little-endian bytes (the wire's byte order)."""
    if _LITTLE:
        return col.tobytes()
    c = array("I", col)
    c.byteswap()
    return c.tobytes()


class _Span:
    """A range ``[pos, end)`` of a run waiting in a slot's queue."""

    __slots__ = ("end", "pos", "run")

    def __init__(self, run: _Run, pos: int, end: int) -> None:
        self.run = run
        self.pos = pos
        self.end = end


class _Control:
    __slots__ = ("args", "future", "op", "seq")

    def __init__(self, seq: int, op: str, args: list[Any],
                 future: asyncio.Future[list[Any]] | None) -> None:
        self.seq = seq
        self.op = op
        self.args = args
        self.future = future


class _Batch:
    __slots__ = ("batch_id", "count", "nbytes", "out_starts", "rep_span", "req_span",
                 "segments", "spent")

    def __init__(self, batch_id: int, segments: list[tuple[_Run, int, int]], count: int,
                 nbytes: int, req_span: tuple[int, int] | None,
                 rep_span: tuple[int, int] | None) -> None:
        self.batch_id = batch_id
        self.segments = segments
        self.count = count
        self.nbytes = nbytes
        self.req_span = req_span
        self.rep_span = rep_span
        self.spent = 0.0  # packed: seconds this process spent sending it
        self.out_starts: list[int] = []  # packed: each segment's reply region (from rep_span)


class _Slot:
    """One worker slot: the process (or thread) in it, its queue and what it holds."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.name = f"w{index}"
        self.identity = b""
        self.epoch = 0
        self.state = STOPPED
        self.proc: subprocess.Popen[bytes] | None = None
        self.pidfd: int | None = None
        self.pid = 0
        self.queue: deque[_Span | _Control] = deque()
        self.inflight: deque[_Batch | _Control] = deque()
        self.frames = 0  # frames sent and not answered
        self.bytes = 0
        self.last_heard = 0.0
        self.last_sent = 0.0
        self.deaths_in_row = 0
        self.respawn_handle: asyncio.TimerHandle | None = None
        self.req_seg: Segment | None = None
        self.rep_seg: Segment | None = None
        self.req_ring: RingAllocator | None = None
        self.rep_ring: RingAllocator | None = None
        self.service: WorkerService | None = None  # inline transport
        self.executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.restarts = 0
        self.remote = False  # a worker on another host (tcp + CURVE); never respawned
        self.frames_done = 0


class Pool:
    """A pool of crypto workers. Use as ``async with Pool() as pool:``.

    ``workers`` (default: CPU count), ``transport`` ("shm" | "ipc" | "inline"),
    ``format`` ("livekit" | "jitsi" | "sframe"), ``placement`` ("auto" | "inline" |
    "pool"); any other setting of :mod:`framecrypt.conf` as a keyword
    (``max_frames_in_flight=…``, ``heartbeat_interval_s=…``, ``supervision__…=``).
    """

    def __init__(self, workers: int | None = None, transport: str = "shm",
                 format: str = "livekit", placement: str = "auto",
                 settings: Settings | None = None, **options: Any) -> None:
        base = settings or load_settings()
        self.settings = base.replace(workers=workers, transport=transport, format=format,
                                     placement=placement, **options)
        s = self.settings
        self.transport = s.pool.transport
        self.format = s.pool.format
        self.placement = s.pool.placement
        self._n = s.pool.resolved_workers()
        self._engine_cfg = EngineConfig(
            format=self.format, iv=s.livekit.iv, ratchet_window=s.livekit.ratchet_window,
            failure_tolerance=s.livekit.failure_tolerance, keyring_size=s.livekit.keyring_size,
            ratchet_salt=s.livekit.ratchet_salt_bytes,
            sif_trailer=s.livekit.sif_trailer_bytes or b"", suite=s.sframe.suite,
        )
        self._local = Engine(self._engine_cfg)
        # auto placement of batches: measured costs of both paths (broker/placement.py)
        self._model = PlacementModel(oversubscribed=self._n + 1 > (os.cpu_count() or 1))
        # Nonces must not repeat across broker restarts either (keys often outlive a
        # process). LiveKit/Jitsi "counter" IVs are ssrc || epoch || counter, with a
        # random 32-bit epoch per pool instead of the RTP timestamp; SFrame counters
        # start at a random 48-bit offset per participant.
        self._epoch = secrets.randbits(32)
        self._iv_epoch = self.format != "sframe" and s.livekit.iv == "counter"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = [_Slot(i) for i in range(self._n)]
        self._slot_names = [sl.name for sl in self._slots]  # members: who may own
        self._slot_by_name = {sl.name: sl for sl in self._slots}
        self._by_identity: dict[bytes, _Slot] = {}
        self._remote_by_identity: dict[bytes, _Slot] = {}
        self._remote_sock: zmq.Socket[bytes] | None = None
        self._remote_fd = -1
        self._auth: Any = None
        self.remote_endpoint = ""
        self._moving: set[int] = set()
        # SFrame replay floors per participant: {pidx: {kid: highest opened counter}}
        self._floors: dict[int, dict[int, int]] | None = {} if self.format == "sframe" else None
        self._pending_runs: dict[int, int] = {}  # pidx -> runs not yet complete
        self._participants: dict[str, int] = {}
        self._names: list[str] = []
        self._owner: dict[int, _Slot] = {}
        self._directory: dict[int, dict[str, Any]] = {}
        self._counters: dict[int, int] = {}  # pidx -> next send counter
        # (pidx, ssrc) -> frames of that stream queued or in flight at a worker
        self._pending: dict[tuple[int, int], int] = {}
        self._controls_pending: dict[int, int] = {}
        self._frames_out = 0
        self._bytes_out = 0
        self._waiters: deque[tuple[int, int, asyncio.Future[None]]] = deque()
        self._flush_scheduled = False
        self._batch_ids = 0
        self._seq = 0
        self._closing = False
        self._closed = False
        self._started = False
        self._sock: zmq.Socket[bytes] | None = None
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._endpoint = ""
        self._tag = ""
        self._registry = hygiene.Registry()
        self._fd = -1
        self._last_tick = 0.0
        self.swept: list[str] = []
        self.metrics_server: Any = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._event_queue: asyncio.Queue[PoolEvent] | None = None
        self._event_callbacks: list[Callable[[PoolEvent], None]] = []
        self._inline_window_start = 0.0
        self._inline_spent = 0.0
        self.counters: dict[str, int] = {
            "frames_submitted": 0, "frames_ok": 0, "frames_failed": 0,
            "frames_inline": 0, "frames_pool": 0, "bytes_in": 0, "bytes_out": 0,
            "batches_sent": 0, "overloaded": 0, "expired": 0, "worker_lost": 0,
            "redispatched": 0, "worker_deaths": 0, "worker_spawns": 0, "participants_moved": 0,
            "protocol_errors": 0, "events_dropped": 0, "control_errors": 0, "ring_full": 0,
            "loop_stalls": 0,
        }
        self._errors_by_reason: dict[str, int] = {}
        self._latency = [0] * (len(LATENCY_BUCKETS_S) + 1)

    def __repr__(self) -> str:
        return (f"Pool(workers={self._n}, transport={self.transport!r}, "
                f"format={self.format!r}, placement={self.placement!r})")

    # --- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Pool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._loop = asyncio.get_running_loop()
        from framecrypt.tuning import tune_allocator

        tune_allocator()
        name = "".join(c for c in self.settings.pool.name if c.isalnum())[:16]
        self._tag = hygiene.pool_tag(os.getpid(), name + secrets.token_hex(4))
        if self.transport != "inline":
            if self.settings.ipc.dir:
                rdir = self.settings.ipc.dir
                os.makedirs(rdir, mode=0o700, exist_ok=True)
            else:
                rdir = hygiene.runtime_dir()
            self.swept = hygiene.sweep_stale(self.settings.shm.dir, rdir)
            sock_path = hygiene.socket_path(rdir, self._tag, "broker")
            self._endpoint = f"ipc://{sock_path}"
            self._ctx = zmq.Context()
            sock = self._ctx.socket(zmq.ROUTER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
            sock.setsockopt(zmq.SNDHWM, 0)
            sock.setsockopt(zmq.RCVHWM, 0)
            old = os.umask(0o177)
            try:
                sock.bind(self._endpoint)
            finally:
                os.umask(old)
            self._registry.add(sock_path)
            self._sock = sock
            self._fd = int(sock.getsockopt(zmq.FD))
            self._loop.add_reader(self._fd, self._on_readable)
        if self.settings.remote.listen:
            self._listen_remote()
        ready = [self._loop.create_future() for _ in self._slots]
        self._ready_waiters = ready
        for sl in self._slots:
            self._spawn(sl)
        try:
            await asyncio.wait_for(asyncio.gather(*ready), timeout=30)
        except BaseException:
            await self._teardown()
            raise
        self._schedule_tick()
        if self.settings.metrics.http_port:
            from framecrypt.broker.metrics import serve

            self.metrics_server = serve(self, self.settings.metrics.http_port,
                                        self.settings.metrics.http_addr)

    def _listen_remote(self) -> None:
        """A CURVE-secured ROUTER for workers on other hosts; only allow-listed worker
        public keys get through (ZAP), and plain tcp is never offered."""
        import zmq.auth
        from zmq.auth.thread import ThreadAuthenticator

        from framecrypt.conf import ConfigError

        rem = self.settings.remote
        assert self._loop is not None
        try:
            public, secret = zmq.auth.load_certificate(rem.secret_key_file)
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read remote.secret_key_file: {e.__class__.__name__}",
                              key="remote.secret_key_file", source="settings") from None
        if not secret:
            raise ConfigError("remote.secret_key_file holds no secret key",
                              key="remote.secret_key_file", source="settings")
        if not os.path.isdir(rem.allowed_keys_dir):
            raise ConfigError("remote.allowed_keys_dir is not a directory",
                              key="remote.allowed_keys_dir", source="settings")
        if self._ctx is None:
            self._ctx = zmq.Context()
        self._auth = ThreadAuthenticator(self._ctx)
        self._auth.start()
        self._auth.configure_curve(domain="*", location=rem.allowed_keys_dir)
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_server = True
        sock.bind(rem.listen)
        self.remote_endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._remote_sock = sock
        self._remote_fd = int(sock.getsockopt(zmq.FD))
        self._loop.add_reader(self._remote_fd, self._on_remote_readable)

    def _spawn(self, sl: _Slot) -> None:
        assert self._loop is not None
        sl.respawn_handle = None
        sl.epoch += 1
        sl.identity = f"{self._tag}-{sl.name}-{sl.epoch}".encode()
        self._by_identity[sl.identity] = sl
        sl.state = STARTING
        sl.last_heard = self._loop.time()
        self.counters["worker_spawns"] += 1
        if self.transport == "shm":
            self._make_rings(sl)
        if self.transport == "inline":
            sl.service = WorkerService(sl.index)
            if sl.executor is None:
                sl.executor = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix=f"framecrypt-{sl.name}")
            self._loop.call_soon(self._on_message, sl.identity,
                                 [wire.pack(wire.READY, os.getpid(), sl.index)])
            return
        sup = self.settings.supervision
        cmd = [sys.executable, "-m", "framecrypt.workers.process", "--connect", self._endpoint,
               "--slot", str(sl.index), "--identity", sl.identity.decode(),
               "--interval", str(sup.heartbeat_interval_s),
               "--liveness", str(sup.heartbeat_liveness), "--parent", str(os.getpid()),
               "--sched", self.settings.pool.worker_sched]
        sl.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, close_fds=True)
        sl.pid = sl.proc.pid
        try:
            sl.pidfd = os.pidfd_open(sl.pid)
            self._loop.add_reader(sl.pidfd, self._on_exit, sl, sl.epoch)
        except (AttributeError, OSError):
            sl.pidfd = None  # heartbeats still detect the death

    def _make_rings(self, sl: _Slot) -> None:
        self._drop_rings(sl)
        size = self.settings.shm.ring_bytes
        d = self.settings.shm.dir
        names = [hygiene.segment_name(self._tag, sl.index * 1000 + sl.epoch % 1000, k)
                 for k in (hygiene.REQUEST, hygiene.REPLY)]
        # reserved in full: a too-small /dev/shm fails here, not with SIGBUS in a worker
        sl.req_seg = Segment.create(names[0], size, dir=d)
        self._registry.add(sl.req_seg.path)
        sl.rep_seg = Segment.create(names[1], size, dir=d)
        self._registry.add(sl.rep_seg.path)
        sl.req_ring = RingAllocator(size)
        sl.rep_ring = RingAllocator(size)

    def _drop_rings(self, sl: _Slot) -> None:
        for seg in (sl.req_seg, sl.rep_seg):
            if seg is not None:
                seg.close()
                seg.unlink()
        sl.req_seg = sl.rep_seg = None
        sl.req_ring = sl.rep_ring = None

    async def close(self, timeout: float | None = None) -> None:
        """Stop accepting frames, let the ones in flight finish (up to ``timeout``,
        default ``supervision.shutdown_timeout_s``), then stop the workers and remove
        every shm segment and ipc endpoint. Frames still pending get PoolClosed."""
        if self._closed:
            return
        self._closing = True
        if not self._started:
            self._closed = True
            return
        deadline = timeout if timeout is not None else self.settings.supervision.shutdown_timeout_s
        self._schedule_flush()
        end = time.monotonic() + deadline
        while self._frames_out > 0 and time.monotonic() < end:
            fut = self._loop.create_future() if self._loop else None
            if fut is None:
                break
            self._drain_waiter = fut
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(fut, timeout=max(0.0, end - time.monotonic()))
        await self._teardown()

    async def _teardown(self) -> None:
        self._closing = True
        loop = self._loop
        for sl in self._slots:
            if sl.respawn_handle is not None:
                sl.respawn_handle.cancel()
            self._fail_slot_items(sl, PoolClosed())
            for w in list(self._waiters):
                if not w[2].done():
                    w[2].set_exception(PoolClosed())
            self._waiters.clear()
            if (sl.proc is not None and sl.proc.poll() is None) or \
                    (sl.remote and sl.state == READY):
                with contextlib.suppress(zmq.ZMQError, OSError):
                    self._send(sl, [wire.pack(wire.STOP)])
        deadline = time.monotonic() + 2.0
        for sl in self._slots:
            if sl.proc is not None:
                while sl.proc.poll() is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                if sl.proc.poll() is None:
                    sl.proc.kill()
                    sl.proc.wait()
            self._close_pidfd(sl)
            if sl.executor is not None:
                sl.executor.shutdown(wait=True)
                sl.executor = None
            if sl.service is not None:
                sl.service.close()
            self._drop_rings(sl)
            sl.state = STOPPED
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        if self._sock is not None:
            if loop is not None:
                with contextlib.suppress(Exception):
                    loop.remove_reader(self._fd)
            self._sock.close(0)
            self._sock = None
        if self._remote_sock is not None:
            if loop is not None:
                with contextlib.suppress(Exception):
                    loop.remove_reader(self._remote_fd)
            self._remote_sock.close(0)
            self._remote_sock = None
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
        self._registry.cleanup()
        if self.metrics_server is not None:
            self.metrics_server.close()
            self.metrics_server = None
        self._closed = True

    def _close_pidfd(self, sl: _Slot) -> None:
        if sl.pidfd is not None:
            if self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(sl.pidfd)
            os.close(sl.pidfd)
            sl.pidfd = None

    # --- participants and keys ------------------------------------------------------------

    def _pidx(self, participant: str) -> int:
        pidx = self._participants.get(participant)
        if pidx is None:
            if not isinstance(participant, str):
                raise TypeError("participant must be a str")
            pidx = len(self._names)
            self._participants[participant] = pidx
            self._names.append(participant)
        return pidx

    def _slot_of(self, pidx: int) -> _Slot:
        sl = self._owner.get(pidx)
        if sl is None:
            sl = self._slot_by_name[owner(self._names[pidx], self._slot_names)]
            self._owner[pidx] = sl
        return sl

    async def set_key(self, participant: str, material: bytes | str, index: int = 0, *,
                      kdf: str | None = None, make_current: bool = True) -> None:
        """Set a participant's key at ``index`` (as livekit-client: ``str`` is a
        passphrase → PBKDF2, ``bytes`` a raw key → HKDF). Frames submitted after this
        returns are sealed with it; frames submitted before, with the previous key.
        The derivation runs in the participant's worker, never on the event loop."""
        self._check_open()
        if not isinstance(material, bytes | str) or not material:
            from framecrypt.errors import InvalidKeyMaterial

            raise InvalidKeyMaterial("key material must be non-empty str or bytes")
        if not 0 <= index < self.settings.livekit.keyring_size and self.format != "sframe":
            raise ValueError("key index out of the key ring")
        pidx = self._pidx(participant)
        await self._control(pidx, "keyset", [pidx, participant, index, material, kdf, 0, None,
                                             make_current])

    async def ratchet_key(self, participant: str, index: int | None = None) -> int:
        """Ratchet a participant's key one step (as livekit's ``ratchetKey``); returns
        the new generation."""
        self._check_open()
        pidx = self._pidx(participant)
        if index is None:
            d = self._directory.get(pidx)
            if d is None:
                raise UnknownKey(0)
            index = int(d["current"])
        result = await self._control(pidx, "ratchet", [pidx, index])
        return int(result[1])

    async def remove_participant(self, participant: str) -> None:
        """Forget a participant's keys (frames already submitted are still processed)."""
        self._check_open()
        pidx = self._pidx(participant)
        await self._control(pidx, "remove", [pidx])

    def _control(self, pidx: int, op: str, args: list[Any]) -> asyncio.Future[list[Any]]:
        assert self._loop is not None
        self._seq += 1
        fut: asyncio.Future[list[Any]] = self._loop.create_future()
        ctl = _Control(self._seq, op, args, fut)
        self._controls_pending[pidx] = self._controls_pending.get(pidx, 0) + 1
        sl = self._slot_of(pidx)
        sl.queue.append(ctl)
        self._schedule_flush()
        return fut

    def _on_ack(self, sl: _Slot, ctl: _Control, ok: bool, result: list[Any]) -> None:
        pidx = int(ctl.args[0])
        if not ok:
            self.counters["control_errors"] += 1
            err: BaseException = FramecryptError(str(result[1]) if len(result) > 1 else "error")
            if result and result[0] == "UnknownKey":
                err = UnknownKey(int(ctl.args[1]) if ctl.op == "ratchet" else 0)
            self._control_done(pidx, ctl, None, err)
            return
        d = self._directory.setdefault(pidx, {"keys": {}, "current": 0})
        local_args: list[Any] | None = None
        if ctl.op == "keyset":
            _, name, index, material, _kdf, generation, _aes, make_current = ctl.args
            aes_key, algorithm = result[0], result[1]
            d["keys"][index] = (material, algorithm, generation, aes_key)
            if make_current:
                d["current"] = index
            d["name"] = name
            local_args = [pidx, name, index, material, algorithm, generation, aes_key,
                          make_current]
        elif ctl.op == "ratchet":
            _, index = ctl.args
            material, generation, aes_key = result
            old = d["keys"].get(index)
            algorithm = old[1] if old else None
            d["keys"][index] = (material, algorithm, generation, aes_key)
            local_args = [pidx, self._names[pidx], index, material, algorithm, generation,
                          aes_key or None, False]
        elif ctl.op == "remove":
            self._directory.pop(pidx, None)
            with contextlib.suppress(FramecryptError):
                self._local.control("remove", [pidx])
        if local_args is not None:
            self._local.control("keyset", local_args)
        self._control_done(pidx, ctl, result, None)

    def _control_done(self, pidx: int, ctl: _Control, result: list[Any] | None,
                      err: BaseException | None) -> None:
        n = self._controls_pending.get(pidx, 1) - 1
        if n:
            self._controls_pending[pidx] = n
        else:
            self._controls_pending.pop(pidx, None)
            if pidx in self._moving and self._loop is not None:
                self._loop.call_soon(self._move_idle)
        fut = ctl.future
        if fut is not None and not fut.done():
            if err is not None:
                fut.set_exception(err)
            else:
                fut.set_result(result or [])

    def _on_worker_event(self, ev: list[Any]) -> None:
        kind = ev[0]
        pidx = int(ev[1])
        if kind == "ratcheted":
            _, _, index, material, generation, aes_key = ev
            d = self._directory.setdefault(pidx, {"keys": {}, "current": 0})
            old = d["keys"].get(index)
            algorithm = old[1] if old else None
            d["keys"][index] = (material, algorithm, generation, aes_key)
            d["current"] = index
            self._local.control("keyset", [pidx, self._names[pidx], index, material, algorithm,
                                           generation, aes_key, True])
            self._emit(PoolEvent(self._names[pidx], "key_ratcheted", index))
            return
        mapping = {"DecryptionFailed": "decryption_failed", "KeyMissing": "missing_key",
                   "KeyMarkedInvalid": "key_invalid", "SifDropped": "sif_dropped"}
        if kind in mapping and pidx < len(self._names):
            self._emit(PoolEvent(self._names[pidx], mapping[kind], int(ev[2])))

    # --- events -----------------------------------------------------------------------

    def on_event(self, callback: Callable[[PoolEvent], None]) -> None:
        """Call ``callback(event)`` on the event loop for every participant event."""
        self._event_callbacks.append(callback)

    async def events(self) -> AsyncIterator[PoolEvent]:
        """Participant events as an async iterator (bounded: the oldest are dropped and
        counted when nobody reads)."""
        if self._event_queue is None:
            self._event_queue = asyncio.Queue(1024)
        q = self._event_queue
        while not self._closed:
            yield await q.get()

    def _emit(self, ev: PoolEvent) -> None:
        for cb in self._event_callbacks:
            try:
                cb(ev)
            except Exception:  # a user callback must not break the pool
                self.counters["events_dropped"] += 1
        q = self._event_queue
        if q is not None:
            if q.full():
                q.get_nowait()
                self.counters["events_dropped"] += 1
            q.put_nowait(ev)

    # --- submitting frames ---------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closing or not self._started:
            raise PoolClosed()

    async def encrypt(self, participant: str, frame: Frame) -> bytes:
        """Seal one frame with the participant's current key."""
        return (await self._submit(participant, [frame], ENCRYPT, wait=True))[0]  # type: ignore[no-any-return]

    async def decrypt(self, participant: str, frame: Frame) -> bytes:
        """Open one frame sealed by ``participant`` (``frame.data`` is the ciphertext)."""
        return (await self._submit(participant, [frame], DECRYPT, wait=True))[0]  # type: ignore[no-any-return]

    async def try_encrypt(self, participant: str, frame: Frame) -> bytes:
        """Like :meth:`encrypt` but raises :class:`Overloaded` at once when full."""
        return (await self._submit(participant, [frame], ENCRYPT, wait=False))[0]  # type: ignore[no-any-return]

    async def try_decrypt(self, participant: str, frame: Frame) -> bytes:
        return (await self._submit(participant, [frame], DECRYPT, wait=False))[0]  # type: ignore[no-any-return]

    async def encrypt_many(self, participant: str, frames: Sequence[Frame], *,
                           return_exceptions: bool = False) -> list[Any]:
        """Seal many frames with one await; results in order. With
        ``return_exceptions`` failed frames give their exception in place, otherwise
        the first error is raised once every frame has its outcome."""
        return await self._submit(participant, frames, ENCRYPT, wait=True,
                                  return_exceptions=return_exceptions)

    async def decrypt_many(self, participant: str, frames: Sequence[Frame], *,
                           return_exceptions: bool = False) -> list[Any]:
        return await self._submit(participant, frames, DECRYPT, wait=True,
                                  return_exceptions=return_exceptions)

    def submit(self, participant: str, frame: Frame, callback: Callable[
            [int, bytes | None, BaseException | None], None], *, decrypt: bool = False
               ) -> None:
        """Fire-and-callback on the loop thread: ``callback(0, result, error)`` later.
        Never waits: raises :class:`Overloaded` when there is no credit."""
        self._check_open()
        if not self._has_credit(1, len(frame.data)):
            self.counters["overloaded"] += 1
            raise Overloaded()
        self._frames_out += 1
        self._bytes_out += len(frame.data)
        group = _Group(1, None, callback)
        self._admit(participant, [frame], DECRYPT if decrypt else ENCRYPT, group)

    def submit_threadsafe(self, participant: str, frame: Frame, *, decrypt: bool = False
                          ) -> concurrent.futures.Future[bytes]:
        """From any thread (e.g. aiortc's encoder thread): a concurrent Future of the
        result. Waits for credit on the loop, not in the calling thread."""
        loop = self._loop
        if loop is None or self._closing:
            raise PoolClosed()
        coro = (self.decrypt if decrypt else self.encrypt)(participant, frame)
        return asyncio.run_coroutine_threadsafe(coro, loop)

    async def _submit(self, participant: str, frames: Sequence[Frame], op: int, *, wait: bool,
                      return_exceptions: bool = False) -> list[Any]:
        self._check_open()
        n = len(frames)
        if n == 0:
            return []
        assert self._loop is not None
        fut: asyncio.Future[Any] = self._loop.create_future()
        group = _Group(n, fut, None)
        chunk = max(1, min(n, self.settings.limits.max_frames_in_flight // 2))
        for start in range(0, n, chunk):
            part = frames[start : start + chunk]
            if not await self._take_credit(len(part), sum(len(f.data) for f in part), wait,
                                           group, start, n):
                break
            self._admit(participant, part, op, group, offset=start)
        results = await fut
        if group.errors and not return_exceptions:
            for r in results:
                if isinstance(r, BaseException):
                    raise r
        return results  # type: ignore[no-any-return]

    async def _take_credit(self, frames: int, nbytes: int, wait: bool, group: _Group,
                           start: int, n: int) -> bool:
        """Credit for the next ``frames`` of a call; False = frames ``start..n-1`` got
        their outcome already (Overloaded, or PoolClosed while waiting)."""
        if self._has_credit(frames, nbytes):
            self._frames_out += frames
            self._bytes_out += nbytes
            return True
        if not wait or self.settings.limits.on_overload == "reject":
            self.counters["overloaded"] += n - start
            err: FramecryptError = Overloaded()
        else:
            await self._acquire(frames, nbytes)  # credit taken when granted
            if not self._closing:
                return True
            self._release(frames, nbytes)
            err = PoolClosed()
        for i in range(start, n):
            self._deliver(group, i, None, err)
        return False

    # --- columnar batches -------------------------------------------------------------

    async def encrypt_batch(self, participant: str, batch: FrameBatch, *,
                            wait: bool = True) -> BatchResult:
        """Seal a :class:`~framecrypt.batch.FrameBatch` with one await and no Python
        object per frame in this process; outcomes in order in the result. Invalid
        batches (bad codec number, a frame over ``max_frame_bytes``) raise before
        anything is admitted; ``wait=False`` fails frames with :class:`Overloaded`
        instead of waiting for credit."""
        return await self._submit_batch(participant, batch, ENCRYPT, wait)

    async def decrypt_batch(self, participant: str, batch: FrameBatch, *,
                            wait: bool = True) -> BatchResult:
        """Open a batch of frames sealed by ``participant``; see :meth:`encrypt_batch`."""
        return await self._submit_batch(participant, batch, DECRYPT, wait)

    async def _submit_batch(self, participant: str, batch: FrameBatch, op: int,
                            wait: bool) -> BatchResult:
        self._check_open()
        batch.check(self.settings.limits.max_frame_bytes)
        n = len(batch)
        if n == 0:
            return BatchResult(0, [], [], 0)
        assert self._loop is not None
        fut: asyncio.Future[Any] = self._loop.create_future()
        group = _Group(n, fut, None)
        offsets = batch.offsets()
        chunk = max(1, min(n, self.settings.limits.max_frames_in_flight // 2))
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            if not await self._take_credit(hi - lo, offsets[hi] - offsets[lo], wait, group,
                                           lo, n):
                break
            self._admit_packed(participant, batch, offsets, lo, hi, op, group)
        await fut
        return BatchResult(n, group.results, group.pieces, group.errors)

    def _next_counters(self, pidx: int, n: int) -> int:
        """Reserve ``n`` send counters of a participant; returns the first. One counter
        sequence per participant (all its streams, all its keys): IV = ssrc ‖ epoch ‖
        counter and SFrame CTRs never repeat under a key, whatever the ssrc or KID."""
        c = self._counters.get(pidx, -1)
        if c < 0:
            c = secrets.randbits(48) if self.format == "sframe" else 0
        self._counters[pidx] = c + n
        return c

    def _admit_packed(self, participant: str, batch: FrameBatch, offsets: array[int],
                      lo: int, hi: int, op: int, group: _Group) -> None:
        assert self._loop is not None
        pidx = self._pidx(participant)
        n = hi - lo
        counter0 = self._next_counters(pidx, n) if op == ENCRYPT else 0
        run = _Run(op, pidx, group, self._loop.time())
        pk = run.packed = _Packed(batch, offsets, lo, hi, counter0)
        run.frames = _LazyFrames(pk)
        run.idx = range(lo, hi)
        run.counters = range(counter0, counter0 + n)
        run.attempts = [0] * n
        run.streams = dict(Counter(batch.ssrcs[lo:hi]))
        run.nbytes = offsets[hi] - offsets[lo]
        run.remaining = n
        codecs = batch.codecs[lo:hi]
        heavy = bool(codecs.count(wire.CODEC_ID["h264"]) or codecs.count(wire.CODEC_ID["h265"])
                     or (self.format == "sframe" and self.settings.sframe.suite in _CTR_SUITES))
        run.kind = PlacementModel.kind(n, run.nbytes, heavy)
        self.counters["frames_submitted"] += n
        self.counters["bytes_in"] += run.nbytes
        if self._packed_inline_ok(run):
            self._run_inline_packed(run)
            return
        self._enqueue_run(run)

    def _enqueue_run(self, run: _Run) -> None:
        pending = self._pending
        pidx = run.pidx
        for ssrc, c in run.streams.items():
            stream = (pidx, ssrc)
            pending[stream] = pending.get(stream, 0) + c
        self._slot_of(pidx).queue.append(_Span(run, 0, len(run.idx)))
        self._pending_runs[pidx] = self._pending_runs.get(pidx, 0) + 1
        self.counters["frames_pool"] += len(run.idx)
        self._schedule_flush()

    def _packed_inline_ok(self, run: _Run) -> bool:
        if self.placement == "pool" or self._controls_pending.get(run.pidx):
            return False
        if run.op == DECRYPT and (self.format == "sframe" or self.settings.livekit.iv != "counter"):
            return False  # opening SFrame moves replay windows: only workers hold those
        pending = self._pending
        if any((run.pidx, ssrc) in pending for ssrc in run.streams):
            return False  # the stream has frames at a worker: keep its order
        if self.placement == "inline":
            return True
        # auto: no fixed size or codec rule (measured on 2 cores, moving a large frame
        # through the rings costs the broker about what sealing it does): the measured
        # costs of both paths decide, and where offloading pays, the loop-time budget
        # shares the work between this process and the workers
        choice = self._model.choose(run.kind)
        if choice == "budget":
            return self._inline_allowed(run.pidx, when_busy=False)
        return choice == "inline"

    def _run_inline_packed(self, run: _Run) -> None:
        """Seal/open a packed run in this process (the worker's loop, state-free for
        opening: frames the fast path cannot open go to the pool as a normal run)."""
        pk = run.packed
        assert pk is not None
        b, lo, hi, offs = pk.batch, pk.lo, pk.hi, pk.offsets
        n = hi - lo
        t0 = time.perf_counter()
        lengths = b.lengths[lo:hi]
        out = bytearray(reply_size(run.op, n, run.nbytes))
        inp = memoryview(b.data)[offs[lo] : offs[hi]]
        res, overflow, _ = self._local.run_packed(
            run.op, run.pidx, pk.counter0, self._epoch if self._iv_epoch else -1, lengths,
            b.codecs[lo:hi], b.flags[lo:hi], b.ssrcs[lo:hi], b.timestamps[lo:hi], inp,
            memoryview(out), stateless=True)
        spent = time.perf_counter() - t0
        self._inline_spent += spent
        self._model.note_inline(run.kind, spent * 1e6 / n)
        self.counters["frames_inline"] += n
        retry = self._take_packed_piece(run, 0, n, res, out, 0, b"".join(overflow))
        self._release(n, run.nbytes)
        if retry:  # what the state-free pass could not open: a normal run to the pool
            again = _Run(run.op, run.pidx, run.group, run.t0)
            again.frames = [run.frames[i] for i in retry]
            again.idx = [lo + i for i in retry]
            again.counters = [0] * len(retry)
            again.attempts = [0] * len(retry)
            again.streams = dict(Counter(f.ssrc for f in again.frames))
            again.nbytes = sum(len(f.data) for f in again.frames)
            again.remaining = len(retry)
            self._frames_out += len(retry)
            self._bytes_out += again.nbytes
            self.counters["frames_inline"] -= len(retry)
            self._enqueue_run(again)

    def _take_packed_piece(self, run: _Run, a: int, b: int, res: bytes | bytearray,
                           buf: bytes | bytearray, base: int, overflow: bytes) -> list[int]:
        """Outcomes of frames ``[a, b)`` of a packed run from one result array: the
        outputs stay in ``buf``/``overflow`` (no per-frame bytes), errors are typed and
        counted. Returns the frames marked for a retry in the pool."""
        g = run.group
        lo = run.idx[0]
        statuses = res[0 :: wire.RES.size]
        count = b - a
        nok = statuses.count(wire.ST_OK) + statuses.count(wire.ST_INLINE)
        retry: list[int] = []
        if nok != count:
            unpack = wire.RES.unpack_from
            for k, st in enumerate(statuses):
                if st == wire.ST_OK or st == wire.ST_INLINE:
                    continue
                if st == wire.ST_RETRY:
                    retry.append(a + k)
                    continue
                err = status_error(st, unpack(res, k * wire.RES.size)[1])
                g.results[lo + a + k] = err
                g.errors += 1
                self._count_error(err)
        g.pieces.append(OutputPiece(lo + a, lo + b, res, buf, base, overflow))
        self.counters["frames_ok"] += nok
        records = array("I")  # (status, offset, length) as little-endian u32s
        records.frombytes(res)
        if not _LITTLE:
            records.byteswap()
        self.counters["bytes_out"] += sum(records[2::3])
        done = count - len(retry)
        g.remaining -= done
        run.remaining -= done
        if g.remaining == 0 and g.future is not None and not g.future.done():
            g.future.set_result(g.results)
        return retry

    def _has_credit(self, frames: int, nbytes: int) -> bool:
        lim = self.settings.limits
        if not self._waiters and self._frames_out + frames <= lim.max_frames_in_flight and (
                self._bytes_out + nbytes <= lim.max_bytes_in_flight or self._frames_out == 0):
            return True
        return False

    async def _acquire(self, frames: int, nbytes: int) -> None:
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append((frames, nbytes, fut))
        await fut

    def _release(self, frames: int, nbytes: int) -> None:
        self._frames_out -= frames
        self._bytes_out -= nbytes
        lim = self.settings.limits
        while self._waiters:
            f, b, fut = self._waiters[0]
            if fut.done():
                self._waiters.popleft()
                continue
            if self._frames_out + f <= lim.max_frames_in_flight and (
                    self._bytes_out + b <= lim.max_bytes_in_flight or self._frames_out == 0):
                self._waiters.popleft()
                self._frames_out += f  # reserved for the waiter
                self._bytes_out += b
                fut.set_result(None)
            else:
                break
        if self._frames_out == 0:
            w = getattr(self, "_drain_waiter", None)
            if w is not None and not w.done():
                w.set_result(None)

    def _admit(self, participant: str, frames: Sequence[Frame], op: int, group: _Group, *,
               offset: int = 0) -> None:
        """Assign counters, place each frame inline or in its worker's queue. The
        caller holds the frames' credit; each frame returns it with its outcome.

        Order is per stream (participant, ssrc): once a frame of a stream is queued for
        a worker, later frames of that stream follow it there until it completes."""
        assert self._loop is not None
        nbytes_total = 0
        pidx = self._pidx(participant)
        codec_ids = wire.CODEC_ID
        max_frame = self.settings.limits.max_frame_bytes
        inline_ok = self._inline_allowed(pidx)
        pending = self._pending
        run = _Run(op, pidx, group, self._loop.time())
        streams = run.streams
        rframes: list[Frame] = []
        ridx: list[int] = []
        rcount: list[int] = []
        run.frames, run.idx, run.counters = rframes, ridx, rcount
        # One counter sequence per participant across its streams and KIDs (see
        # _next_counters): a per-KID counter read from the directory would be wrong
        # while a set_key is in flight (frames queued behind it are sealed under the
        # new KID), and could then repeat a CTR under it.
        t_inline = time.perf_counter() if inline_ok else 0.0
        # the call's counters are reserved at once (a refused frame leaves a gap: harmless)
        counter0 = self._next_counters(pidx, len(frames)) if op == ENCRYPT else 0
        for i, frame in enumerate(frames):
            idx = offset + i
            size = len(frame.data)
            nbytes_total += size
            if frame.codec not in codec_ids:
                self._deliver_now(group, idx, UnsupportedCodec(frame.codec), size)
                continue
            if size > max_frame:
                self._deliver_now(group, idx, MalformedFrame("frame larger than max_frame_bytes"),
                                  size)
                continue
            ssrc = frame.ssrc
            counter = counter0 + i if op == ENCRYPT else 0
            if inline_ok and ssrc not in streams and (pidx, ssrc) not in pending and \
                    self._try_inline(pidx, frame, op, counter, group, idx, size):
                continue
            streams[ssrc] = streams.get(ssrc, 0) + 1
            rframes.append(frame)
            ridx.append(idx)
            rcount.append(counter)
            run.nbytes += size
        if inline_ok:
            self._inline_spent += time.perf_counter() - t_inline
        self.counters["frames_submitted"] += len(frames)
        self.counters["bytes_in"] += nbytes_total
        n = len(rframes)
        if n:
            run.remaining = n
            run.attempts = [0] * n
            self._enqueue_run(run)

    def _inline_allowed(self, pidx: int, *, when_busy: bool = True) -> bool:
        """May this participant's frames be sealed/opened in this process now? In
        ``auto``, inline work keeps to ``placement.inline_budget`` of the loop's time,
        unless ``when_busy`` and the workers are busy anyway (then inline is still the
        cheapest place for a single frame)."""
        if self.placement == "pool" or self._controls_pending.get(pidx):
            return False
        if self.format == "sframe" and self.settings.sframe.suite in _CTR_SUITES:
            return self.placement == "inline"
        if self.placement == "auto":
            # keep inline work within its share of the loop's time, unless the workers
            # are busy anyway (then inline is still the cheapest place)
            assert self._loop is not None
            now = self._loop.time()
            if now - self._inline_window_start > 0.1:
                self._inline_window_start = now
                self._inline_spent = 0.0
            elif self._inline_spent > 0.1 * self.settings.placement.inline_budget:
                if not when_busy:
                    return False
                busy = sum(sl.frames for sl in self._slots)
                return busy >= self.settings.batch.max_frames * len(self._slots)
        return True

    def _try_inline(self, pidx: int, frame: Frame, op: int, counter: int, group: _Group,
                    idx: int, size: int) -> bool:
        """Seal/open in this process when cheap and allowed; False = use the pool."""
        if self.placement == "auto" and (
                size > self.settings.placement.inline_max_bytes or frame.codec in _HEAVY_CODECS):
            return False
        try:
            if op == ENCRYPT:
                result: bytes | None = self._local.seal(
                    pidx, frame.data, frame.codec, frame.keyframe, frame.ssrc,
                    self._epoch if self._iv_epoch else frame.timestamp,
                    counter)
            else:
                result = self._local.try_open(pidx, frame.data, frame.codec, frame.keyframe)
                if result is None:
                    return False
        except FramecryptError as e:
            if op == DECRYPT:
                return False  # let the worker decide (ratchet, failure counts, events)
            self.counters["frames_inline"] += 1
            self._deliver_now(group, idx, e, size)
            return True
        self.counters["frames_inline"] += 1
        self._deliver_now(group, idx, result, size)
        return True

    def _deliver_now(self, group: _Group, idx: int, outcome: bytes | BaseException | None,
                     size: int) -> None:
        """Outcome of a frame that never entered a worker queue; returns its credit."""
        if isinstance(outcome, BaseException):
            self._deliver(group, idx, None, outcome)
        else:
            self._deliver(group, idx, outcome, None)
        self._release(1, size)

    def _deliver(self, group: _Group, idx: int, result: bytes | None,
                 err: BaseException | None) -> None:
        if err is not None:
            group.errors += 1
            self._count_error(err)
            group.results[idx] = err
        else:
            self.counters["frames_ok"] += 1
            self.counters["bytes_out"] += len(result or b"")
            group.results[idx] = result
        if group.callback is not None:
            try:
                group.callback(idx, result, err)
            except Exception:
                self.counters["events_dropped"] += 1
        group.remaining -= 1
        if group.remaining == 0 and group.future is not None and not group.future.done():
            group.future.set_result(group.results)

    # --- dispatch -----------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        for sl in self._slots:
            if sl.queue and sl.state == READY:
                self._dispatch(sl)
        self._on_readable()  # zmq's FD is edge-triggered: sends can swallow the signal

    def _dispatch(self, sl: _Slot) -> None:
        s = self.settings
        max_frames = s.batch.max_frames
        max_bytes = s.batch.max_bytes
        wf, wb = s.limits.worker_frames_in_flight, s.limits.worker_bytes_in_flight
        budget = s.realtime.latency_budget_ms
        if budget:
            self._expire(sl, budget / 1000.0)
        q = sl.queue
        while q and sl.state == READY:
            head = q[0]
            if isinstance(head, _Control):
                q.popleft()
                self._send(sl, [wire.pack(wire.CONTROL, head.seq, head.op, *head.args)])
                sl.inflight.append(head)
                continue
            if sl.frames >= wf or sl.bytes >= wb:
                return
            # take frames from the head spans (up to max_frames / max_bytes) without
            # touching the queue until the batch is sent
            segments: list[tuple[_Run, int, int]] = []
            count = total = consumed = 0
            partial = -1
            # with shm only descriptors travel over ZeroMQ: a batch may carry up to a
            # quarter of the ring (batch.max_bytes bounds message size for ipc/tcp)
            limit_b = min(sl.req_ring.capacity // 4 if sl.req_ring is not None else max_bytes,
                          wb - sl.bytes)
            packed = False
            for e in q:
                if isinstance(e, _Control):
                    break
                pk = e.run.packed
                if pk is not None:
                    # packed spans travel together (one message of columns), up to
                    # 8 × batch.max_frames frames (much bigger messages leave broker and
                    # workers taking turns instead of overlapping; conference mix, 2
                    # workers: ~220k frames/s unbounded, ~340k at 512), the worker's
                    # credit and a quarter of the ring
                    if count and not packed:
                        break
                    packed = True
                    room = min(max(1, wf - sl.frames), 8 * max_frames) - count
                    if room <= 0:
                        break
                    offs, a, base = pk.offsets, e.pos, pk.lo
                    first = offs[base + a]
                    stop = base + min(e.end, a + room)
                    i = min(stop, bisect_right(offs, first + limit_b - total, base + a,
                                               stop + 1) - 1)
                    if i <= base + a:
                        if count:
                            break
                        i = base + a + 1  # a frame bigger than the limit goes alone
                    segments.append((e.run, a, i - base))
                    count += i - base - a
                    total += offs[i] - first
                    if i - base < e.end:
                        partial = i - base
                        break
                    consumed += 1
                    continue
                if packed or count >= max_frames:
                    break
                frames = e.run.frames
                a = i = e.pos
                end = min(e.end, a + max_frames - count)
                while i < end:
                    size = len(frames[i].data)
                    if count and total + size > limit_b:
                        break
                    total += size
                    count += 1
                    i += 1
                if i > a:
                    segments.append((e.run, a, i))
                if i < e.end:
                    partial = i
                    break
                consumed += 1
            if not count:
                return
            if packed:
                if not self._send_packed(sl, segments, count, total):
                    return
            elif not self._send_batch(sl, segments, count, total):
                return
            for _ in range(consumed):
                q.popleft()
            if partial >= 0:
                head2 = q[0]
                assert isinstance(head2, _Span)
                head2.pos = partial

    def _send_batch(self, sl: _Slot, segments: list[tuple[_Run, int, int]], count: int,
                    total: int) -> bool:
        req_span = rep_span = None
        out_total = 0
        for run, a, b in segments:
            if run.op == ENCRYPT:
                for f in run.frames[a:b]:
                    size = len(f.data)
                    out_total += reply_capacity(size)
            else:
                out_total += sum(len(f.data) for f in run.frames[a:b])
        got = self._reserve(sl, total, out_total)
        if got is None:
            return False
        req_span, rep_span, view = got
        roff, ooff = (req_span[0], rep_span[0]) if req_span and rep_span else (0, 0)
        blob: bytes | None = None
        if view is None:
            blob = b"".join([f.data for run, a, b in segments for f in run.frames[a:b]])
        desc = bytearray(40 * count)
        pack = wire.REQ.pack_into
        codec_ids = wire.CODEC_ID
        pos, opos, k = roff, ooff, 0
        epoch = self._epoch if self._iv_epoch else -1
        for run, a, b in segments:
            op, pidx, frames, counters, attempts = (run.op, run.pidx, run.frames,
                                                     run.counters, run.attempts)
            enc = op == ENCRYPT
            for i in range(a, b):
                f = frames[i]
                data = f.data
                size = len(data)
                cap = reply_capacity(size) if enc else size
                if view is not None:
                    view[pos : pos + size] = data
                pack(desc, k, op, codec_ids[f.codec], 1 if f.keyframe else 0, pidx,
                     f.ssrc & 0xFFFFFFFF, epoch if epoch >= 0 else f.timestamp & 0xFFFFFFFF,
                     counters[i], pos, size,
                     opos, cap)
                attempts[i] += 1
                pos += size
                opos += cap
                k += 40
        self._batch_ids += 1
        batch = _Batch(self._batch_ids, segments, count, total, req_span, rep_span)
        parts = [wire.pack(wire.BATCH, batch.batch_id, count), bytes(desc)]
        if blob is not None:
            parts.append(blob)
        self._send_batch_parts(sl, batch, parts)
        return True

    def _reserve(self, sl: _Slot, total: int, out_total: int) -> tuple[
            tuple[int, int] | None, tuple[int, int] | None, memoryview | None] | None:
        """Request and reply ring regions for a batch and the request ring's view;
        ``(None, None, None)`` without rings (payloads travel in the message); None
        (counted) when a ring is full."""
        if sl.req_ring is None or sl.rep_ring is None or sl.req_seg is None:
            return None, None, None
        roff = sl.req_ring.alloc(max(total, 1))
        if roff is None:
            self.counters["ring_full"] += 1
            return None
        ooff = sl.rep_ring.alloc(max(out_total, 1))
        if ooff is None:
            sl.req_ring.cancel(roff, max(total, 1))
            self.counters["ring_full"] += 1
            return None
        return (roff, max(total, 1)), (ooff, max(out_total, 1)), sl.req_seg.view

    def _send_batch_parts(self, sl: _Slot, batch: _Batch, parts: list[bytes]) -> None:
        sl.inflight.append(batch)
        sl.frames += batch.count
        sl.bytes += batch.nbytes
        self.counters["batches_sent"] += 1
        self._send(sl, parts)

    def _send_packed(self, sl: _Slot, segments: list[tuple[_Run, int, int]], count: int,
                     total: int) -> bool:
        """Spans of packed runs as one PACKED message: one copy of each span's payloads
        into the request ring (back to back), the columns as they are."""
        out_total = 0
        for run, a, b in segments:
            pk = run.packed
            assert pk is not None
            out_total += reply_size(run.op, b - a,
                                    pk.offsets[pk.lo + b] - pk.offsets[pk.lo + a])
        blobs: list[memoryview] = []
        t0 = time.perf_counter()
        got = self._reserve(sl, total, out_total)
        if got is None:
            return False
        req_span, rep_span, view = got
        roff, ooff = (req_span[0], rep_span[0]) if req_span and rep_span else (0, 0)
        heads: list[list[int]] = []
        out_starts: list[int] = []
        cols: list[list[bytes | bytearray]] = [[], [], [], [], []]
        pos, opos = roff, ooff
        for run, a, b in segments:
            pk = run.packed
            assert pk is not None
            bat = pk.batch
            lo, hi = pk.lo + a, pk.lo + b
            d0, d1 = pk.offsets[lo], pk.offsets[hi]
            data = memoryview(bat.data)[d0:d1]
            if view is not None:
                view[pos : pos + d1 - d0] = data
            else:
                blobs.append(data)
            heads.append([run.op, run.pidx, pk.counter0 + a if run.op == ENCRYPT else 0,
                          b - a, pos, opos])
            out_starts.append(opos - ooff)
            pos += d1 - d0
            opos += reply_size(run.op, b - a, d1 - d0)
            cols[0].append(_le(bat.lengths[lo:hi]))
            cols[1].append(_le(bat.ssrcs[lo:hi]))
            cols[2].append(_le(bat.timestamps[lo:hi]))
            cols[3].append(bat.codecs[lo:hi])
            cols[4].append(bat.flags[lo:hi])
            attempts = run.attempts
            for i in range(a, b):
                attempts[i] += 1
        self._batch_ids += 1
        batch = _Batch(self._batch_ids, segments, count, total, req_span, rep_span)
        batch.out_starts = out_starts
        parts = [wire.pack(wire.PACKED, batch.batch_id, count,
                           self._epoch if self._iv_epoch else -1, heads),
                 b"".join([c for col in cols for c in col])]
        if view is None:
            parts.append(b"".join(blobs))
        self._send_batch_parts(sl, batch, parts)
        batch.spent = time.perf_counter() - t0
        return True

    def _send(self, sl: _Slot, parts: list[bytes]) -> None:
        assert self._loop is not None
        sl.last_sent = self._loop.time()
        if self.transport == "inline":
            svc, ex = sl.service, sl.executor
            if svc is None or ex is None:
                return
            identity, loop = sl.identity, self._loop

            def work() -> None:
                replies = svc.handle(parts)
                for r in replies:
                    loop.call_soon_threadsafe(self._on_message, identity, r)

            ex.submit(work)
            return
        sock = self._remote_sock if sl.remote else self._sock
        if sock is None:
            return
        try:
            sock.send_multipart([sl.identity, *parts], copy=len(parts[-1]) < 65536)
        except zmq.ZMQError:
            # unroutable (worker gone): its death handling re-dispatches what it held
            pass

    def _expire(self, sl: _Slot, budget: float) -> None:
        """Real-time policy: queued delta frames older than ``budget`` fail with
        FrameExpired (oldest first, since a run's frames share their submission time);
        key frames always go on."""
        assert self._loop is not None
        now = self._loop.time()
        q = sl.queue
        # spans queue in submission order (re-queued ones, older, go to the front), so
        # the expired ones are a prefix: look no further than the first fresh span
        # (a scan of the whole queue on every flush cost ms with long queues)
        cut = 0
        for e in q:
            if isinstance(e, _Span):
                if now - e.run.t0 <= budget:
                    break
            cut += 1
        if not any(isinstance(q[i], _Span) for i in range(cut)):
            return
        keep: deque[_Span | _Control] = deque()
        for _ in range(cut):
            e = q.popleft()
            if isinstance(e, _Control):
                keep.append(e)
                continue
            run = e.run
            err = FrameExpired((now - run.t0) * 1000)
            for i in range(e.pos, e.end):
                if run.frames[i].keyframe:
                    keep.append(_Span(run, i, i + 1))
                else:
                    self.counters["expired"] += 1
                    self._finish_frame(run, i, None, err)
        keep.extend(q)
        sl.queue = keep

    # --- receiving ----------------------------------------------------------------------

    def _drain(self, sock: zmq.Socket[bytes] | None,
               handle: Callable[[bytes, list[memoryview]], None]) -> None:
        """Read everything a socket has, without blocking (its FD is edge-triggered)."""
        if sock is None:
            return
        while int(sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            try:
                msg = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            if len(msg) < 2:
                self.counters["protocol_errors"] += 1
                continue
            handle(msg[0].bytes, [m.buffer for m in msg[1:]])

    def _on_readable(self) -> None:
        self._drain(self._sock, self._on_message)

    def _on_remote_readable(self) -> None:
        self._drain(self._remote_sock, self._on_remote_message)

    def _on_remote_message(self, identity: bytes, parts: list[memoryview]) -> None:
        sl = self._remote_by_identity.get(identity)
        if sl is None:
            self._remote_join(identity, parts)
        else:
            self._handle(sl, parts)

    def _remote_join(self, identity: bytes, parts: Sequence[bytes | memoryview]) -> None:
        """A new remote worker (first message must be READY): a new slot, a member of
        the rendezvous set from now on."""
        assert self._loop is not None
        try:
            msg = wire.unpack(parts[0])
            if msg[0] != wire.READY or self._closing:
                raise ProtocolError("a new remote worker must start with READY")
        except (ProtocolError, ValueError, TypeError, IndexError):
            self.counters["protocol_errors"] += 1
            return
        sl = _Slot(len(self._slots))
        safe = "".join(c for c in identity.decode("utf-8", "replace") if c.isalnum() or c in "-_.")
        sl.name = f"r{sl.index}-{safe[:48]}"
        sl.identity = identity
        sl.remote = True
        sl.state = STARTING
        sl.last_heard = self._loop.time()
        sl.pid = int(msg[1]) if isinstance(msg[1], int) else 0
        self._slots.append(sl)
        self._remote_by_identity[identity] = sl
        self._slot_by_name[sl.name] = sl
        self.counters["worker_spawns"] += 1
        self._handle(sl, parts)
        self._slot_names.append(sl.name)
        self._membership_changed()

    def _on_message(self, identity: bytes, parts: Sequence[bytes | memoryview]) -> None:
        sl = self._by_identity.get(identity)
        if sl is None:
            self.counters["protocol_errors"] += 1
            return
        self._handle(sl, parts)

    def _handle(self, sl: _Slot, parts: Sequence[bytes | memoryview]) -> None:
        if sl.state in (DEAD, STOPPED):
            self.counters["protocol_errors"] += 1
            return
        assert self._loop is not None
        sl.last_heard = self._loop.time()
        try:
            msg = wire.unpack(parts[0])
            kind = msg[0]
            if kind == wire.RESULT:
                self._on_result(sl, msg, parts)
            elif kind == wire.ACK:
                self._on_ack_msg(sl, msg)
            elif kind == wire.EVENT:
                self._on_worker_event(msg[1])
            elif kind == wire.PONG:
                pass
            elif kind == wire.READY:
                self._on_ready(sl, msg)
            else:
                raise ProtocolError("unexpected kind from a worker")
        except (ProtocolError, ValueError, TypeError, IndexError, KeyError):
            self.counters["protocol_errors"] += 1

    def _on_ready(self, sl: _Slot, msg: list[Any]) -> None:
        if sl.state != STARTING:
            raise ProtocolError("READY twice")
        shm = None
        if sl.req_seg is not None and sl.rep_seg is not None:
            shm = [sl.req_seg.name, sl.rep_seg.name, sl.req_seg.size, self.settings.shm.dir]
        self._send(sl, [wire.pack(wire.CONFIG, self._engine_cfg.as_wire(), shm)])
        sl.state = READY
        # replay the key directory of this slot's participants, then what it held
        for pidx in [p for p, o in self._owner.items() if o is sl]:
            for ctl in self._snapshot_controls(pidx):
                self._send(sl, [wire.pack(wire.CONTROL, ctl.seq, ctl.op, *ctl.args)])
                sl.inflight.append(ctl)
        waiters = getattr(self, "_ready_waiters", None)
        if waiters is not None and sl.index < len(waiters) and not waiters[sl.index].done():
            waiters[sl.index].set_result(None)
        self._schedule_flush()

    def _skip_to(self, sl: _Slot, match: Callable[[_Batch | _Control], bool]) -> None:
        """Replies come in order; entries before the one a reply answers were dropped
        by the worker (it could not parse them): they fail now, so nothing waits
        forever and every frame still gets exactly one outcome."""
        if not any(match(e) for e in sl.inflight):
            raise ProtocolError("reply matches nothing in flight")
        while not match(sl.inflight[0]):
            e = sl.inflight.popleft()
            self.counters["protocol_errors"] += 1
            err = ProtocolError("the worker dropped this message")
            if isinstance(e, _Control):
                pidx = int(e.args[0])
                if e.future is not None:
                    self._control_done(pidx, e, None, err)
            else:
                sl.frames -= e.count
                sl.bytes -= e.nbytes
                for run, a, b in e.segments:
                    for i in range(a, b):
                        self._finish_frame(run, i, None, err)
                if e.req_span is not None and sl.req_ring is not None and \
                        sl.rep_ring is not None and e.rep_span is not None:
                    sl.req_ring.release(*e.req_span)
                    sl.rep_ring.release(*e.rep_span)

    def _on_ack_msg(self, sl: _Slot, msg: list[Any]) -> None:
        _, seq, ok, *result = msg
        self._skip_to(sl, lambda e: isinstance(e, _Control) and e.seq == seq)
        ctl = sl.inflight.popleft()
        assert isinstance(ctl, _Control)
        if ctl.future is None:  # directory replay: nothing waits
            return
        self._on_ack(sl, ctl, bool(ok), result)

    def _on_result(self, sl: _Slot, msg: list[Any], parts: Sequence[bytes | memoryview]) -> None:
        _, batch_id, count, *used = msg
        self._skip_to(sl, lambda e: isinstance(e, _Batch) and e.batch_id == batch_id)
        batch = sl.inflight[0]
        assert isinstance(batch, _Batch)
        if count != batch.count or len(parts) < 2:
            raise ProtocolError("RESULT count mismatch")
        res = parts[1]
        wire.check_blob(res, wire.RES, count)
        sl.inflight.popleft()
        overflow = parts[2] if len(parts) > 2 else b""
        rep = sl.rep_seg.view if sl.rep_seg is not None and batch.rep_span else None
        if batch.segments[0][0].packed is not None:
            if len(used) != 3 or not isinstance(used[0], list) or \
                    len(used[0]) != len(batch.segments) or \
                    not all(isinstance(u, int) and u >= 0 for u in used[0]) or \
                    not isinstance(used[2], int | float):
                raise ProtocolError("RESULT of a packed batch without its sizes")
            t0 = time.perf_counter()
            self._on_packed_result(batch, res, rep, parts, used[0], used[1])
            self._batch_done(sl, batch)
            broker_us = (batch.spent + time.perf_counter() - t0) * 1e6 / count
            worker_us = max(0.0, float(used[2])) / count
            for run, _, _ in batch.segments:
                self._model.note_offload(run.kind, broker_us, worker_us)
            return
        src = rep if rep is not None else overflow
        unpack = wire.RES.unpack_from
        ok = nbytes_out = 0
        k = 0
        for run, a, b in batch.segments:
            g = run.group
            results, idx = g.results, run.idx
            if g.callback is None:
                for i in range(a, b):
                    status, off, n = unpack(res, k)
                    k += 12
                    if status == wire.ST_OK:
                        results[idx[i]] = bytes(src[off : off + n])
                    elif status == wire.ST_INLINE:
                        results[idx[i]] = bytes(overflow[off : off + n])
                    else:
                        err = status_error(status, off)
                        results[idx[i]] = err
                        g.errors += 1
                        self._count_error(err)
                        continue
                    ok += 1
                    nbytes_out += n
                done = b - a
                g.remaining -= done
                run.remaining -= done
                if g.remaining == 0 and g.future is not None and not g.future.done():
                    g.future.set_result(results)
            else:
                for i in range(a, b):
                    status, off, n = unpack(res, k)
                    k += 12
                    if status == wire.ST_OK:
                        self._deliver(g, idx[i], bytes(src[off : off + n]), None)
                    elif status == wire.ST_INLINE:
                        self._deliver(g, idx[i], bytes(overflow[off : off + n]), None)
                    else:
                        self._deliver(g, idx[i], None, status_error(status, off))
                    run.remaining -= 1
            if self._floors is not None and run.op == DECRYPT:
                self._note_floors(run, a, b, res, k - 12 * (b - a))
            if run.remaining == 0:
                self._run_done(run)
        self.counters["frames_ok"] += ok
        self.counters["bytes_out"] += nbytes_out
        self._batch_done(sl, batch)

    def _on_packed_result(self, batch: _Batch, res: bytes | memoryview, rep: memoryview | None,
                          parts: Sequence[bytes | memoryview], used: list[int],
                          floors: Any) -> None:
        # where each segment's outputs start: its reply region (shm) or right after the
        # previous segment's outputs (the outputs blob without shm)
        if rep is not None and batch.rep_span is not None:
            starts = batch.out_starts
            base, size = batch.rep_span
            end = min(size, starts[-1] + used[-1])
            buf = bytes(rep[base : base + end])  # one copy out of the ring
        else:
            starts = [0, *accumulate(used[:-1])]
            buf = bytes(parts[3]) if len(parts) > 3 else b""
        spill = bytes(parts[2]) if len(parts) > 2 else b""
        res_b = bytes(res)
        k = 0
        for s, (run, a, b) in enumerate(batch.segments):
            k1 = k + (b - a) * wire.RES.size
            retry = self._take_packed_piece(run, a, b, res_b[k:k1], buf, -starts[s], spill)
            k = k1
            if retry:  # workers answer every frame; a retry mark is a protocol error
                for i in retry:
                    self.counters["protocol_errors"] += 1
                    self._deliver(run.group, run.idx[i], None, ProtocolError("unexpected retry"))
                    run.remaining -= 1
            if self._floors is not None and isinstance(floors, list) and s < len(floors) and \
                    floors[s]:
                self._raise_floors(run.pidx, floors[s])
            if run.remaining == 0:
                self._run_done(run)

    def _batch_done(self, sl: _Slot, batch: _Batch) -> None:
        """Bookkeeping once a batch's frames have their outcomes: latency, the slot's
        load, ring regions, credit."""
        count = batch.count
        assert self._loop is not None
        # latency per batch: its oldest frame (submission -> result)
        first = batch.segments[0][0]
        self._latency[bisect_left(LATENCY_BUCKETS_S, self._loop.time() - first.t0)] += count
        sl.frames -= count
        sl.frames_done += count
        sl.bytes -= batch.nbytes
        if batch.req_span is not None and sl.req_ring is not None and sl.rep_ring is not None:
            sl.req_ring.release(*batch.req_span)
            assert batch.rep_span is not None
            sl.rep_ring.release(*batch.rep_span)
        self._release(count, batch.nbytes)
        if sl.queue:
            self._schedule_flush()

    def _raise_floors(self, pidx: int, reported: Any) -> None:
        """A worker's highest opened counters per KID (packed SFrame batches)."""
        assert self._floors is not None
        floors = self._floors.setdefault(pidx, {})
        for kid, ctr in reported:
            if isinstance(kid, int) and isinstance(ctr, int) and ctr > floors.get(kid, -1):
                floors[kid] = ctr

    def _note_floors(self, run: _Run, a: int, b: int, res: bytes | memoryview, k: int) -> None:
        """SFrame: remember the highest counter each participant's KID opened with, so
        a participant that moves to another worker keeps refusing replays."""
        from framecrypt.workers.sframe.header import decode_header

        assert self._floors is not None
        floors = self._floors.setdefault(run.pidx, {})
        for i in range(a, b):
            if wire.RES.unpack_from(res, k)[0] == wire.ST_OK:
                kid, ctr, _ = decode_header(run.frames[i].data)
                if ctr > floors.get(kid, -1):
                    floors[kid] = ctr
            k += 12

    def _run_done(self, run: _Run) -> None:
        left = self._pending_runs.get(run.pidx, 1) - 1
        if left > 0:
            self._pending_runs[run.pidx] = left
        else:
            self._pending_runs.pop(run.pidx, None)
            if run.pidx in self._moving and self._loop is not None:
                self._loop.call_soon(self._move_idle)
        pending = self._pending
        for ssrc, c in run.streams.items():
            stream = (run.pidx, ssrc)
            left = pending.get(stream, c) - c
            if left > 0:
                pending[stream] = left
            else:
                pending.pop(stream, None)

    def _count_error(self, err: BaseException) -> None:
        self.counters["frames_failed"] += 1
        name = type(err).__name__
        self._errors_by_reason[name] = self._errors_by_reason.get(name, 0) + 1

    def _finish_frame(self, run: _Run, i: int, result: bytes | None,
                      err: BaseException | None) -> None:
        """The outcome of one frame off the normal result path (expired, lost, closed):
        delivery, stream bookkeeping, credit."""
        assert self._loop is not None
        self._latency[bisect_left(LATENCY_BUCKETS_S, self._loop.time() - run.t0)] += 1
        self._deliver(run.group, run.idx[i], result, err)
        run.remaining -= 1
        if run.remaining == 0:
            self._run_done(run)
        self._release(1, len(run.frames[i].data))

    # --- membership (remote workers join and leave) ---------------------------------------

    def _membership_changed(self) -> None:
        """Rendezvous over the current members: participants whose owner changes move
        once they are idle (nothing queued or in flight for them), so their frames stay
        in order and their keys reach the new owner before their next frame."""
        for pidx, cur in list(self._owner.items()):
            if self._slot_by_name[owner(self._names[pidx], self._slot_names)] is not cur:
                self._moving.add(pidx)
        self._move_idle()

    def _move_idle(self) -> None:
        for pidx in list(self._moving):
            if self._pending_runs.get(pidx) or self._controls_pending.get(pidx):
                continue
            self._moving.discard(pidx)
            new = self._slot_by_name[owner(self._names[pidx], self._slot_names)]
            old = self._owner.get(pidx)
            if new is old:
                continue
            self._owner[pidx] = new
            self._enqueue_snapshot(new, pidx)
            if old is not None and old.state == READY:
                self._seq += 1
                old.queue.append(_Control(self._seq, "remove", [pidx], None))
            self.counters["participants_moved"] += 1
        self._schedule_flush()

    def _enqueue_snapshot(self, sl: _Slot, pidx: int) -> None:
        sl.queue.extend(self._snapshot_controls(pidx))

    def _snapshot_controls(self, pidx: int) -> list[_Control]:
        """The broker's state of ``pidx`` as key operations for a worker that does not
        know it: every key (the current index last, so it ends up current) and, for
        SFrame, the replay floor of each KID."""
        d = self._directory.get(pidx)
        if d is None:
            return []
        out = []
        current = int(d["current"])
        for index in sorted(d["keys"], key=lambda k: k == current):
            material, algorithm, generation, aes_key = d["keys"][index]
            self._seq += 1
            out.append(_Control(self._seq, "keyset", [
                pidx, d.get("name", self._names[pidx]), index, material, algorithm,
                generation, aes_key or None, index == current], None))
        floors = self._floors.get(pidx) if self._floors is not None else None
        if floors:
            self._seq += 1
            out.append(_Control(self._seq, "replay_floor",
                                [pidx, [[k, c] for k, c in floors.items()]], None))
        return out

    def _remote_lost(self, sl: _Slot, entries: list[_Span | _Control]) -> None:
        """A remote worker is gone for good: its participants move to their new owners
        now (snapshot first), followed by what it held, in order."""
        if sl.name in self._slot_names:
            self._slot_names.remove(sl.name)
        self._remote_by_identity.pop(sl.identity, None)
        for pidx in [p for p, o in self._owner.items() if o is sl]:
            new = self._slot_by_name[owner(self._names[pidx], self._slot_names)]
            self._owner[pidx] = new
            self._moving.discard(pidx)
            self._enqueue_snapshot(new, pidx)
            self.counters["participants_moved"] += 1
        for e in entries:
            pidx = e.run.pidx if isinstance(e, _Span) else int(e.args[0])
            self._slot_of(pidx).queue.append(e)
        self._schedule_flush()

    # --- supervision ----------------------------------------------------------------------

    def _schedule_tick(self) -> None:
        assert self._loop is not None
        self._last_tick = self._loop.time()
        self._tick_handle = self._loop.call_later(
            self.settings.supervision.heartbeat_interval_s, self._tick)

    def _tick(self) -> None:
        if self._closing:
            return
        assert self._loop is not None
        sup = self.settings.supervision
        # read what has arrived before judging silence (the loop may have been busy)
        self._on_readable()
        self._on_remote_readable()
        now = self._loop.time()
        stalled = now - self._last_tick > 2 * sup.heartbeat_interval_s
        self._last_tick = now
        if stalled:
            # this process was late (a stalled loop, a frozen VM), not the workers: give
            # every worker a fresh interval rather than declaring them all dead
            self.counters["loop_stalls"] += 1
            for sl in self._slots:
                sl.last_heard = max(sl.last_heard, now - sup.heartbeat_interval_s)
        for sl in list(self._slots):
            if sl.state not in (READY, STARTING):
                continue
            if self.transport != "inline" or sl.remote:
                silent = now - sl.last_heard
                limit = sup.heartbeat_interval_s * sup.heartbeat_liveness
                if sl.state == STARTING:
                    limit = max(limit, 20.0)  # interpreter start-up
                if silent > limit:
                    self._worker_died(sl, "heartbeat")
                    continue
            if sl.state == READY and now - sl.last_sent >= sup.heartbeat_interval_s:
                self._send(sl, [wire.pack(wire.PING, 0)])
            if sl.queue and self.settings.realtime.latency_budget_ms:
                self._expire(sl, self.settings.realtime.latency_budget_ms / 1000.0)
        self._schedule_tick()

    def _on_exit(self, sl: _Slot, epoch: int) -> None:
        if epoch == sl.epoch and sl.state in (READY, STARTING):
            self._worker_died(sl, "exit")
        else:
            self._close_pidfd(sl)

    def _worker_died(self, sl: _Slot, why: str) -> None:
        """Kill what is left of the worker, requeue what it held (same counters), respawn."""
        assert self._loop is not None
        self.counters["worker_deaths"] += 1
        sl.state = DEAD
        self._by_identity.pop(sl.identity, None)
        if sl.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                sl.proc.send_signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                sl.proc.wait(timeout=5)
        self._close_pidfd(sl)
        attempts = self.settings.supervision.dispatch_attempts
        requeue: list[_Span | _Control] = []
        for entry in sl.inflight:
            if isinstance(entry, _Control):
                if entry.future is not None:
                    requeue.append(entry)
                continue
            for run, a, b in entry.segments:
                start = a
                for i in range(a, b):
                    if run.attempts[i] >= attempts:
                        if i > start:
                            requeue.append(_Span(run, start, i))
                        start = i + 1
                        self.counters["worker_lost"] += 1
                        self._finish_frame(run, i, None, WorkerLost(run.attempts[i]))
                if b > start:
                    requeue.append(_Span(run, start, b))
                    self.counters["redispatched"] += b - start
            # re-queued frames keep their credit (and their counters)
        sl.inflight.clear()
        sl.frames = sl.bytes = 0
        if sl.remote:
            entries = requeue + list(sl.queue)
            sl.queue.clear()
            self._remote_lost(sl, entries)
            return
        sl.queue.extendleft(reversed(requeue))
        if self.transport == "shm":
            self._drop_rings(sl)
        sl.deaths_in_row += 1
        sup = self.settings.supervision
        delay = min(sup.respawn_backoff_max_s,
                    sup.respawn_backoff_s * (2 ** (sl.deaths_in_row - 1)))
        if sl.deaths_in_row == 1:
            delay = 0.0
        sl.restarts += 1
        sl.respawn_handle = self._loop.call_later(delay, self._respawn, sl)

    def _respawn(self, sl: _Slot) -> None:
        if self._closing:
            return
        self._spawn(sl)

    def _fail_slot_items(self, sl: _Slot, err: BaseException) -> None:
        for entry in list(sl.inflight) + list(sl.queue):
            if isinstance(entry, _Batch):
                for run, a, b in entry.segments:
                    for i in range(a, b):
                        self._finish_frame(run, i, None, err)
            elif isinstance(entry, _Span):
                for i in range(entry.pos, entry.end):
                    self._finish_frame(entry.run, i, None, err)
            elif entry.future is not None and not entry.future.done():
                entry.future.set_exception(err)
        sl.inflight.clear()
        sl.queue.clear()

    # --- introspection --------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the pool runs on (None before :meth:`start`)."""
        return self._loop

    def worker_pids(self) -> list[int]:
        """PIDs of the live worker processes (empty for the inline transport)."""
        return [sl.pid for sl in self._slots if sl.state == READY and sl.proc is not None]

    def stats(self) -> dict[str, Any]:
        """Counters and gauges (no key material)."""
        return {
            **self.counters,
            "errors_by_reason": dict(self._errors_by_reason),
            "placement_costs": self._model.snapshot(),
            "frames_in_flight": self._frames_out,
            "bytes_in_flight": self._bytes_out,
            "waiters": len(self._waiters),
            "participants": len(self._names),
            "workers": [
                {"slot": sl.index, "name": sl.name, "remote": sl.remote, "state": sl.state,
                 "pid": sl.pid, "queued": len(sl.queue), "frames_done": sl.frames_done,
                 "frames_in_flight": sl.frames, "bytes_in_flight": sl.bytes,
                 "restarts": sl.restarts}
                for sl in self._slots
            ],
            "transport": self.transport, "format": self.format, "placement": self.placement,
            # pool-path latency (submit -> outcome), counts per upper bound in seconds
            "latency_buckets_s": list(LATENCY_BUCKETS_S),
            "latency_counts": list(self._latency),
        }

