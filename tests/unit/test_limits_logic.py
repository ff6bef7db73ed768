"""Limits without a broker: deferral spread under demand, and runtime changes applied to
what a task declares."""

from __future__ import annotations

import time

from taskq.limits import ConcurrencyLimit, LimitChange, Limits, RateLimit
from taskq.limits.rate import MAX_SPREAD, Demand
from taskq.topology import Names


def test_a_deep_backlog_spreads_deferrals_over_more_windows() -> None:
    limit = RateLimit(10, 1.0)
    assert all(0.1 <= limit.deferral() <= 1.1 for _ in range(200))
    assert max(limit.deferral(demand=8.0) for _ in range(500)) > 2.0  # over ~4 windows
    assert all(limit.deferral(demand=1e6) <= 0.1 + MAX_SPREAD for _ in range(200))


def test_a_window_is_kept_in_slices_so_starts_spread_over_it() -> None:
    names = Names("p")
    assert RateLimit.parse("50/s").slices() == 2  # 25 per 500 ms
    assert RateLimit.parse("50/s").queue(names, "t") == "p.rate.t.25-per-500ms"
    assert RateLimit.parse("50/s").arguments()["x-max-length"] == 25
    assert RateLimit.parse("100/s").arguments()["x-message-ttl"] == 250  # 25 per 250 ms
    assert RateLimit.parse("20/m").arguments()["x-message-ttl"] == 15_000  # 5 per 15 s
    for small in ("3/m", "2/s", "7/s"):  # fewer than 5 tickets a slice: one window, bursts
        assert RateLimit.parse(small).slices() == 1


def test_demand_is_the_tries_per_start_of_the_last_window() -> None:
    demand = Demand()
    assert demand.count(True, 0.05) == 1.0  # no full window yet
    for _ in range(9):
        demand.count(False, 0.05)
    time.sleep(0.06)
    assert demand.count(True, 0.05) == 10.0  # ten tries, one start


def test_changes_apply_over_what_the_task_declares() -> None:
    declared = Limits(RateLimit(5, 1.0), ConcurrencyLimit(2, str, ("customer",)))
    faster = LimitChange("t", rate="50/s").applied_to(declared)
    assert faster.rate == RateLimit(50, 1.0) and faster.concurrency == declared.concurrency
    wider = LimitChange("t", concurrency=7).applied_to(declared)
    assert wider.concurrency is not None and wider.concurrency.limit == 7
    assert wider.concurrency.key_params == ("customer",)  # the key function stays
    off = LimitChange("t", rate="off", concurrency="off").applied_to(declared)
    assert off == Limits()
    assert LimitChange("t", rate="default").applied_to(declared) == declared
    added = LimitChange("t", concurrency=3).applied_to(Limits())
    assert added.concurrency == ConcurrencyLimit(3)  # one key for the whole task
