"""E2EE ping: a periodic encrypted ping/pong per participant over the Olm channel.

:class:`PingTracker` is the sans-I/O bookkeeping for one peer: it says when a ping is
due, measures the round-trip time of the matching pong with the caller's clock (no
clock sync with the peer), and counts misses (no pong within ``timeout_s``). After
``max_misses`` consecutive misses it reports the failure once; the next pong resets it.
The pings themselves are ``ping`` / ``pong`` messages sealed on the Olm channel
(:mod:`framecrypt.keys.envelope`), so a pong proves the peer still holds the session.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PingConfig:
    interval_s: float = 10.0
    timeout_s: float = 5.0
    max_misses: int = 3

    def __post_init__(self) -> None:
        if self.interval_s <= 0 or self.timeout_s <= 0 or self.timeout_s > self.interval_s:
            raise ValueError("ping needs 0 < timeout_s <= interval_s")
        if self.max_misses < 1:
            raise ValueError("max_misses must be >= 1")


@dataclass(frozen=True, slots=True)
class PingOutcome:
    """What :meth:`PingTracker.poll` found: a ping id to send now, a miss counted, and
    whether that miss reached ``max_misses``."""

    send_id: int | None = None
    missed: bool = False
    failed: bool = False


class PingTracker:
    """Ping bookkeeping for one peer. ``start`` is when the channel became ready (the
    first ping goes out at once)."""

    __slots__ = ("_failed", "_next_due", "_next_id", "_outstanding", "_sent_at", "config",
                 "last_rtt_s", "misses")

    def __init__(self, config: PingConfig, start: float) -> None:
        self.config = config
        self._next_due = start
        self._next_id = 1
        self._outstanding: int | None = None
        self._sent_at = 0.0
        self._failed = False
        self.misses = 0
        self.last_rtt_s: float | None = None

    def __repr__(self) -> str:
        return f"PingTracker(misses={self.misses}, rtt={self.last_rtt_s})"

    @property
    def deadline(self) -> float:
        """When :meth:`poll` has something to do."""
        if self._outstanding is not None:
            return self._sent_at + self.config.timeout_s
        return self._next_due

    def poll(self, now: float) -> PingOutcome:
        missed = failed = False
        if self._outstanding is not None and now >= self._sent_at + self.config.timeout_s:
            self._outstanding = None
            self.misses += 1
            missed = True
            if self.misses >= self.config.max_misses and not self._failed:
                self._failed = True
                failed = True
        if self._outstanding is None and now >= self._next_due:
            pid = self._next_id
            self._next_id += 1
            self._outstanding = pid
            self._sent_at = now
            self._next_due = now + self.config.interval_s
            return PingOutcome(pid, missed, failed)
        return PingOutcome(None, missed, failed)

    def on_pong(self, ping_id: int, now: float) -> float | None:
        """The RTT in seconds if ``ping_id`` is the outstanding ping, else ``None``."""
        if ping_id != self._outstanding:
            return None
        self._outstanding = None
        self.misses = 0
        self._failed = False
        self.last_rtt_s = now - self._sent_at
        return self.last_rtt_s


__all__ = ["PingConfig", "PingOutcome", "PingTracker"]
