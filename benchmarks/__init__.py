"""Benchmarks of taskq (run as python -m benchmarks...)."""
