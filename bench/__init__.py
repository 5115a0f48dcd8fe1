"""Benchmarks: run with `make bench` (see docs/PERFORMANCE.md)."""
