"""Where ``placement="auto"`` seals a batch: a cost model fed by measurements.

Sans-I/O: the pool tells it what a batch cost on each path (µs per frame: in this
process when sealed inline; in this process and in the worker when offloaded) and asks
it where the next batch of the same kind should go. Kinds are (mean frame size, log2
bucket; heavy: H.26x or an SFrame CTR suite), since the cost per frame of both paths
depends on both.

The rule: offloading a frame costs this process ``broker`` µs (copies, messaging) and
a worker ``worker`` µs; sealing it here costs ``inline`` µs.

- When the workers share the CPU cores with this process (``oversubscribed``: local
  workers + 1 > cores), a frame sent to a worker takes ``broker + worker`` µs of the
  same cores: inline wins when ``inline <= broker + worker``.
- Otherwise the workers add cores: offloading pays as soon as it costs this process
  less than sealing here (``broker < inline``).

Where offloading pays, the answer is ``"budget"``: the pool's loop-time budget then
shares the work (inline up to ``placement.inline_budget`` of the loop, the rest to the
workers). Every ``explore_every``-th batch of a kind takes the other path, so the
figures follow the load; ``lopsided_factor`` times more rarely when one path costs
``lopsided`` times the other or more (with the native hot path, a batch sealed inline
costs a small fraction of the round trip an exploring batch pays, and a stream waits
for its frames at a worker before it may go inline again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Choice = Literal["inline", "pool", "budget"]
Kind = tuple[int, bool]


@dataclass(slots=True)
class _Costs:
    inline: float = 0.0  # µs per frame, 0 = not measured yet
    broker: float = 0.0
    worker: float = 0.0
    seen: int = 0


@dataclass(slots=True)
class PlacementModel:
    oversubscribed: bool
    explore_every: int = 64
    lopsided: float = 4.0
    lopsided_factor: int = 16
    alpha: float = 0.25  # weight of a new measurement (exponential moving average)
    _costs: dict[Kind, _Costs] = field(default_factory=dict)

    @staticmethod
    def kind(frames: int, nbytes: int, heavy: bool) -> Kind:
        return (max(1, nbytes // max(1, frames)).bit_length(), heavy)

    def _of(self, kind: Kind) -> _Costs:
        c = self._costs.get(kind)
        if c is None:
            c = self._costs[kind] = _Costs()
        return c

    def _avg(self, old: float, new: float) -> float:
        return new if old <= 0.0 else old + self.alpha * (new - old)

    def note_inline(self, kind: Kind, us_per_frame: float) -> None:
        c = self._of(kind)
        c.inline = self._avg(c.inline, max(us_per_frame, 1e-3))

    def note_offload(self, kind: Kind, broker_us: float, worker_us: float) -> None:
        c = self._of(kind)
        c.broker = self._avg(c.broker, max(broker_us, 1e-3))
        c.worker = self._avg(c.worker, max(worker_us, 0.0))

    def prefers_inline(self, kind: Kind) -> bool | None:
        """True/False once both paths were measured for this kind, else None."""
        c = self._costs.get(kind)
        if c is None or not c.inline or not c.broker:
            return None
        if self.oversubscribed:
            return c.inline <= c.broker + c.worker
        return c.inline <= c.broker

    def choose(self, kind: Kind) -> Choice:
        c = self._of(kind)
        c.seen += 1
        if not c.inline:
            return "inline"
        if not c.broker:
            return "pool"
        inline = self.prefers_inline(kind)
        every = self.explore_every
        offload = c.broker + c.worker if self.oversubscribed else c.broker
        if max(offload, c.inline) >= self.lopsided * min(offload, c.inline):
            every *= self.lopsided_factor
        if c.seen % every == 0:
            inline = not inline  # look at the other path now and then
        return "inline" if inline else "budget"

    def snapshot(self) -> dict[str, dict[str, float]]:
        """Costs per kind (for stats): ``{"2^k B[, heavy]": {inline, broker, worker}}``."""
        return {f"2^{k[0]} B" + (", heavy" if k[1] else ""):
                {"inline_us": round(c.inline, 3), "broker_us": round(c.broker, 3),
                 "worker_us": round(c.worker, 3)}
                for k, c in sorted(self._costs.items())}


_CTR_SUITES = frozenset((1, 2, 3, 6, 7, 8))


class Placement:
    """Where a run of frames goes now (``placement`` = auto | inline | pool), given
    what the pool knows: the cost model above, the loop-time budget for inline work
    (``now`` and the seconds inline work took are passed in), whether the run's
    participant has key operations or its streams have frames at a worker."""

    def __init__(self, policy: str, model: PlacementModel, *, inline_budget: float,
                 inline_max_bytes: int, sframe_suite: int | None, counter_iv: bool) -> None:
        self.policy = policy
        self.inline_max_bytes = inline_max_bytes
        self.model = model
        self.inline_budget = inline_budget
        # SFrame opening moves replay windows (only workers hold those); LiveKit IVs
        # that are not counters cannot be opened state-free either
        self.open_inline = sframe_suite is None and counter_iv
        self.heavy_suite = sframe_suite is not None and sframe_suite in _CTR_SUITES
        self.window_start = 0.0
        self.spent = 0.0

    def inline(self, kind: Kind, *, decrypt: bool, keys_pending: bool, stream_busy: bool,
               workers_busy: Callable[[], bool], now: float, mean_size: int) -> bool:
        if self.policy == "pool" or keys_pending:
            return False
        if decrypt and not self.open_inline:
            return False
        if stream_busy:
            return False  # the stream has frames at a worker: keep its order
        if self.policy == "inline":
            return True
        if mean_size > self.inline_max_bytes:
            return False
        choice = self.model.choose(kind)
        if choice == "budget":
            return self.within_budget(now) or workers_busy()
        return choice == "inline"

    def within_budget(self, now: float) -> bool:
        """Inline work keeps to ``inline_budget`` of each 100 ms of the loop's time."""
        if now - self.window_start > 0.1:
            self.window_start = now
            self.spent = 0.0
        return self.spent <= 0.1 * self.inline_budget

    def note_inline(self, kind: Kind, seconds: float, frames: int) -> None:
        self.spent += seconds
        self.model.note_inline(kind, seconds * 1e6 / max(1, frames))
