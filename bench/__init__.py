"""framecrypt benchmarks.

``framecrypt bench`` / ``python -m framecrypt.bench``: the harness (every contender on
every workload, side by side; see ``bench/README.md``). ``python -m
framecrypt.bench.micro``: the per-call micro-benchmark.

This module stays light (argparse only): the CLI imports it to build its subparser.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

DESCRIPTION = """\
Benchmark harness: bare AES-GCM (the floor; the limit: batch AES-GCM in the compiled
extension), framecrypt inline (per call and over batches; default, pure-Python and
native paths), framecrypt.Pool (1..N workers x shm/ipc x placement pool/auto), a
naive multiprocessing.Pool and the published livekit-client E2EE worker under Node,
on the same real frames: a size sweep, a conference mix, a heavy mix and a ratchet
storm. Prints a Markdown report (figures, ratios, targets with PASS/MISS); --json also
writes PATH, PATH.md, PATH.png.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The harness's options (shared by ``framecrypt bench`` and ``-m framecrypt.bench``)."""
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true",
                      help="more runs, bigger workloads, latency on more workloads (minutes)")
    mode.add_argument("--smoke", action="store_true",
                      help="a few seconds: tiny workloads, every contender path once (CI)")
    p.add_argument("--json", metavar="PATH",
                   help="write every figure to PATH (+ PATH.md table, PATH.png plot)")
    p.add_argument("--workloads", metavar="LIST",
                   help="comma-separated names or globs (default: all), e.g. 'conference,size-*'")
    p.add_argument("--contenders", metavar="LIST", type=lambda s: s.split(","),
                   help="comma-separated names or globs (default: all), e.g. 'inline,pool-shm-*'")
    p.add_argument("--workers", metavar="LIST",
                   help="pool worker counts, e.g. '1,2' (default: 1, 2, powers of 2, N=CPUs)")
    p.add_argument("--runs", type=int, help="timed runs per contender and workload")
    p.add_argument("--chunk", type=int, default=256,
                   help="frames per encrypt_many/decrypt_many call (default 256)")
    p.add_argument("--no-node", action="store_true", help="skip the livekit-client worker")
    p.add_argument("--no-plot", action="store_true", help="no PNG even with --json")
    p.add_argument("--note", default="", help="a note for the report (e.g. 'machine shared')")


def run(args: argparse.Namespace) -> int:
    """Run the harness with parsed arguments (the CLI's ``bench`` subcommand)."""
    from framecrypt.bench.harness import run as _run

    return _run(args)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m framecrypt.bench", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))
