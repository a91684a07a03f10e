"""framecrypt benchmarks (run from the repo root: ``python -m bench.micro``)."""
