"""Rotation bookkeeping of a :class:`~framecrypt.keys.policy.Member`: a key on offer
waiting for acks (:class:`Rotation`) and a debounced trigger (:class:`Debounce`).

Plain state with no clock: every method takes ``now``. Shared by the member's own key
(:mod:`~framecrypt.keys.own_key`) and the visitor key (:mod:`~framecrypt.keys.visitor_key`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .olm import MediaKey


@dataclass(slots=True, repr=False)
class Rotation:
    """A new key offered to some peers; it is switched to once none owes an ack, or at
    ``deadline``."""

    key: MediaKey
    cause: str
    deadline: float
    waiting: dict[str, str] = field(default_factory=dict)  # peer -> uuid of the message
    recipients: set[str] = field(default_factory=set)
    acked: int = 0

    def offered(self, peer: str, uuid: str) -> None:
        """The key went to ``peer`` in message ``uuid``; ``peer`` now owes an ack."""
        self.waiting[peer] = uuid
        self.recipients.add(peer)

    def ack(self, peer: str, uuid: str) -> bool:
        """Note ``peer``'s ack of key message ``uuid``; True once nobody owes one."""
        if self.waiting.get(peer) != uuid:
            return False
        del self.waiting[peer]
        self.acked += 1
        return not self.waiting


@dataclass(slots=True)
class Debounce:
    """A trigger that fires ``delay`` after the latest call, but no later than
    ``max_delay`` after the first; :meth:`clear` returns the first call's cause."""

    at: float | None = None
    first: float | None = None
    cause: str = ""

    def trigger(self, now: float, delay: float, max_delay: float, cause: str) -> None:
        if self.first is None:
            self.first = now
            self.cause = cause
        self.at = min(now + delay, self.first + max(max_delay, delay))

    def due(self, now: float) -> bool:
        return self.at is not None and now >= self.at

    def clear(self) -> str:
        cause = self.cause
        self.at = self.first = None
        self.cause = ""
        return cause


__all__ = ["Debounce", "Rotation"]
