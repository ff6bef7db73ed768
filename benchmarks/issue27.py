"""Issue 27's figures: the round trip's p50 against Dramatiq and raw direct reply-to, ``map()``
against a gather of ``delay()``, the natural API's drain against ``ignore_result``'s, and
``--processes 2`` against 1, each with its goal.

Rows are looked up by (system, scenario, variant label) as ``benchmarks/scenarios_*.py`` name
them, Dramatiq's by its best (lowest median p50) configuration. Each ratio is taken within a
repetition and shown as the median (min-max) over the repetitions (``report.Target``); a row
the run did not measure makes its figures "not measured".
"""

from __future__ import annotations

from typing import Any

from . import enqueue_floor, rt_floor
from .harness import Result
from .repeat import Spread, figure, two
from .report import Pick, Target, best_of, compared, labelled, render

TASKQ_RT = labelled("taskq", "roundtrip", "AMQP results: delay() + result()")
TASKQ_RT_REDIS = labelled("taskq", "roundtrip", "Redis results: delay() + result()")
DRAMATIQ_RT = best_of("dramatiq", "roundtrip")
RAW_RT = labelled("raw", "roundtrip", "direct reply-to")
FLOOR_AMQP = labelled("floor", "roundtrip", rt_floor.VARIANTS["amqp"])
FLOOR_REDIS = labelled("floor", "roundtrip", rt_floor.VARIANTS["redis"])
DRAIN = "natural API, --concurrency 1000"

LATENCIES: list[tuple[str, Pick]] = [
    ("round trip p50, AMQP results: taskq", TASKQ_RT),
    ("round trip p50: Dramatiq's best (Redis results)", DRAMATIQ_RT),
    ("round trip p50: raw direct reply-to", RAW_RT),
    ("round trip p50: the floor with the AMQP results' hops", FLOOR_AMQP),
    ("round trip p50: the floor with the Redis store's hops", FLOOR_REDIS),
]

GOALS = [
    Target("round trip p50, AMQP results: taskq / Dramatiq", TASKQ_RT, DRAMATIQ_RT, at_most=0.8),
    Target("round trip p50, AMQP results: taskq / raw", TASKQ_RT, RAW_RT, at_most=0.8),
    Target(
        "round trip p50, Redis store: taskq / Dramatiq", TASKQ_RT_REDIS, DRAMATIQ_RT, at_most=0.8
    ),
    # Could any client reach the round-trip goals? The floor (benchmarks.rt_floor: the same
    # hops and guarantees, no task queue above them) against the same Dramatiq row.
    Target(
        "round trip p50, floor of the AMQP hops / Dramatiq", FLOOR_AMQP, DRAMATIQ_RT, at_most=0.8
    ),
    Target(
        "round trip p50, floor of the Redis hops / Dramatiq", FLOOR_REDIS, DRAMATIQ_RT, at_most=0.8
    ),
    Target(
        "enqueue: map() / gather of delay()",
        labelled("taskq", "enqueue", "batch map()"),
        labelled("taskq", "enqueue", "gather delay()"),
        at_least=1.2,
    ),
    Target(
        "drain, --concurrency 1000: natural API / ignore_result",
        labelled("taskq", "drain", DRAIN),
        labelled("taskq", "drain", "no reply_to, --concurrency 1000"),
        at_least=0.9,
    ),
    Target(
        "drain, natural API: --processes 2 / 1 process",
        labelled("taskq", "drain2", DRAIN),
        labelled("taskq", "drain", DRAIN),
        at_least=1.0,
    ),
]


# For reference, no goal: what the broker allows a batch at all.
REFERENCES = [
    Target(
        "enqueue: map() / the floor's bare publisher",
        labelled("taskq", "enqueue", "batch map()"),
        labelled("floor", "enqueue", enqueue_floor.VARIANT),
    ),
    Target(
        "enqueue: gather of delay() / the floor's bare publisher",
        labelled("taskq", "enqueue", "gather delay()"),
        labelled("floor", "enqueue", enqueue_floor.VARIANT),
    ),
]


def _latency(text: str, pick: Pick, results: list[Result]) -> dict[str, Any]:
    picked = pick(results)
    spread = None if picked is None else figure(picked, "p50")
    detail = "not measured in this run" if picked is None else picked.variant
    return _entry(text, "ms", spread, "", None, detail)


def _goal(target: Target, results: list[Result]) -> dict[str, Any]:
    spread, verdict = target.measure(results)
    met = None if spread is None else target.met(spread.median)
    return _entry(target.text, "x", spread, target.goal, met, verdict)


def _reference(target: Target, results: list[Result]) -> dict[str, Any]:
    spread, detail = target.measure(results)
    ours, theirs = target.ours(results), target.theirs(results)
    if spread is not None and ours is not None and theirs is not None:
        detail = compared(ours, theirs)  # the rows, without a verdict: there is no goal
    return _entry(target.text, "x", spread, "", None, detail)


def _entry(
    text: str, unit: str, spread: Spread | None, goal: str, met: bool | None, detail: str
) -> dict[str, Any]:
    """One figure as JSON (not rounded: the table rounds once, as the other tables do)."""
    return {
        "figure": text,
        "unit": unit,
        "median": None if spread is None else spread.median,
        "min": None if spread is None else spread.low,
        "max": None if spread is None else spread.high,
        "repetitions": 0 if spread is None else spread.count,
        "goal": goal,
        "met": met,
        "detail": detail,
    }


def figures(results: list[Result]) -> list[dict[str, Any]]:
    """Issue 27's figures of a run (aggregated rows: ``repeat.aggregate``), as JSON."""
    return (
        [_latency(text, pick, results) for text, pick in LATENCIES]
        + [_goal(target, results) for target in GOALS]
        + [_reference(target, results) for target in REFERENCES]
    )


def _value(f: dict[str, Any]) -> str:
    if f["median"] is None:
        return "not measured"
    unit = " ms" if f["unit"] == "ms" else "x"
    spread = Spread(f["median"], f["min"], f["max"], f["repetitions"])
    return spread.text(lambda v: f"{two(v)}{unit}", two)


def table(rows: list[dict[str, Any]]) -> str:
    """Issue 27's figures as a Markdown table: median (min-max), goal, verdict."""
    lines = [["figure (issue 27)", "median (min-max)", "goal", "verdict (rows compared)"]]
    for f in rows:
        lines.append([f["figure"], _value(f), f["goal"], f["detail"]])
    return render(lines)


def section(rows: list[dict[str, Any]]) -> str:
    """The report's section of issue 27's figures ("" when the run has none)."""
    if not rows:
        return ""
    return (
        "## Issue 27 figures\n\nRound-trip ratios: taskq p50 / the other's p50 (lower is "
        "better); rate ratios: the first row's rate / the second's. Each ratio is taken within "
        f"one repetition; the verdict is on the median.\n\n{table(rows)}\n\n"
    )
