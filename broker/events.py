"""Pool events, to callbacks and a bounded async iterator. No key bytes.

:class:`PoolEvent`: key events of a participant (like livekit's EncryptionState
changes). :class:`ParticipantHealth`: a stream of a participant turned failing or
recovered (see :mod:`framecrypt.broker.health`); never one per frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from framecrypt.broker.health import ParticipantHealth

__all__ = ["EventHub", "HealthHub", "ParticipantHealth", "PoolEvent"]


@dataclass(frozen=True, slots=True)
class PoolEvent:
    """A per-participant event, like livekit's EncryptionState changes. No key bytes."""

    participant: str
    kind: str  # key_ratcheted | decryption_failed | missing_key | key_invalid | sif_dropped
    key_index: int


E = TypeVar("E")


class Hub(Generic[E]):
    def __init__(self, counters: dict[str, int], maxsize: int = 1024) -> None:
        self._counters = counters  # "events_dropped" counts what nobody took
        self._callbacks: list[Callable[[E], None]] = []
        self._queue: asyncio.Queue[E] | None = None
        self._maxsize = maxsize

    def add(self, callback: Callable[[E], None]) -> None:
        self._callbacks.append(callback)

    def emit(self, ev: E) -> None:
        for cb in self._callbacks:
            try:
                cb(ev)
            except Exception:  # a user callback must not break the pool
                self._counters["events_dropped"] += 1
        q = self._queue
        if q is not None:
            if q.full():
                q.get_nowait()
                self._counters["events_dropped"] += 1
            q.put_nowait(ev)

    async def stream(self, closed: Callable[[], bool]) -> AsyncIterator[E]:
        """Events as an async iterator (bounded: the oldest are dropped and counted
        when nobody reads)."""
        if self._queue is None:
            self._queue = asyncio.Queue(self._maxsize)
        q = self._queue
        while not closed():
            yield await q.get()


class EventHub(Hub[PoolEvent]):
    """Key events (:class:`PoolEvent`)."""


class HealthHub(Hub[ParticipantHealth]):
    """Stream health transitions (:class:`ParticipantHealth`)."""
