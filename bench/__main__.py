"""``python -m framecrypt.bench``: the benchmark harness."""

from framecrypt.bench import main

raise SystemExit(main())
