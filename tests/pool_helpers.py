"""Helpers for pool tests: bounded asyncio runs, frames, and checks on sealed output."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from framecrypt import Frame, livekit

T = TypeVar("T")


def run(fn: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
    """Run a coroutine function with a hard bound."""

    async def bounded() -> T:
        return await asyncio.wait_for(fn(), timeout)

    return asyncio.run(bounded())


def key_for(participant: str) -> bytes:
    return participant.encode().ljust(32, b"#")


def frames(n: int, *, seed: int, ssrc: int, codec: str = "vp8", sizes: tuple[int, int] = (40, 3000),
           keyframe_every: int = 0) -> list[Frame]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kf = bool(keyframe_every) and i % keyframe_every == 0
        out.append(Frame(rng.randbytes(rng.randint(*sizes)), codec, keyframe=kf, ssrc=ssrc,
                         timestamp=i * 3000))
    return out


def open_sealed(participant: str, sealed: bytes, frame: Frame) -> bytes:
    """Open with the pure core and the participant's raw key (outside truth for the pool)."""
    return livekit.unprotect(sealed, key=livekit.derive_key(key_for(participant)),
                             codec=frame.codec, keyframe=frame.keyframe)


def iv_of(sealed: bytes) -> bytes:
    return sealed[-14:-2]


def rss_bytes(pid: int | None = None) -> int:
    with open(f"/proc/{pid or os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def tagged_files(tag: str, *dirs: str) -> list[str]:
    found = []
    for d in dirs:
        try:
            found += [os.path.join(d, n) for n in os.listdir(d) if n.startswith(tag)]
        except FileNotFoundError:
            pass
    return found


async def until(cond: Callable[[], Any], timeout: float, step: float = 0.005) -> None:
    """Wait (bounded) until ``cond()`` is true; polling the pool's own state."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(step)
