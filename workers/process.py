"""A crypto worker process: ``python -m framecrypt.workers.process --connect EP --slot N``.

Zguide Paranoid Pirate style: the worker says READY, then answers the broker's
messages in order (batches, key operations, pings); it sends a heartbeat (PONG)
whenever it has been silent for an interval — also in the middle of a long batch —
and exits when the broker has been silent for ``liveness`` intervals or its parent
dies (``PR_SET_PDEATHSIG``), so a SIGKILLed broker leaves no orphans.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import time
from collections.abc import Callable

import zmq

from framecrypt.transports.to_broker import Pong, Ready
from framecrypt.transports.wire import Parts
from framecrypt.workers.service import WorkerService


def _no_core_dumps() -> None:
    """A worker holds keys: it never writes a core dump (DESIGN invariant 5)."""
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError):
        pass


def _set_sched(policy: str) -> None:
    """Run at a lower scheduling class than the broker (``[pool] worker_sched``)."""
    which = {"batch": "SCHED_BATCH", "idle": "SCHED_IDLE"}.get(policy)
    if which is None or not hasattr(os, which):
        return
    try:
        os.sched_setscheduler(0, getattr(os, which), os.sched_param(0))
    except OSError:
        pass


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run(endpoint: str, slot: int, identity: bytes, interval: float, liveness: int,
        parent: int | None = None, curve: tuple[bytes, bytes, bytes] | None = None) -> int:
    """Serve one broker connection until it stops us (0), goes silent (3) or our parent
    dies (4). ``curve`` = (server public, our public, our secret) for tcp."""
    from framecrypt.tuning import tune_allocator

    tune_allocator()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, identity)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    if curve is not None:
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = curve
    sock.connect(endpoint)
    last_sent = time.monotonic()
    pong = Pong(0).encode()

    def send(parts: Parts) -> None:
        nonlocal last_sent
        sock.send_multipart(parts, copy=len(parts[-1]) < 65536)
        last_sent = time.monotonic()

    def heartbeat() -> None:
        if time.monotonic() - last_sent >= interval:
            send(pong)

    service = WorkerService(slot, heartbeat)
    send(Ready(os.getpid(), slot).encode())
    last_heard = time.monotonic()
    timeout_ms = max(1, int(interval * 1000))
    try:
        while not service.stopped:
            if sock.poll(timeout_ms, zmq.POLLIN):
                while True:
                    try:
                        parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    last_heard = time.monotonic()
                    # handle never raises: garbage is counted and answered with nothing
                    for reply in service.handle([p.buffer for p in parts]):
                        send(reply)
                    if service.stopped:
                        break
            now = time.monotonic()
            if parent is not None:
                # a local worker: its broker is its parent (PR_SET_PDEATHSIG and this
                # check); a busy broker that is late with pings is not a dead one
                if os.getppid() != parent:
                    return 4
            elif now - last_heard > interval * liveness:
                return 3  # remote broker silent: reconnect
            if now - last_sent >= interval:
                send(pong)
        return 0
    finally:
        service.close()
        sock.close(0)


def run_remote(endpoint: str, server_key: str, secret_key: str, *, name: str = "worker",
               interval: float = 0.25, liveness: int = 4, backoff: float = 0.25,
               backoff_max: float = 8.0, stop: Callable[[], bool] = lambda: False) -> int:
    """A worker on another host: CURVE-authenticated tcp, Paranoid Pirate reconnects.

    Each connection is a fresh worker to the broker (new identity, empty state: the
    broker hands it the keys of the participants it gets). When the broker goes
    silent for ``liveness`` intervals the socket is dropped and, after an exponential
    back-off, a new one connects. Returns when the broker sends STOP or ``stop()``.
    """
    import secrets

    import zmq.auth

    server_public, _ = zmq.auth.load_certificate(server_key)
    public, secret = zmq.auth.load_certificate(secret_key)
    if not secret:
        raise SystemExit(f"{secret_key}: no secret key in this file")
    delay = backoff
    while not stop():
        identity = f"{name}-{secrets.token_hex(4)}".encode()
        started = time.monotonic()
        code = run(endpoint, 0, identity, interval, liveness, None,
                   (server_public, public, secret))
        if code == 0:
            return 0
        if time.monotonic() - started > interval * liveness * 4:
            delay = backoff  # it had worked for a while: retry soon
        time.sleep(delay)  # back-off between reconnects (Paranoid Pirate)
        delay = min(backoff_max, delay * 2)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="framecrypt-worker")
    p.add_argument("--connect", required=True)
    p.add_argument("--slot", type=int, required=True)
    p.add_argument("--identity", required=True)
    p.add_argument("--interval", type=float, default=0.25)
    p.add_argument("--liveness", type=int, default=4)
    p.add_argument("--parent", type=int, default=None)
    p.add_argument("--sched", choices=("normal", "batch", "idle"), default="normal")
    a = p.parse_args(argv)
    _no_core_dumps()
    _set_sched(a.sched)
    if a.parent is not None:
        _die_with_parent()
        if os.getppid() != a.parent:
            return 4
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the broker decides when we stop
    return run(a.connect, a.slot, a.identity.encode(), a.interval, a.liveness, a.parent)


if __name__ == "__main__":
    raise SystemExit(main())
