"""The CPU-bound work of benchmarks/pool.py, the same for every system (no framework import)."""

from __future__ import annotations


def spin(iterations: int) -> int:
    """Pure Python additions, holding the GIL."""
    total = 0
    for i in range(iterations):
        total += i
    return total
