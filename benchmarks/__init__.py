"""Benchmarks: run with `make bench` (not part of `make test`)."""
