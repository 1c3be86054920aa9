"""cayg-bench: the benchmark harness of cayg-sync (see docs/BENCHMARKS.md)."""
