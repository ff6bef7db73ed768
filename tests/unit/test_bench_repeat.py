"""``python -m benchmarks --repeat N`` without a broker: rows of N repetitions become one row of
medians with their min-max, every ratio is taken within a repetition (never a ratio of
medians), failed repetitions count in no figure, and issue 27's table states each figure with
its goal, or "not measured"."""

from __future__ import annotations

import pytest

from benchmarks import enqueue_floor, issue27, repeat, report, rt_floor
from benchmarks.__main__ import row_notes
from benchmarks.harness import Result, failed, rate

DASH = "\u2013"
DRAIN = "natural API, --concurrency 1000"
NO_REPLY = "no reply_to, --concurrency 1000"


def _cells(table: str, first: str) -> list[str]:
    """The cells of the Markdown table row that starts with ``first``."""
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in:\n{table}")


def _rate(
    system: str,
    scenario: str,
    variant: str,
    per_s: float,
    repetition: int,
    role: str = "",
    **extra: float,
) -> Result:
    row = rate(system, scenario, variant, "cfg", 1000, 1000 / per_s, role, **extra)
    row.repetition = repetition
    return row


def _roundtrip(system: str, variant: str, p50: float, repetition: int, role: str = "") -> Result:
    latency = {"p50": p50, "p90": 2 * p50, "p99": 3 * p50, "mean": p50}
    return Result(
        system, "roundtrip", variant, "cfg", 100, 1.0, 100, 100.0, latency, role=role,
        repetition=repetition,
    )  # fmt: skip


def _drains(taskq: list[float], raw: list[float]) -> list[Result]:
    """taskq's headline drain and raw's ceiling, one pair per repetition."""
    rows = []
    for n, (ours, theirs) in enumerate(zip(taskq, raw, strict=True), start=1):
        rows.append(_rate("taskq", "drain", DRAIN, ours, n, "headline"))
        rows.append(_rate("raw", "drain", "prefetch 1000", theirs, n, "ceiling"))
    return rows


def test_a_single_repetition_is_reported_as_before() -> None:
    rows = _drains([2000], [1000])
    report.add_fractions(rows)
    assert repeat.aggregate(rows) == rows
    text = report.table(rows)
    assert "reps" not in text and DASH not in text
    assert "| 2,000 " in text and "| 2.00 " in text
    (target,) = [t for t in report.targets(rows) if t["target"].endswith("at prefetch 1000")]
    assert (target["ratio"], target["met"], target["repetitions"]) == (2.0, True, 1)
    assert report.measured_ratio(target) == "2.00x"


def test_every_figure_is_the_median_with_its_spread() -> None:
    rows = [
        _rate("taskq", "drain", DRAIN, per_s, n, "headline", worker_cpu_us=cpu, left_in_queue=left)
        for n, (per_s, cpu, left) in enumerate(
            [(9_000, 30.0, 0), (12_000, 50.0, 2), (10_000, 35.0, 0)], start=1
        )
    ] + [_roundtrip("taskq", "AMQP", p50, n, "headline") for n, p50 in enumerate([1, 3, 2], 1)]
    drain, roundtrip = repeat.aggregate(rows)
    assert drain.repetition == 0 and len(drain.runs) == 3
    assert drain.tasks_per_s == 10_000 and drain.extra["worker_cpu_us"] == 35.0
    assert drain.extra["left_in_queue"] == 2  # the worst repetition, not the median
    assert roundtrip.latency_ms == {"p50": 2, "p90": 4, "p99": 6, "mean": 2}
    text = report.table([drain, roundtrip])
    assert f"| 10,000 (9k{DASH}12k) " in text
    assert f"| 35 (30{DASH}50) " in text
    assert f"2.00 (1.00{DASH}3.00) / 4.00 (2.00{DASH}6.00) / 6.00 (3.00{DASH}9.00)" in text
    assert "| reps |" in text and "| 3/3 " in text


def test_ratios_are_taken_within_each_repetition() -> None:
    # per repetition: 1.0, 0.5, 2.0 (median 1.0); the ratio of the medians would be 200 / 150
    raw = _drains([100, 200, 300], [100, 400, 150])
    report.add_fractions(raw)
    rows = repeat.aggregate(raw)
    head = report.find(rows, "taskq", "drain", "headline")
    assert head is not None and head.tasks_per_s == 200
    assert head.fraction_of_ceiling == 1.0
    assert f"| 1.00 (0.50{DASH}2.00) " in report.table(rows)
    (target,) = [t for t in report.targets(rows) if t["target"].endswith("at prefetch 1000")]
    assert (target["ratio"], target["ratio_min"], target["ratio_max"]) == (1.0, 0.5, 2.0)
    assert target["met"] is True and target["repetitions"] == 3
    assert report.measured_ratio(target) == f"1.00x (0.50{DASH}2.00)"
    assert f"1.00x (0.50{DASH}2.00)" in report.versus_best(rows)


def test_a_failed_repetition_counts_in_no_figure() -> None:
    raw = _drains([100, 200, 300], [100, 100, 100])
    raw[2] = failed("taskq", "drain", DRAIN, "cfg", 1000, RuntimeError("worker died"), "headline")
    raw[2].repetition = 2
    report.add_fractions(raw)
    rows = repeat.aggregate(raw)
    head = report.find(rows, "taskq", "drain", "headline")
    assert head is not None and head.tasks_per_s == 200  # median of 100 and 300
    assert "| 2/3 " in report.table(rows)
    (target,) = [t for t in report.targets(rows) if t["target"].endswith("at prefetch 1000")]
    assert (target["ratio"], target["repetitions"]) == (2.0, 2)
    (note,) = row_notes(raw, 3)
    assert note.startswith(f"taskq drain [{DRAIN}] (repetition 2): failed")
    every = [failed("raw", "drain", "x", "cfg", 10, RuntimeError("no"), "ceiling") for _ in "ab"]
    every[1].repetition = 2
    (merged,) = repeat.aggregate(every)
    assert merged.failed and "failed" in report.table([merged])


def _issue27_run() -> list[Result]:
    """Three repetitions of every row issue 27 compares but the drain with 2 processes."""
    rows = []
    for n, (tq, dq_default, dq_tuned, raw) in enumerate(
        [(1.0, 3.0, 2.0, 1.0), (1.5, 1.0, 2.0, 2.0), (2.0, 2.5, 2.5, 4.0)], start=1
    ):
        rows += [
            _roundtrip("taskq", "AMQP results: delay() + result()", tq, n, "headline"),
            _roundtrip("taskq", "Redis results: delay() + result()", tq / 2, n, "redis"),
            _roundtrip("dramatiq", "default: Redis backend", dq_default, n, "default"),
            _roundtrip("dramatiq", "tuned: Redis backend", dq_tuned, n, "tuned"),
            _roundtrip("raw", "direct reply-to", raw, n, "ceiling"),
            _rate("taskq", "enqueue", "gather delay()", 1000, n, "headline"),
            _rate("taskq", "enqueue", "batch map()", 1000 + 200 * n, n, "batch"),
            _rate("taskq", "drain", DRAIN, 900 + 100 * n, n, "headline"),
            _rate("taskq", "drain", NO_REPLY, 1000, n, "no-reply"),
            _roundtrip("floor", rt_floor.VARIANTS["amqp"], 1.0, n, "floor"),
            _rate("floor", "enqueue", enqueue_floor.VARIANT, 2000, n, "floor"),
        ]
    return rows


def test_issue27_figures() -> None:
    rows = repeat.aggregate(_issue27_run())
    figures = {f["figure"]: f for f in issue27.figures(rows)}
    assert len(figures) == len(issue27.LATENCIES) + len(issue27.GOALS) + len(issue27.REFERENCES)

    taskq_ms = figures["round trip p50, AMQP results: taskq"]
    assert (taskq_ms["median"], taskq_ms["min"], taskq_ms["max"]) == (1.5, 1.0, 2.0)
    # Dramatiq's best is its lowest median p50: "default" (2.5 against 2.0) loses to "tuned"
    dramatiq = figures["round trip p50: Dramatiq's best (Redis results)"]
    assert (dramatiq["median"], dramatiq["detail"]) == (2.0, "tuned: Redis backend")

    # within each repetition, against "tuned": 1/2, 1.5/2, 2/2.5
    versus = figures["round trip p50, AMQP results: taskq / Dramatiq"]
    assert (versus["median"], versus["min"], versus["max"]) == (0.75, 0.5, 0.8)
    assert versus["goal"] == "<= 0.8" and versus["met"] is True
    versus_raw = figures["round trip p50, AMQP results: taskq / raw"]
    assert (versus_raw["median"], versus_raw["min"], versus_raw["max"]) == (0.75, 0.5, 1.0)
    assert versus_raw["met"] is True  # the goal is on the median
    redis = figures["round trip p50, Redis store: taskq / Dramatiq"]
    assert redis["median"] == 0.375 and redis["met"] is True

    batch = figures["enqueue: map() / gather of delay()"]
    assert (batch["median"], batch["min"], batch["max"]) == pytest.approx((1.4, 1.2, 1.6))
    assert batch["goal"] == ">= 1.2" and batch["met"] is True
    natural = figures["drain, --concurrency 1000: natural API / ignore_result"]
    assert (natural["median"], natural["min"], natural["max"]) == pytest.approx((1.1, 1.0, 1.2))
    assert natural["met"] is True

    two_processes = figures["drain, natural API: --processes 2 / 1 process"]
    assert two_processes["median"] is None and two_processes["met"] is None

    # The floors: against Dramatiq's best with the goal's bound, and for reference (no goal).
    floor = figures["round trip p50, floor of the AMQP hops / Dramatiq"]
    assert (floor["median"], floor["min"], floor["max"]) == (0.5, 0.4, 0.5)
    assert floor["met"] is True
    assert figures["round trip p50, floor of the Redis hops / Dramatiq"]["median"] is None
    ceiling = figures["enqueue: map() / the floor's bare publisher"]
    assert ceiling["median"] == pytest.approx(0.7) and ceiling["goal"] == ""
    assert ceiling["met"] is None and "2,000/s" in ceiling["detail"]

    text = issue27.section(list(figures.values()))
    assert text.startswith("## Issue 27 figures")
    taskq_cells = _cells(text, "round trip p50, AMQP results: taskq")
    assert taskq_cells[1] == f"1.50 ms (1.00{DASH}2.00)"
    met, goal, verdict = _cells(text, "round trip p50, AMQP results: taskq / Dramatiq")[1:]
    assert (met, goal) == (f"0.75x (0.50{DASH}0.80)", "<= 0.8")
    assert verdict.startswith("met: 1.50 / 4.50 ms vs dramatiq tuned: Redis backend")
    missing = _cells(text, "drain, natural API: --processes 2 / 1 process")
    assert missing[1:] == ["not measured", ">= 1", "not measured in this run"]


def test_issue27_goal_not_met_on_the_median() -> None:
    rows = repeat.aggregate(
        [
            row
            for n, per_s in enumerate([800, 950, 850], start=1)
            for row in (
                _rate("taskq", "drain", DRAIN, per_s, n, "headline"),
                _rate("taskq", "drain", NO_REPLY, 1000, n, "no-reply"),
            )
        ]
    )
    figures = {f["figure"]: f for f in issue27.figures(rows)}
    natural = figures["drain, --concurrency 1000: natural API / ignore_result"]
    assert (natural["median"], natural["max"]) == pytest.approx((0.85, 0.95))
    assert natural["met"] is False
    assert "NOT met" in issue27.table(list(figures.values()))
    assert figures["round trip p50, AMQP results: taskq"]["median"] is None


def test_workflows_over_repetitions() -> None:
    def run(chord: int, delay: float, celery: int | None) -> dict[str, object]:
        peers: dict[str, object] = {"dramatiq": {"failed": "TimeoutError"}}
        if celery:
            peers["celery"] = {
                "chord_tasks_per_s": celery,
                "callback_delay_ms_p50": 40.0,
                "chain_steps_per_s": 100,
            }
        return {
            "members": 50,
            "steps": 10,
            "fanout_tasks_per_s": 1000,
            "chord_tasks_per_s": chord,
            "chord_vs_fanout": chord / 1000,
            "callback_delay_ms_p50": delay,
            "chain_steps_per_s": 300,
            "peers": peers,
            "targets": {"callback delay p50 <= 50 ms": [delay, delay <= 50]},
        }

    runs = [run(800, 10.0, 200), {}, run(900, 60.0, None), run(1000, 20.0, 300)]
    rows = {r[0]: r[1:] for r in repeat.workflows_rows(runs)}
    assert rows["taskq chord tasks/s"] == [f"900 (800{DASH}1,000)", "3 of 4"]
    assert rows["celery chord tasks/s"] == [f"250 (200{DASH}300)", "2 of 4"]
    assert rows["dramatiq chord tasks/s"] == ["not measured", "0 of 4"]
    assert rows["target: callback delay p50 <= 50 ms"] == [
        f"20.00 (10.00{DASH}60.00)",
        "met in 2 of 3",
    ]
    assert report.workflows_repeated(runs).startswith("## Workflows (issue 22), 4 repetitions")
