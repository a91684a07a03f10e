"""The soak of issue 13 in CI: ~22 s of paced load through ``bench/soak.py`` (function
API) while the one worker is SIGKILLed 4 times, then the soak's checks.

One worker, so that every kill hits the same slot: the respawn back-off is raised to
1 s (doubling, capped at 3 s) so that a pool which kept doubling the delay across
deaths of workers that had been serving for seconds (the bug behind issue 13's
growing RSS) fails the recovery bound within 4 kills (delays 0, 1, 2, 3 s), while one
that starts each such death's count afresh (``broker/supervisor.py``: after
``respawn_backoff_max_s`` of uptime) replaces the worker in start-up time (~0.2 s
here). Kills are 5 s apart, so a replacement has served > 3 s when it is killed.

Bounds (see ``framecrypt.bench.soak``): no frame lost; fds and ``/dev/shm`` mappings
equal after the first and the last kill and back to the baseline after ``close()``;
every worker back within 2.5 s of its kill; private RSS (ring pages left out) after
the last kill within max(32 MB, 10 %) of that after the first kill, looser in CI
(``CI`` set: max(48 MB, 25 %)), because a 20 s run's growth is a few bursts of a few
thousand frames and on a shared runner one slow worker start-up makes a bigger burst,
whose high-water mark the allocator keeps. The memory figures need Linux ``/proc``
(``RssShmem``, ``smaps_rollup``): elsewhere the module is skipped.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest

from framecrypt.bench.soak import SoakConfig, format_summary, run

pytestmark = [
    pytest.mark.timeout(150),
    pytest.mark.skipif(not sys.platform.startswith("linux")
                       or not os.path.exists("/proc/self/smaps_rollup"),
                       reason="the soak's figures come from Linux /proc"),
]

_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")

CFG = SoakConfig(
    transport="shm", workers=1, participants=8, rate=2000.0, duration=22.0, kills=4,
    warmup=2.0, per_frame=4, placement="pool", seed=13, max_recovery_s=2.5,
    rss_slack_mb=48.0 if _CI else 32.0, rss_slack_pct=25.0 if _CI else 10.0,
    options={"respawn_backoff_s": 1.0, "respawn_backoff_max_s": 3.0, "ring_bytes": 8 << 20},
)


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return run(CFG)


def _checks(rep: dict[str, Any], *names: str) -> list[dict[str, Any]]:
    found = [c for c in rep["checks"] if c["name"] in names]
    assert sorted(c["name"] for c in found) == sorted(names), format_summary(rep)
    return found


def test_soak_loses_no_frame_and_leaks_no_fd_or_mapping(report: dict[str, Any]) -> None:
    assert report["summary"]["kills"] == 4
    failed = [c for c in _checks(report, "lost", "fds", "shm maps", "ring pages", "closed",
                                 "deaths") if not c["pass"]]
    assert not failed, format_summary(report)


def test_soak_workers_come_back_promptly_and_memory_stays_flat(
        report: dict[str, Any]) -> None:
    failed = [c for c in _checks(report, "recovery", "rss") if not c["pass"]]
    assert not failed, format_summary(report)
