"""The conference mix through inline sealing and every Pool configuration: the
harness restricted to one workload (issue 3's figures, now part of the full bench).

    python -m framecrypt.bench.pool                  # = python -m framecrypt.bench \\
                                                     #   --workloads conference --no-node ...
    python -m framecrypt.bench.pool --runs 5 --json out.json

Any option of ``python -m framecrypt.bench`` may follow (later ones win).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from framecrypt.bench import main as bench_main

    args = list(sys.argv[1:] if argv is None else argv)
    return bench_main(["--workloads", "conference",
                       "--contenders", "floor,inline,pool-*,naive-mp", "--no-node", *args])


if __name__ == "__main__":
    raise SystemExit(main())
