"""``--repeat N``: one row per (system, scenario, variant) out of the rows of N repetitions.

An aggregated row holds the median of its repetitions' figures (tasks/s, p50/p90/p99, CPU per
task, "vs raw") and, in ``runs``, the rows it comes from. A comparison between two rows is
taken within each repetition (both measured under the same conditions) and reported as the
median of those ratios with their min and max (``across``), never as a ratio of medians.
Failed and invalid repetitions count in no figure.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from .harness import Result

Key = tuple[str, str, str]
DASH = "\u2013"  # the en dash of a range (11.9k to 13.1k)
Format = Callable[[float], str]

WORST = {"left_in_queue", "log_lines"}
"""Extras where an aggregated row keeps the worst repetition (the highest), not the median."""


@dataclasses.dataclass(frozen=True)
class Spread:
    """A figure over the repetitions that measured it: median, min, max and their number."""

    median: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread | None:
        """The spread of ``values`` (None when there is none)."""
        if not values:
            return None
        return cls(statistics.median(values), min(values), max(values), len(values))

    def text(self, fmt: Format, bound: Format | None = None) -> str:
        """``fmt(median)``, followed by ``(min-max)`` in ``bound`` when several repetitions
        differ at that precision."""
        bound = bound or fmt
        low, high = bound(self.low), bound(self.high)
        if self.count < 2 or low == high:
            return fmt(self.median)
        return f"{fmt(self.median)} ({low}{DASH}{high})"


def key(row: Result) -> Key:
    """What identifies a row across repetitions."""
    return row.system, row.scenario, row.variant


def repetitions(rows: Sequence[Result]) -> int:
    """How many repetitions ``rows`` come from."""
    return len({r.repetition for r in rows})


def aggregate(rows: Sequence[Result]) -> list[Result]:
    """One row per (system, scenario, variant), in the order of first appearance, each the
    median of its repetitions. Rows of a single repetition are returned as they are."""
    if repetitions(rows) <= 1:
        return list(rows)
    groups: dict[Key, list[Result]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    return [_merge(group) for group in groups.values()]


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _merge(rows: list[Result]) -> Result:
    """The medians of the usable rows (failed or invalid only when every repetition was)."""
    usable = [r for r in rows if r.usable]
    base = usable[0] if usable else rows[-1]
    merged = dataclasses.replace(base, repetition=0, runs=list(rows), extra=dict(base.extra))
    if not usable:
        return merged
    merged.tasks_per_s = _median([r.tasks_per_s for r in usable])
    merged.seconds = _median([r.seconds for r in usable]) or 0.0
    merged.counted = min((r.counted for r in usable if r.counted is not None), default=None)
    merged.fraction_of_ceiling = _median([r.fraction_of_ceiling for r in usable])
    if base.latency_ms and all(r.latency_ms for r in usable):
        merged.latency_ms = {
            name: statistics.median((r.latency_ms or {})[name] for r in usable)
            for name in base.latency_ms
        }
    merged.extra = _merge_extra(usable)
    return merged


def _merge_extra(usable: list[Result]) -> dict[str, Any]:
    extra = dict(usable[0].extra)
    for name, value in extra.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        values = [
            v
            for r in usable
            if isinstance(v := r.extra.get(name), int | float) and not isinstance(v, bool)
        ]
        extra[name] = max(values) if name in WORST else statistics.median(values)
    if not all(r.extra.get("broker_restarted") for r in usable):
        extra.pop("broker_restarted", None)
    return extra


def usable_runs(row: Result) -> dict[int, Result]:
    """The usable rows ``row`` comes from, by repetition (a measured row: itself)."""
    return {r.repetition: r for r in (row.runs or [row]) if r.usable}


def value(row: Result, name: str) -> float | None:
    """One figure of a row: "tasks_per_s", "p50"/"p90"/"p99", "fraction_of_ceiling", or an
    extra ("worker_cpu_us", "broker_cpu_us")."""
    if name == "tasks_per_s":
        return row.tasks_per_s
    if name == "fraction_of_ceiling":
        return row.fraction_of_ceiling
    if name in ("p50", "p90", "p99"):
        return row.latency_ms[name] if row.latency_ms else None
    found = row.extra.get(name)
    return float(found) if isinstance(found, int | float) else None


def figure(row: Result, name: str) -> Spread | None:
    """``name`` over the repetitions of ``row``."""
    values = [v for r in usable_runs(row).values() if (v := value(r, name)) is not None]
    return Spread.of(values)


def across(
    ours: Result, theirs: Result, compare: Callable[[Result, Result], float | None]
) -> Spread | None:
    """``compare(ours, theirs)`` within each repetition that has both rows usable: their
    spread (None when no repetition has both)."""
    mine, other = usable_runs(ours), usable_runs(theirs)
    both = sorted(mine.keys() & other.keys())
    values = [v for n in both if (v := compare(mine[n], other[n])) is not None]
    return Spread.of(values)


def rate(v: float) -> str:
    """A rate in full: 12,444."""
    return f"{v:,.0f}"


def compact(v: float) -> str:
    """A rate in three digits: 11.9k, 2.62k, 131k, 950."""
    if abs(v) >= 100_000:
        return f"{v / 1000:,.0f}k"
    return f"{v / 1000:.3g}k" if abs(v) >= 1000 else f"{v:.0f}"


def two(v: float) -> str:
    """Milliseconds or a ratio: 1.52."""
    return f"{v:.2f}"


def number(v: float) -> str:
    """Any figure of the workflows: 12,444 or 1.52."""
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"


def show(row: Result, name: str, fmt: Format, bound: Format | None = None) -> str:
    """``name`` of ``row`` as its median with its spread ("" when not measured)."""
    spread = figure(row, name)
    if spread is None:
        found = value(row, name)
        return "" if found is None else fmt(found)
    return spread.text(fmt, bound)


# -- the workflows scenario over repetitions ---------------------------------------------------

TASKQ_WORKFLOW = (
    ("fan-out tasks/s", "fanout_tasks_per_s"),
    ("chord tasks/s", "chord_tasks_per_s"),
    ("chord / fan-out", "chord_vs_fanout"),
    ("callback delay p50 (ms)", "callback_delay_ms_p50"),
    ("chain steps/s", "chain_steps_per_s"),
)
PEER_WORKFLOW = TASKQ_WORKFLOW[1:2] + TASKQ_WORKFLOW[3:]


def workflows_rows(runs: Sequence[dict[str, Any]]) -> list[list[str]]:
    """The workflows scenario of several repetitions (each one's figures, [] when it failed):
    each figure and each of issue 22's targets (measured within a repetition) as the median
    (min-max) over them, a table's rows with its header first."""
    total = len(runs)
    runs = [figures for figures in runs if figures]
    rows = [["figure", "median (min-max)", "repetitions"]]
    peers = dict.fromkeys(name for f in runs for name in f.get("peers", {}))
    sources: list[tuple[str, Sequence[tuple[str, str]], list[dict[str, Any]]]] = [
        ("taskq", TASKQ_WORKFLOW, runs)
    ]
    sources += [(p, PEER_WORKFLOW, [f.get("peers", {}).get(p, {}) for f in runs]) for p in peers]
    for system, names, figures in sources:
        for label, name in names:
            values = [v for f in figures if isinstance(v := f.get(name), int | float)]
            spread = Spread.of(values)
            text = spread.text(number) if spread else "not measured"
            rows.append([f"{system} {label}", text, f"{len(values)} of {total}"])
    targets = dict.fromkeys(name for f in runs for name in f.get("targets", {}))
    for name in targets:
        pairs = [f["targets"][name] for f in runs if name in f.get("targets", {})]
        spread = Spread.of([v for v, _ in pairs])
        met = sum(1 for _, ok in pairs if ok)
        text = spread.text(number) if spread else ""
        rows.append([f"target: {name}", text, f"met in {met} of {len(pairs)}"])
    return rows
