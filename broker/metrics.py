"""Prometheus metrics for a :class:`~framecrypt.Pool`, read on scrape.

:class:`PoolCollector` is a custom collector: each scrape makes exactly one call to
``pool.stats()`` and turns the snapshot into metric families, so the frame path pays
nothing. Nothing is registered in prometheus_client's global default registry:
:func:`serve` and :func:`render` use a fresh :class:`CollectorRegistry` each (unless the
caller hands one to ``serve``), so several pools, or tests, never clash.

Metrics (``framecrypt`` is the default namespace)::

    framecrypt_frames_total{outcome="ok|failed"}             counter
    framecrypt_frames_submitted_total                        counter
    framecrypt_frames_placed_total{placement="inline|pool"}  counter
    framecrypt_bytes_total{direction="in|out"}               counter
    framecrypt_errors_total{reason=<exception class name>}   counter
    framecrypt_batches_total, _overloaded_total, _expired_total, _worker_lost_total,
    _redispatched_total, _worker_deaths_total, _worker_spawns_total,
    _protocol_errors_total, _events_dropped_total, _control_errors_total   counters
    framecrypt_frames_in_flight, _bytes_in_flight, _waiters, _participants  gauges
    framecrypt_worker_queue_frames{slot}, _worker_frames_in_flight{slot},
    _worker_bytes_in_flight{slot}, _worker_up{slot} (1 = state "ready")     gauges
    framecrypt_worker_restarts_total{slot}                   counter
    framecrypt_pool_info{transport,format,placement}         info
    framecrypt_frame_latency_seconds                         histogram (pool path only)
    framecrypt_participant_frames_total{participant,direction,kind,outcome}   counter
    framecrypt_participant_errors_total{participant,direction,reason}         counter
    framecrypt_participant_streams_failing{participant,direction}             gauge
    framecrypt_streams_failing, framecrypt_participants_labelled              gauges

Per-participant metrics have bounded cardinality: ``participant`` is one of at most
``metrics.participant_labels`` sanitized labels (see :mod:`framecrypt.broker.health`:
the first participants with an outcome, sticky until removed) or ``_other`` for all
the rest; ``direction`` is ``seal``/``open``, ``kind`` ``audio``/``video``/``other``
(streams past the per-participant cap), ``reason`` an exception class name. A scrape
reads a snapshot of those labelled participants only, never one row per participant.

The latency histogram comes from the pool's non-cumulative bucket counts. The pool does
not record a sum of latencies, so ``framecrypt_frame_latency_seconds_sum`` is an
*estimate*: every observation is counted at its bucket's upper bound, and observations
in the +Inf bucket at the largest finite bound. It over-estimates for the finite buckets
and under-estimates for the overflow; use the buckets (``histogram_quantile``) and the
count, not ``rate(_sum)/rate(_count)``, when precision matters.

A key missing from ``stats()`` (an older pool) skips its metric instead of failing the
scrape. No key material is exposed: ``stats()`` carries none, and the only strings
copied into labels are exception class names, worker slot numbers and the pool's
transport/format/placement settings, and participant labels made by
:func:`~framecrypt.broker.health.sanitize_label`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

from framecrypt.broker.health import sanitize_label

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

__all__ = ["MetricsServer", "PoolCollector", "render", "serve"]


class StatsSource(Protocol):
    """Anything with ``stats()`` like :meth:`framecrypt.Pool.stats` (a Pool, a fake)."""

    def stats(self) -> Mapping[str, Any]: ...

# (metric suffix without _total, stats key, help)
_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("frames_submitted", "frames_submitted", "Frames submitted to the pool."),
    ("batches", "batches_sent", "Batches sent to workers."),
    ("overloaded", "overloaded", "Frames refused because the pool was over its limits."),
    ("expired", "expired", "Frames that expired before an outcome."),
    ("worker_lost", "worker_lost", "Frames failed because their worker was lost."),
    ("redispatched", "redispatched", "Frames re-dispatched after a worker death."),
    ("worker_deaths", "worker_deaths", "Worker processes that died."),
    ("worker_spawns", "worker_spawns", "Worker processes spawned."),
    ("protocol_errors", "protocol_errors", "Malformed or unexpected worker messages."),
    ("events_dropped", "events_dropped", "Pool events or callbacks dropped."),
    ("control_errors", "control_errors", "Failed control operations (key changes etc.)."),
)
# (metric suffix, stats key, help)
_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("frames_in_flight", "frames_in_flight", "Frames submitted and not yet finished."),
    ("bytes_in_flight", "bytes_in_flight", "Bytes of frames submitted and not yet finished."),
    ("waiters", "waiters", "Callers waiting for in-flight credit."),
    ("participants", "participants", "Participants known to the pool."),
)
# (metric suffix, per-worker key, help)
_WORKER_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("worker_queue_frames", "queued", "Frames queued for the worker, not yet sent."),
    ("worker_frames_in_flight", "frames_in_flight", "Frames sent to the worker, unanswered."),
    ("worker_bytes_in_flight", "bytes_in_flight", "Bytes sent to the worker, unanswered."),
)


def _num(value: Any) -> float | None:
    """A sample value, or None when absent or not a number (the metric is skipped)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _label(value: Any) -> str:
    """A label value as given when it is short printable text (pool labels are made
    so, see :func:`sanitize_label`), else sanitized: a scrape never fails or carries
    control characters whatever a stats source holds."""
    text = str(value) if value is not None else ""
    return text if len(text) <= 256 and text.isprintable() else sanitize_label(text, 256)


class PoolCollector:
    """A prometheus_client collector over ``pool.stats()`` (one call per scrape)."""

    def __init__(self, pool: StatsSource, *, namespace: str = "framecrypt") -> None:
        self._pool = pool
        self._ns = namespace

    def _name(self, suffix: str) -> str:
        return f"{self._ns}_{suffix}" if self._ns else suffix

    def collect(self) -> Iterator[Metric]:
        stats = self._pool.stats()
        yield from self._pairs(stats, "frames", "Frames finished, by outcome.", "outcome",
                               (("ok", "frames_ok"), ("failed", "frames_failed")))
        yield from self._pairs(stats, "frames_placed",
                               "Frames processed in the broker (inline) or sent to a worker.",
                               "placement",
                               (("inline", "frames_inline"), ("pool", "frames_pool")))
        yield from self._pairs(stats, "bytes", "Frame bytes submitted (in) and returned (out).",
                               "direction", (("in", "bytes_in"), ("out", "bytes_out")))
        reasons = stats.get("errors_by_reason")
        if isinstance(reasons, Mapping):
            errors = CounterMetricFamily(self._name("errors"), "Failed frames, by exception.",
                                         labels=["reason"])
            for reason, count in sorted(reasons.items()):
                value = _num(count)
                if value is not None:
                    errors.add_metric([str(reason)], value)
            yield errors
        for suffix, key, doc in _COUNTERS:
            value = _num(stats.get(key))
            if value is not None:
                yield CounterMetricFamily(self._name(suffix), doc, value=value)
        for suffix, key, doc in _GAUGES:
            value = _num(stats.get(key))
            if value is not None:
                yield GaugeMetricFamily(self._name(suffix), doc, value=value)
        workers = stats.get("workers")
        if isinstance(workers, list):
            yield from self._workers(workers)
        info = {k: stats[k] for k in ("transport", "format", "placement")
                if isinstance(stats.get(k), str)}
        if info:
            yield InfoMetricFamily(self._name("pool"), "Pool configuration.", value=info)
        latency = self._latency(stats)
        if latency is not None:
            yield latency
        per = stats.get("participant_metrics")
        if isinstance(per, Mapping):
            yield from self._participants(per)
        value = _num(stats.get("streams_failing"))
        if value is not None:
            yield GaugeMetricFamily(self._name("streams_failing"),
                                    "Streams failing now (every participant).", value=value)

    def _pairs(self, stats: Mapping[str, Any], suffix: str, doc: str, label: str,
               keys: tuple[tuple[str, str], ...]) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name(suffix), doc, labels=[label])
        for label_value, key in keys:
            value = _num(stats.get(key))
            if value is not None:
                family.add_metric([label_value], value)
        if family.samples:
            yield family

    def _workers(self, workers: list[Any]) -> Iterator[Metric]:
        rows = [(str(w["slot"]), w) for w in workers if isinstance(w, Mapping) and "slot" in w]
        for suffix, key, doc in _WORKER_GAUGES:
            gauge = GaugeMetricFamily(self._name(suffix), doc, labels=["slot"])
            for slot, w in rows:
                value = _num(w.get(key))
                if value is not None:
                    gauge.add_metric([slot], value)
            if gauge.samples:
                yield gauge
        up = GaugeMetricFamily(self._name("worker_up"), "1 if the worker is ready, else 0.",
                               labels=["slot"])
        for slot, w in rows:
            if "state" in w:
                up.add_metric([slot], 1.0 if w["state"] == "ready" else 0.0)
        if up.samples:
            yield up
        restarts = CounterMetricFamily(self._name("worker_restarts"),
                                       "Times the worker in this slot was restarted.",
                                       labels=["slot"])
        for slot, w in rows:
            value = _num(w.get("restarts"))
            if value is not None:
                restarts.add_metric([slot], value)
        if restarts.samples:
            yield restarts

    def _participants(self, per: Mapping[str, Any]) -> Iterator[Metric]:
        families = (
            ("frames", CounterMetricFamily, ("direction", "kind", "outcome"),
             "Frames finished per participant, by direction (seal/open), kind and outcome."),
            ("errors", CounterMetricFamily, ("direction", "reason"),
             "Failed frames per participant, by direction and exception class."),
            ("failing", GaugeMetricFamily, ("direction",),
             "Streams of the participant failing now, by direction."),
        )
        for key, cls, labels, doc in families:
            suffix = "streams_failing" if key == "failing" else key
            family = cls(self._name(f"participant_{suffix}"), doc,
                         labels=["participant", *labels])
            rows = per.get(key)
            for row in rows if isinstance(rows, list) else ():
                value = _num(row.get("value")) if isinstance(row, Mapping) else None
                if value is None:
                    continue
                family.add_metric([_label(row.get(k)) for k in ("participant", *labels)],
                                  value)
            yield family
        value = _num(per.get("labelled"))
        if value is not None:
            yield GaugeMetricFamily(self._name("participants_labelled"),
                                    "Participants with a participant label of their own "
                                    "(the others are counted as \"_other\").", value=value)

    def _latency(self, stats: Mapping[str, Any]) -> Metric | None:
        bounds = stats.get("latency_buckets_s")
        counts = stats.get("latency_counts")
        if not isinstance(bounds, list | tuple) or not isinstance(counts, list | tuple):
            return None
        if not bounds or len(counts) != len(bounds) + 1:
            return None
        fbounds = [_num(b) for b in bounds]
        fcounts = [_num(c) for c in counts]
        if any(b is None for b in fbounds) or any(c is None for c in fcounts):
            return None
        buckets: list[tuple[str, float]] = []
        total = 0.0
        estimate = 0.0
        for i, count in enumerate(fcounts):
            assert count is not None
            total += count
            if i < len(fbounds):
                bound = fbounds[i]
                assert bound is not None
                buckets.append((repr(bound), total))
                estimate += count * bound
            else:  # +Inf: counted at the largest finite bound
                buckets.append(("+Inf", total))
                estimate += count * (fbounds[-1] or 0.0)
        return HistogramMetricFamily(
            self._name("frame_latency_seconds"),
            "Pool-path frame latency, submit to outcome. _sum is estimated from the bucket "
            "upper bounds (+Inf at the largest finite bound).",
            buckets=buckets, sum_value=estimate)


class MetricsServer:
    """A running ``/metrics`` endpoint (see :func:`serve`). ``close()`` stops it."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread,
                 registry: CollectorRegistry, collector: PoolCollector) -> None:
        self._httpd = httpd
        self._thread = thread
        self._lock = threading.Lock()
        self._closed = False
        self.registry = registry
        self.collector = collector
        self.addr: str = str(httpd.server_address[0])
        self.port: int = int(httpd.server_address[1])

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving, close the listening socket, join the server thread (bounded)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            if self._thread.is_alive():
                self._httpd.shutdown()  # returns once serve_forever has left its loop
            self._thread.join(timeout)
        finally:
            self._httpd.server_close()
            self.registry.unregister(self.collector)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"MetricsServer({self.addr}:{self.port}, {state})"


def serve(pool: StatsSource, port: int, addr: str = "127.0.0.1", *,
          registry: CollectorRegistry | None = None) -> MetricsServer:
    """Serve ``pool``'s metrics at ``http://addr:port/metrics`` from a daemon thread.

    ``port=0`` binds an ephemeral port (read it back from ``.port``). The collector goes
    into ``registry`` if given, else into a fresh registry, never the global default one.
    """
    reg = registry if registry is not None else CollectorRegistry()
    collector = PoolCollector(pool)
    reg.register(collector)
    try:
        started = start_http_server(port, addr=addr, registry=reg)
        if not isinstance(started, tuple):  # before 0.21 it returned None: no way to stop it
            raise RuntimeError("framecrypt metrics need prometheus-client >= 0.21")
    except BaseException:
        reg.unregister(collector)
        raise
    httpd, thread = started
    return MetricsServer(httpd, thread, reg, collector)


def render(pool: StatsSource) -> bytes:
    """The Prometheus text exposition of ``pool``'s metrics (a fresh registry)."""
    reg = CollectorRegistry()
    reg.register(PoolCollector(pool))
    return generate_latest(reg)
