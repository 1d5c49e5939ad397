"""Benchmarks: each bench_*.py measures a figure side by side with its baseline."""
