"""The contenders, each able to run any workload, and the roster of one run.

- :mod:`.base`: the interface every contender offers the harness (:class:`Contender`)
  and the helpers they share (chunking, checking results);
- :mod:`.inline`: in the calling process, on the event loop: bare AES-GCM (the
  floor, :class:`Floor`) and one framecrypt call per frame (:class:`Inline`) on the
  default, pure-Python or native path;
- :mod:`.native`: the compiled hot path's helpers (which path a contender runs on)
  and bare batch AES-GCM in the extension (the limit, :class:`Limit`);
- :mod:`.pool`: :class:`framecrypt.Pool` (workers × transport × placement) through
  the frame API (:class:`PoolContender`);
- :mod:`.batch`: the columnar API (:class:`framecrypt.batch.FrameBatch`), through the
  pool (:class:`BatchPoolContender`) and inline (:class:`InlineBatch`, per path);
- :mod:`.naive`: a naive ``multiprocessing.Pool`` (:class:`Naive`).

(The livekit-client worker under Node is in :mod:`framecrypt.bench.browser`.)"""

from __future__ import annotations

import argparse
import os

from framecrypt.bench.contenders.base import Contender, Record
from framecrypt.bench.contenders.batch import (
    BATCH_BYTES,
    BatchPoolContender,
    InlineBatch,
    ZeroCopyPoolContender,
)
from framecrypt.bench.contenders.inline import Floor, Inline
from framecrypt.bench.contenders.naive import Naive, naive_task
from framecrypt.bench.contenders.native import Limit
from framecrypt.bench.contenders.pool import PoolContender
from framecrypt.bench.workloads import Scale

__all__ = [
    "BATCH_BYTES",
    "BatchPoolContender",
    "Contender",
    "Floor",
    "Inline",
    "InlineBatch",
    "Limit",
    "Naive",
    "PoolContender",
    "Record",
    "ZeroCopyPoolContender",
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
    cs: list[Contender] = [
        Floor(), Limit(args.chunk, BATCH_BYTES),
        # today's pure-Python inline (the baseline of issue 14's targets)
        Inline("python", "inline-python"), InlineBatch(args.chunk, "python", "inline-batch-python"),
        # the default path (FRAMECRYPT_NATIVE: the extension where built)
        Inline(), InlineBatch(args.chunk),
        # the extension, explicitly: per call, and per AES-GCM backend over batches
        Inline("auto", "inline-native"),
        InlineBatch(args.chunk, "evp", "batch-native-evp"),
        InlineBatch(args.chunk, "ipsec-mb", "batch-native-ipsec-mb"),
    ]
    for w in worker_counts(n, args.workers):
        for tr in ("shm", "ipc"):
            for pl in ("pool", "auto"):
                cs.append(PoolContender(w, tr, pl, args.chunk))
        for pl in ("pool", "auto"):
            cs.append(BatchPoolContender(w, "shm", pl, args.chunk))
            cs.append(ZeroCopyPoolContender(w, "shm", pl, args.chunk))
    cs.append(Naive(n, scale.naive_cap))
    return cs
