"""Supervision of local workers: spawn, watch (pidfd), reap, respawn with back-off.

One :class:`Worker` per local slot holds what the ledger does not: the process (or,
for the ``inline`` transport, the thread and its :class:`WorkerService`), its pidfd,
its rings' shared memory, and its respawn history. Nothing here blocks the event
loop: a dead worker is SIGKILLed and reaped when its pidfd says it has exited
(``waitpid(WNOHANG)``), never with a blocking ``wait``.

Back-off: the first death in a row respawns at once, the next ones after
``respawn_backoff_s`` doubled per death up to ``respawn_backoff_max_s``; a worker that
stayed up for ``respawn_reset_s`` (the maximum back-off, at least 1 s) before dying
starts the count afresh, so a long-running pool is not punished for old deaths.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable

from framecrypt.conf import Settings
from framecrypt.transports import hygiene
from framecrypt.transports.memfd import RingPair
from framecrypt.transports.ring import RingAllocator
from framecrypt.transports.shm import Segment, memfd_supported
from framecrypt.transports.to_worker import InheritedRings, Rings
from framecrypt.workers.service import WorkerService

__all__ = ["Supervisor", "Worker", "backoff"]


def backoff(deaths_in_row: int, base: float, cap: float) -> float:
    """Seconds before respawning after the ``deaths_in_row``-th death in a row."""
    if deaths_in_row <= 1:
        return 0.0
    return float(min(cap, base * (2 ** (deaths_in_row - 2))))


class Worker:
    """The process side of one local slot."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.name = f"w{index}"
        self.epoch = 0
        self.identity = b""
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0
        self.pidfd: int | None = None
        self.req_seg: Segment | None = None
        self.rep_seg: Segment | None = None
        self.service: WorkerService | None = None  # inline transport
        self.executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.deaths_in_row = 0
        self.started_at = 0.0
        self.respawn_handle: asyncio.TimerHandle | None = None
        self.zombies: list[subprocess.Popen[bytes]] = []  # killed, not reaped yet

    def __repr__(self) -> str:
        return f"Worker({self.name}, pid={self.pid}, epoch={self.epoch})"


class Supervisor:
    """Spawns and watches the local workers of one pool."""

    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop, tag: str,
                 endpoint: str, registry: hygiene.Registry,
                 on_exit: Callable[[Worker, int], None]) -> None:
        self.settings = settings
        self.loop = loop
        self.tag = tag
        self.endpoint = endpoint
        self.registry = registry
        self.on_exit = on_exit  # (worker, epoch) -> None: the process has exited
        self.transport = settings.pool.transport
        sup = settings.supervision
        self.reset_after = max(1.0, sup.respawn_backoff_max_s)
        self.workers: list[Worker] = []

    def add(self) -> Worker:
        w = Worker(len(self.workers))
        self.workers.append(w)
        return w

    # --- start ---------------------------------------------------------------------------

    def spawn(self, w: Worker) -> tuple[RingAllocator | None, RingAllocator | None]:
        """Start ``w``'s next epoch; returns its ring allocators (shm) or Nones."""
        w.respawn_handle = None
        w.epoch += 1
        w.identity = f"{self.tag}-{w.name}-{w.epoch}".encode()
        w.started_at = self.loop.time()
        rings: tuple[RingAllocator | None, RingAllocator | None] = (None, None)
        if self.transport == "shm":
            rings = self._make_rings(w)
        if self.transport == "inline":
            w.service = WorkerService(w.index)
            if w.executor is None:
                w.executor = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix=f"framecrypt-{w.name}")
            return rings
        s = self.settings
        sup = s.supervision
        cmd = [sys.executable, "-m", "framecrypt.workers.process", "--connect", self.endpoint,
               "--slot", str(w.index), "--identity", w.identity.decode(),
               "--interval", str(sup.heartbeat_interval_s),
               "--liveness", str(sup.heartbeat_liveness), "--parent", str(os.getpid()),
               "--sched", s.pool.worker_sched]
        fds: tuple[int, ...] = ()
        if w.req_seg is not None and w.rep_seg is not None and not w.req_seg.named:
            fds = (w.req_seg.fd, w.rep_seg.fd)  # the rings, inherited (no names)
        w.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, close_fds=True, pass_fds=fds)
        w.pid = w.proc.pid
        try:
            w.pidfd = os.pidfd_open(w.pid)
            self.loop.add_reader(w.pidfd, self._exited, w, w.epoch)
        except (AttributeError, OSError):
            w.pidfd = None  # heartbeats still detect the death; reap() polls
        return rings

    def _make_rings(self, w: Worker) -> tuple[RingAllocator, RingAllocator]:
        self.drop_rings(w)
        size = self.settings.shm.ring_bytes
        if memfd_supported():  # no name anywhere: freed with the last process holding it
            pair = RingPair.create(size, label=f"{self.tag}-{w.name}-{w.epoch}")
            w.req_seg, w.rep_seg = pair.request, pair.reply
            return RingAllocator(size), RingAllocator(size)
        d = self.settings.shm.dir
        names = [hygiene.segment_name(self.tag, w.index * 1000 + w.epoch % 1000, k)
                 for k in (hygiene.REQUEST, hygiene.REPLY)]
        # reserved in full: a too-small /dev/shm fails here, not with SIGBUS in a worker
        w.req_seg = Segment.create(names[0], size, dir=d)
        self.registry.add(w.req_seg.path)
        w.rep_seg = Segment.create(names[1], size, dir=d)
        self.registry.add(w.rep_seg.path)
        return RingAllocator(size), RingAllocator(size)

    def drop_rings(self, w: Worker) -> None:
        for seg in (w.req_seg, w.rep_seg):
            if seg is not None:
                seg.close()
                if seg.named and seg.unlink():
                    self.registry.discard(seg.path)
        w.req_seg = w.rep_seg = None

    def shm_config(self, w: Worker) -> Rings | InheritedRings | None:
        """The CONFIG message's shm part: where the worker finds its rings."""
        req, rep = w.req_seg, w.rep_seg
        if req is None or rep is None:
            return None
        if not req.named:
            return InheritedRings(req.fd, rep.fd, req.size)
        return Rings(req.name, rep.name, req.size, self.settings.shm.dir)

    # --- death ---------------------------------------------------------------------------

    def _exited(self, w: Worker, epoch: int) -> None:
        self._close_pidfd(w)
        self.reap(w)
        self.on_exit(w, epoch)

    def _close_pidfd(self, w: Worker) -> None:
        if w.pidfd is not None:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(w.pidfd)
            os.close(w.pidfd)
            w.pidfd = None

    def kill(self, w: Worker) -> None:
        """SIGKILL what is left of ``w``'s process; it is reaped once it has exited
        (its pidfd, or :meth:`reap` from the heartbeat tick), never waited for here."""
        self._close_pidfd(w)
        if w.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(signal.SIGKILL)
            w.zombies.append(w.proc)
            w.proc = None
        self.reap(w)

    def reap(self, w: Worker) -> None:
        """Collect exited processes without blocking (no zombies are left behind)."""
        w.zombies = [p for p in w.zombies if p.poll() is None]

    def died(self, w: Worker, now: float) -> float:
        """Bookkeeping of a death; returns the respawn delay (see the module doc)."""
        self.kill(w)
        if now - w.started_at >= self.reset_after:
            w.deaths_in_row = 0  # it was healthy for a while: start the count afresh
        w.deaths_in_row += 1
        if self.transport == "shm":
            self.drop_rings(w)
        sup = self.settings.supervision
        return backoff(w.deaths_in_row, sup.respawn_backoff_s, sup.respawn_backoff_max_s)

    def schedule(self, w: Worker, delay: float, respawn: Callable[[Worker], None]) -> None:
        w.respawn_handle = self.loop.call_later(delay, respawn, w)

    # --- stop ----------------------------------------------------------------------------

    async def stop(self, timeout: float = 2.0) -> None:
        """Wait (without blocking the loop) for the stopped workers to exit, SIGKILL
        the ones that do not, release everything."""
        end = self.loop.time() + timeout
        for w in self.workers:
            if w.respawn_handle is not None:
                w.respawn_handle.cancel()
            p = w.proc
            if p is not None:
                while p.poll() is None and self.loop.time() < end:
                    await asyncio.sleep(0.01)
            self.kill(w)
        for w in self.workers:
            while w.zombies and self.loop.time() < end + 1.0:
                self.reap(w)
                if w.zombies:
                    await asyncio.sleep(0.01)
            self._close_pidfd(w)
            if w.executor is not None:
                w.executor.shutdown(wait=True)
                w.executor = None
            if w.service is not None:
                w.service.close()
            self.drop_rings(w)
