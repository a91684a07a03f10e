"""The contenders, each able to run any workload, and the roster of one run.

- :mod:`.base`: the interface every contender offers the harness (:class:`Contender`)
  and the helpers they share (chunking, checking results);
- :mod:`.inline`: in the calling process, on the event loop: bare AES-GCM (the
  floor, :class:`Floor`) and the pure core (:class:`Inline`);
- :mod:`.pool`: :class:`framecrypt.Pool` (workers × transport × placement) through
  the frame API (:class:`PoolContender`);
- :mod:`.batch`: the columnar API (:class:`framecrypt.batch.FrameBatch`), through the
  pool (:class:`BatchPoolContender`) and inline (:class:`InlineBatch`);
- :mod:`.naive`: a naive ``multiprocessing.Pool`` (:class:`Naive`).

(The livekit-client worker under Node is in :mod:`framecrypt.bench.browser`.)"""

from __future__ import annotations

import argparse
import os

from framecrypt.bench.contenders.base import Contender, Record
from framecrypt.bench.contenders.batch import BATCH_BYTES, BatchPoolContender, InlineBatch
from framecrypt.bench.contenders.inline import Floor, Inline
from framecrypt.bench.contenders.naive import Naive, naive_task
from framecrypt.bench.contenders.pool import PoolContender
from framecrypt.bench.workloads import Scale

__all__ = [
    "BATCH_BYTES",
    "BatchPoolContender",
    "Contender",
    "Floor",
    "Inline",
    "InlineBatch",
    "Naive",
    "PoolContender",
    "Record",
    "make_contenders",
    "naive_task",
    "worker_counts",
]


def worker_counts(n: int, override: str | None) -> list[int]:
    if override:
        return sorted({int(x) for x in override.split(",") if x.strip()})
    out = {1, 2, n}
    k = 4
    while k < n:
        out.add(k)
        k *= 2
    return sorted(out)


def make_contenders(scale: Scale, args: argparse.Namespace) -> list[Contender]:
    n = os.cpu_count() or 1
    cs: list[Contender] = [Floor(), Inline(), InlineBatch(args.chunk)]
    for w in worker_counts(n, args.workers):
        for tr in ("shm", "ipc"):
            for pl in ("pool", "auto"):
                cs.append(PoolContender(w, tr, pl, args.chunk))
        for pl in ("pool", "auto"):
            cs.append(BatchPoolContender(w, "shm", pl, args.chunk))
    cs.append(Naive(n, scale.naive_cap))
    return cs
