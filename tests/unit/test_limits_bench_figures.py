"""The figures of benchmarks/limits.py, without a broker."""

from __future__ import annotations

from benchmarks.limits import overlap, rate_figures
from taskq.limits import RateLimit


def test_rate_figures_of_an_even_run() -> None:
    starts = [i / 10 for i in range(31)]  # 10/s for 3 s
    figures = rate_figures(starts, RateLimit(10, 1.0), 60.0)
    assert figures["rate_per_s"] == 10.0 and figures["starts"] == 31
    assert figures["max_sliding_1s"] == 10 and figures["max_aligned_1s"] == 10


def test_rate_figures_over_a_window_shorter_than_the_run() -> None:
    starts = [i / 20 for i in range(100)]  # 20/s for 5 s, measured over 2 s
    figures = rate_figures(starts, RateLimit(10, 1.0), 2.0)
    assert figures["rate_per_s"] == 20.0 and figures["rate_error_pct"] == 100.0


def test_overlap_counts_an_end_before_a_start_at_the_same_time() -> None:
    events = [("s", "a", 0.0), ("s", "a", 0.5), ("e", "a", 1.0), ("s", "a", 1.0), ("e", "a", 2.0),
              ("e", "a", 2.0), ("s", "b", 0.0), ("e", "b", 1.0)]  # fmt: skip
    assert overlap(events) == {"a": 2, "b": 1}
