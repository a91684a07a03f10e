"""Participant events (like livekit's EncryptionState changes), to callbacks and a
bounded async iterator. No key bytes: a participant, a kind and a key index."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

__all__ = ["EventHub", "PoolEvent"]


@dataclass(frozen=True, slots=True)
class PoolEvent:
    """A per-participant event, like livekit's EncryptionState changes. No key bytes."""

    participant: str
    kind: str  # key_ratcheted | decryption_failed | missing_key | key_invalid | sif_dropped
    key_index: int


class EventHub:
    def __init__(self, counters: dict[str, int], maxsize: int = 1024) -> None:
        self._counters = counters  # "events_dropped" counts what nobody took
        self._callbacks: list[Callable[[PoolEvent], None]] = []
        self._queue: asyncio.Queue[PoolEvent] | None = None
        self._maxsize = maxsize

    def add(self, callback: Callable[[PoolEvent], None]) -> None:
        self._callbacks.append(callback)

    def emit(self, ev: PoolEvent) -> None:
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

    async def stream(self, closed: Callable[[], bool]) -> AsyncIterator[PoolEvent]:
        """Events as an async iterator (bounded: the oldest are dropped and counted
        when nobody reads)."""
        if self._queue is None:
            self._queue = asyncio.Queue(self._maxsize)
        q = self._queue
        while not closed():
            yield await q.get()
