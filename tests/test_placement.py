"""The auto-placement cost model (sans-I/O) and its use by a real pool."""

from __future__ import annotations

import asyncio

from pool_helpers import key_for, run

from framecrypt import Pool
from framecrypt.batch import FrameBatch
from framecrypt.broker.placement import PlacementModel


def test_kinds_bucket_by_mean_size_and_heaviness() -> None:
    k = PlacementModel.kind
    assert k(10, 10 * 1000, False) == k(10, 10 * 900, False) != k(10, 10 * 1100, False)
    assert k(10, 10_000, True) != k(10, 10_000, False)
    assert k(0, 0, False) == (1, False)


def test_both_paths_are_measured_before_a_preference() -> None:
    m = PlacementModel(oversubscribed=True)
    kind = (10, False)
    assert m.choose(kind) == "inline"
    assert m.prefers_inline(kind) is None
    m.note_inline(kind, 2.0)
    assert m.choose(kind) == "pool"
    m.note_offload(kind, 1.0, 3.0)
    assert m.prefers_inline(kind) is True  # 2.0 <= 1.0 + 3.0: the cores are shared


def test_with_cores_to_spare_only_the_broker_cost_counts() -> None:
    m = PlacementModel(oversubscribed=False)
    kind = (10, False)
    m.note_inline(kind, 2.0)
    m.note_offload(kind, 1.0, 3.0)
    assert m.prefers_inline(kind) is False  # offloading costs this process 1.0 < 2.0
    assert m.choose(kind) == "budget"
    m.note_offload(kind, 9.0, 3.0)
    m.note_offload(kind, 9.0, 3.0)
    m.note_offload(kind, 9.0, 3.0)
    m.note_offload(kind, 9.0, 3.0)
    m.note_offload(kind, 9.0, 3.0)
    assert m.prefers_inline(kind) is True  # the moving average followed the new costs


def test_the_other_path_is_looked_at_now_and_then() -> None:
    m = PlacementModel(oversubscribed=True, explore_every=8)
    kind = (12, True)
    m.note_inline(kind, 1.0)
    m.note_offload(kind, 1.0, 2.0)
    picks = [m.choose(kind) for _ in range(32)]
    assert picks.count("budget") == 4 and picks.count("inline") == 28
    snap = m.snapshot()
    assert snap == {"2^12 B, heavy": {"inline_us": 1.0, "broker_us": 1.0, "worker_us": 2.0}}


def test_a_lopsided_choice_is_looked_at_less_often() -> None:
    """With one path 4x (or more) cheaper, exploring costs more than it can find:
    16 times more rarely."""
    m = PlacementModel(oversubscribed=True, explore_every=8)
    kind = (11, False)
    m.note_inline(kind, 0.15)
    m.note_offload(kind, 1.1, 0.2)  # the native inline path against a round trip
    picks = [m.choose(kind) for _ in range(8 * 16 * 2)]
    assert picks.count("budget") == 2
    m.note_inline(kind, 1.0)  # costs change: 1.0 vs 1.3, no longer lopsided
    picks = [m.choose(kind) for _ in range(64)]
    assert picks.count("budget") == 8


def test_an_auto_pool_measures_both_paths_and_reports_them() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="shm", placement="auto") as pool:
            await pool.set_key("a", key_for("a"))
            for _ in range(10):
                res = await pool.encrypt_batch("a", FrameBatch.of([b"\x90" * 800] * 50))
                assert res.failed == 0
            st = pool.stats()
            assert st["frames_inline"] > 0 and st["frames_pool"] > 0
            costs = st["placement_costs"]["2^10 B"]
            assert costs["inline_us"] > 0 and costs["broker_us"] > 0 and costs["worker_us"] > 0
    run(lambda: asyncio.wait_for(main(), 30))
