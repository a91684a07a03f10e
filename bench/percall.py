"""One frame per call through a Pool: what a single ``await pool.encrypt()`` costs.

    python -m framecrypt.bench.percall              # placements auto and pool
    python -m framecrypt.bench.percall --calls 5000 --placement auto

Serial: ``--calls`` awaited one after the other (wall and this process's CPU per
call); concurrent: 64 one-frame calls gathered at a time. 1 KB VP8 delta frames,
2 shm workers. The batch API (``FrameBatch``) is the bulk path; this measures the
convenience path that the latency figure of ``framecrypt bench`` uses.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from framecrypt import Frame, Pool


async def measure(placement: str, calls: int) -> str:
    async with Pool(workers=2, transport="shm", placement=placement) as pool:
        await pool.set_key("a", b"k" * 32)
        f = Frame(b"\x90" * 1000, "vp8", False, 1, 2)
        for _ in range(200):
            await pool.encrypt("a", f)
        t, c = time.perf_counter(), time.process_time()
        for _ in range(calls):
            await pool.encrypt("a", f)
        serial = (time.perf_counter() - t) / calls * 1e6
        serial_cpu = (time.process_time() - c) / calls * 1e6
        rounds = max(1, calls // 64)
        fs = [Frame(b"\x90" * 1000, "vp8", False, i, 2) for i in range(64)]
        t, c = time.perf_counter(), time.process_time()
        for _ in range(rounds):
            await asyncio.gather(*[pool.encrypt("a", x) for x in fs])
        n = rounds * 64
        conc = (time.perf_counter() - t) / n * 1e6
        conc_cpu = (time.process_time() - c) / n * 1e6
    return (f"{placement}: serial {serial:.1f} µs/call (broker CPU {serial_cpu:.1f}); "
            f"64 concurrent {conc:.1f} µs/frame (broker CPU {conc_cpu:.1f})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m framecrypt.bench.percall",
                                 description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--placement", action="append", choices=("auto", "pool", "inline"))
    args = ap.parse_args(argv)
    for placement in args.placement or ["auto", "pool"]:
        print(asyncio.run(measure(placement, args.calls)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
