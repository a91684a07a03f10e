"""Respawn back-off: it grows with deaths in a row and starts afresh after a healthy
period (before issue 13 it only grew: after 7 kills every respawn waited the maximum,
forever, although each worker had run for minutes)."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from pool_helpers import key_for, open_sealed, run, until

from framecrypt import Frame, Pool
from framecrypt.broker.supervisor import Supervisor, backoff
from framecrypt.conf import load_settings
from framecrypt.transports import hygiene

pytestmark = pytest.mark.timeout(120)


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff(n, 0.1, 1.0) for n in range(1, 7)] == [0.0, 0.1, 0.2, 0.4, 0.8, 1.0]


def test_deaths_in_row_reset_after_a_healthy_period() -> None:
    s = load_settings().replace(workers=1, transport="inline", respawn_backoff_s=0.1,
                                respawn_backoff_max_s=5.0)
    loop = asyncio.new_event_loop()
    try:
        sup = Supervisor(s, loop, "t", "", hygiene.Registry(), lambda w, e: None)
        w = sup.add()
        delays = []
        now = 0.0
        for _ in range(8):  # a crash loop: each worker dies 0.5 s after it started
            w.started_at = now
            now += 0.5
            delays.append(sup.died(w, now))
        assert delays == [0.0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0]
        w.started_at = now
        assert sup.died(w, now + 60.0) == 0.0  # it ran for a minute: a first death again
        assert w.deaths_in_row == 1
        w.started_at = now + 60.0
        assert sup.died(w, now + 60.5) == 0.1
    finally:
        loop.close()


def test_a_pool_forgets_old_deaths_once_its_worker_ran_healthy() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="shm", placement="pool",
                        respawn_backoff_s=0.05, respawn_backoff_max_s=1.0) as pool:
            await pool.set_key("a", key_for("a"))

            async def kill() -> None:
                (pid,) = pool.worker_pids()
                os.kill(pid, signal.SIGKILL)
                await until(lambda: pool.worker_pids() not in ([], [pid]), 30)

            for _ in range(4):
                await kill()
            assert pool.stats()["workers"][0]["deaths_in_row"] == 4
            await asyncio.sleep(1.2)  # healthy for longer than respawn_reset (1 s)
            await kill()
            assert pool.stats()["workers"][0]["deaths_in_row"] == 1
            f = Frame(b"after the kills", "opus")
            assert open_sealed("a", await pool.encrypt("a", f), f) == f.data
    run(main, timeout=100)
