"""Prometheus metrics of a Pool: the collector, render() and the /metrics endpoint."""

from __future__ import annotations

import asyncio
import itertools
import socket
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from framecrypt import Frame, Pool
from framecrypt.broker.metrics import PoolCollector, render, serve
from framecrypt.errors import FramecryptError
from framecrypt.livekit import derive_key

KEY = b"\x01" * 32
N_OK = 3


def samples(text: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """{(sample name, labels): value} of an exposition (parsing it is part of the test)."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(smp: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    return smp[(name, frozenset(labels.items()))]


async def _exercise(pool: Pool) -> str:
    """N_OK encryptions and one failed decryption; returns the failure's class name."""
    await pool.set_key("alice", KEY)
    for _ in range(N_OK):
        await pool.encrypt("alice", Frame(b"x" * 100, "vp8"))
    with pytest.raises(FramecryptError) as info:
        await pool.decrypt("alice", Frame(b"y" * 100, "vp8"))
    return type(info.value).__name__


T = TypeVar("T")


def _run_with_pool(body: Callable[[Pool, str], T]) -> T:
    async def main() -> T:
        async with Pool(workers=1, transport="inline", placement="pool") as pool:
            reason = await _exercise(pool)
            return body(pool, reason)

    return asyncio.run(main())


def test_render_values() -> None:
    def check(pool: Pool, reason: str) -> None:
        stats = pool.stats()
        smp = samples(render(pool))
        assert value(smp, "framecrypt_frames_total", outcome="ok") == N_OK
        assert value(smp, "framecrypt_frames_total", outcome="failed") == 1
        assert value(smp, "framecrypt_errors_total", reason=reason) == 1
        assert value(smp, "framecrypt_frames_placed_total", placement="pool") == N_OK + 1
        assert value(smp, "framecrypt_frames_placed_total", placement="inline") == 0
        assert value(smp, "framecrypt_bytes_total", direction="in") == 100 * (N_OK + 1)
        assert value(smp, "framecrypt_bytes_total", direction="out") == stats["bytes_out"] > 0
        assert value(smp, "framecrypt_batches_total") == stats["batches_sent"] > 0
        assert value(smp, "framecrypt_worker_spawns_total") == 1
        for name in ("overloaded", "expired", "worker_lost", "redispatched", "worker_deaths",
                     "protocol_errors", "events_dropped"):
            assert value(smp, f"framecrypt_{name}_total") == 0
        assert value(smp, "framecrypt_frames_in_flight") == 0
        assert value(smp, "framecrypt_bytes_in_flight") == 0
        assert value(smp, "framecrypt_waiters") == 0
        assert value(smp, "framecrypt_participants") == 1
        assert value(smp, "framecrypt_worker_up", slot="0") == 1
        assert value(smp, "framecrypt_worker_queue_frames", slot="0") == 0
        assert value(smp, "framecrypt_worker_frames_in_flight", slot="0") == 0
        assert value(smp, "framecrypt_worker_bytes_in_flight", slot="0") == 0
        assert value(smp, "framecrypt_worker_restarts_total", slot="0") == 0
        assert value(smp, "framecrypt_pool_info", transport="inline", format="livekit",
                     placement="pool") == 1
        # histogram: every frame went through the pool path
        assert value(smp, "framecrypt_frame_latency_seconds_count") == N_OK + 1
        assert value(smp, "framecrypt_frame_latency_seconds_bucket", le="+Inf") == N_OK + 1
        les = [(float(dict(k[1])["le"]), v) for k, v in smp.items()
               if k[0] == "framecrypt_frame_latency_seconds_bucket"]
        les.sort()
        assert [le for le, _ in les[:-1]] == stats["latency_buckets_s"]
        assert all(a[1] <= b[1] for a, b in itertools.pairwise(les))  # cumulative
        total = value(smp, "framecrypt_frame_latency_seconds_sum")
        assert 0 < total <= (N_OK + 1) * max(stats["latency_buckets_s"])

    _run_with_pool(check)


def test_collector_calls_stats_once_per_scrape_and_skips_missing_keys() -> None:
    class Old:
        calls = 0

        def stats(self) -> dict[str, Any]:
            self.calls += 1
            # an older pool: no placement/latency/errors_by_reason, a short worker row
            return {"frames_ok": 2, "bytes_in": 7, "waiters": 0, "transport": "ipc",
                    "workers": [{"slot": 0, "state": "dead"}],
                    "latency_buckets_s": [0.1], "latency_counts": [1]}  # malformed: skipped

    old = Old()
    reg = CollectorRegistry()
    reg.register(PoolCollector(old, namespace="fc"))
    assert old.calls == 0
    smp = samples(generate_latest(reg))
    assert old.calls == 1
    assert value(smp, "fc_frames_total", outcome="ok") == 2
    assert ("fc_frames_total", frozenset({("outcome", "failed")})) not in smp
    assert value(smp, "fc_bytes_total", direction="in") == 7
    assert value(smp, "fc_waiters") == 0
    assert value(smp, "fc_worker_up", slot="0") == 0
    assert value(smp, "fc_pool_info", transport="ipc") == 1
    names = {k[0] for k in smp}
    assert not any(n.startswith(("fc_frame_latency", "fc_errors", "fc_frames_placed",
                                 "fc_worker_restarts", "fc_worker_queue")) for n in names)


def test_no_key_material_in_exposition() -> None:
    def check(pool: Pool, _reason: str) -> bytes:
        return render(pool)

    text = _run_with_pool(check).decode().lower()
    for secret in (KEY, derive_key(KEY)):
        assert secret.hex() not in text
        assert secret.hex()[:16] not in text


def test_serve_ephemeral_port_and_close() -> None:
    def check(pool: Pool, _reason: str) -> int:
        server = serve(pool, 0)
        try:
            assert server.port > 0
            url = f"http://127.0.0.1:{server.port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as resp:
                assert resp.status == 200
                body = resp.read()
            assert b"framecrypt_frames_total" in body
            smp = samples(body)
            assert value(smp, "framecrypt_frames_total", outcome="ok") == N_OK
        finally:
            server.close()
        assert not server._thread.is_alive()
        server.close()  # idempotent
        return server.port

    port = _run_with_pool(check)
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.settimeout(5)
        s.connect(("127.0.0.1", port))


def test_serve_into_given_registry_unregisters_on_close() -> None:
    def check(pool: Pool, _reason: str) -> None:
        reg = CollectorRegistry()
        with serve(pool, 0, registry=reg) as server:
            assert server.registry is reg
            assert b"framecrypt_frames_total" in generate_latest(reg)
        assert b"framecrypt_frames_total" not in generate_latest(reg)

    _run_with_pool(check)
