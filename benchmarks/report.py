"""What a run prints and writes: the table (with CPU per task), taskq against the best
configuration of each system, issue 10's targets as measured ratios, the configurations, and
the JSON / PNG files. With ``--repeat``, each figure is the median over the repetitions with
its min-max, and each ratio is taken within a repetition (``benchmarks.repeat``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from .harness import Result
from .repeat import (
    DASH,
    Spread,
    across,
    compact,
    rate,
    show,
    two,
    usable_runs,
    workflows_rows,
)

DRAINS = ("drain", "drain2")


def add_fractions(results: list[Result]) -> None:
    """Fill ``fraction_of_ceiling``: rate / raw rate, or raw p50 / p50 for latencies, against
    raw's "ceiling" row of the scenario in the same repetition (so 1.0 is the ceiling and lower
    is worse, always)."""
    ceilings = {
        (r.repetition, r.scenario): r
        for r in results
        if r.system == "raw" and r.role == "ceiling" and r.usable
    }
    for r in results:
        ceiling = ceilings.get((r.repetition, r.scenario))
        if ceiling is None or not r.usable:
            continue
        if r.p50 and ceiling.p50:
            r.fraction_of_ceiling = ceiling.p50 / r.p50
        elif r.tasks_per_s and ceiling.tasks_per_s:
            r.fraction_of_ceiling = r.tasks_per_s / ceiling.tasks_per_s


def header(meta: dict[str, Any]) -> str:
    """The machine line."""
    repeat = meta.get("args", {}).get("repeat", 1)
    repeated = (
        f"Each figure is the median of {repeat} repetitions (min-max), run interleaved (every "
        "system once, then again); each ratio is taken within a repetition, then its median "
        "(min-max) is shown. "
        if repeat > 1
        else ""
    )
    return (
        f"{meta['date']} - {meta['cores']} cores, RabbitMQ {meta['rabbitmq']}, Python "
        f"{meta['python']} ({meta['loop']}), {meta['platform']}. {meta.get('load', '')}"
        "'vs raw' = rate / raw aio-pika rate (prefetch 1000 for drains), or raw p50 / p50 "
        "for latency (1.00 = the ceiling). CPU us/task: worker process trees and RabbitMQ "
        "(beam.smp) from /proc, drains only. Completion signal: shared-memory counter, "
        f"{meta['counter_cost_ns']} ns/task. {repeated}"
    ).rstrip()


def render(rows: Sequence[Sequence[str]]) -> str:
    """An aligned Markdown table; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _figure(r: Result | None) -> str:
    if r is None:
        return "not run"
    if r.failed:
        return "failed"
    if r.p50 is not None:
        return "{p50:.2f} / {p99:.2f} ms".format(**(r.latency_ms or {}))
    return f"{r.tasks_per_s:,.0f}/s"


def table(results: list[Result]) -> str:
    """Every row measured (each variant's exact configuration: ``configurations``); rows
    aggregated over repetitions show each figure's median (min-max) and how many repetitions
    gave a usable figure."""
    total = len({run.repetition for r in results for run in r.runs})
    head = ["scenario", "system", "variant", "tasks", "tasks/s", "p50 / p90 / p99 ms"]
    rows = [[*head, "vs raw", "worker us/task", "broker us/task"]]
    if total:
        rows[0].insert(4, "reps")
    for r in results:
        lat = " / ".join(show(r, p, two) for p in ("p50", "p90", "p99")) if r.latency_ms else ""
        speed = "failed" if r.failed else show(r, "tasks_per_s", rate, compact)
        if r.invalid:
            speed += " (invalid: see the notes)"
        cells = [r.scenario, r.system, r.variant, str(r.tasks), speed, lat]
        cells += [show(r, "fraction_of_ceiling", two)]
        cells += [show(r, name, rate) for name in ("worker_cpu_us", "broker_cpu_us")]
        if total:
            cells.insert(4, f"{len(usable_runs(r))}/{total}")
        rows.append(cells)
    return render(rows)


# -- taskq against the best of each ------------------------------------------------------------


def find(
    results: list[Result],
    system: str,
    scenario: str,
    role: str | None = None,
    variant: str | None = None,
) -> Result | None:
    """The measured row of ``system`` in ``scenario`` with ``role`` and/or ``variant`` (its
    label in the table); None: not run, failed or invalid."""
    return next(
        (
            r
            for r in results
            if (r.system, r.scenario) == (system, scenario)
            and role in (None, r.role)
            and variant in (None, r.variant)
            and r.usable
        ),
        None,
    )


def best(results: list[Result], system: str, scenario: str) -> Result | None:
    """The best valid configuration of ``system`` in ``scenario``: highest rate, or lowest p50
    (failed and invalid rows never count)."""
    rows = [r for r in results if r.system == system and r.scenario == scenario and r.usable]
    if not rows:
        return None
    if scenario == "roundtrip":
        return min(rows, key=lambda r: r.p50 or float("inf"))
    return max(rows, key=lambda r: r.tasks_per_s or 0.0)


def _ratio(taskq: Result, other: Result) -> float | None:
    """taskq / other for rates, other p50 / taskq p50 for latencies: > 1 means taskq is ahead."""
    if taskq.p50 and other.p50:
        return other.p50 / taskq.p50
    if taskq.tasks_per_s and other.tasks_per_s:
        return taskq.tasks_per_s / other.tasks_per_s
    return None


def versus_best(results: list[Result]) -> str:
    """taskq's headline row of each scenario against each system's best configuration."""
    systems = [s for s in dict.fromkeys(r.system for r in results) if s != "taskq"]
    rows = [
        [
            "scenario",
            "taskq (headline)",
            *(f"best {s}" for s in systems),
            *(f"taskq / {s}" for s in systems),
        ]
    ]
    for scenario in dict.fromkeys(r.scenario for r in results):
        head = find(results, "taskq", scenario, "headline")
        if head is None or scenario == "memory":
            continue
        bests = [best(results, s, scenario) for s in systems]
        rows.append(
            [
                scenario,
                _figure(head),
                *(f"{_figure(b)} ({b.variant})" if b else "not run" for b in bests),
                *(ratio_text(across(head, b, _ratio)) if b else "" for b in bests),
            ]
        )
    return render(rows) if len(rows) > 1 else "(no taskq headline rows in this run)"


def ratio_text(spread: Spread | None) -> str:
    """A ratio over the repetitions: ``1.23x`` or ``1.23x (1.10-1.40)``."""
    return "" if spread is None else spread.text(lambda v: f"{v:.2f}x", two)


# -- issue 10's targets ------------------------------------------------------------------------

Pick = Callable[[list[Result]], Result | None]


def row(system: str, scenario: str, role: str) -> Pick:
    """The row of ``system`` in ``scenario`` with ``role``."""
    return lambda results: find(results, system, scenario, role)


def labelled(system: str, scenario: str, variant: str) -> Pick:
    """The row of ``system`` in ``scenario`` with ``variant`` (its label in the table)."""
    return lambda results: find(results, system, scenario, variant=variant)


def best_of(system: str, scenario: str) -> Pick:
    """The best configuration of ``system`` in ``scenario`` (``best``)."""
    return lambda results: best(results, system, scenario)


@dataclasses.dataclass(frozen=True)
class Target:
    """One target (of issue 10, or 27): ``ours`` against ``theirs``, as the ratio the issue
    states. Which rows are compared is decided on the run's rows (with ``--repeat``, the
    medians: a peer's best is its best median); the ratio is taken within each repetition."""

    text: str
    ours: Pick
    theirs: Pick
    at_least: float | None = None  # rate ratio ours / theirs must be >= this
    at_most: float | None = None  # p50 ratio ours / theirs must be <= this

    @property
    def goal(self) -> str:
        """The bound the median ratio must meet: ``>= 1.25`` or ``<= 0.8``."""
        if self.at_most is not None:
            return f"<= {self.at_most:g}"
        return f">= {self.at_least or 0:g}"

    def met(self, ratio: float) -> bool:
        """Whether ``ratio`` meets the target."""
        if self.at_most is not None:
            return ratio <= self.at_most
        return ratio >= (self.at_least or 0)

    def measure(self, results: list[Result]) -> tuple[Spread | None, str]:
        """The ratio over the repetitions and the verdict on its median (None and why, when
        a row was not measured)."""
        ours, theirs = self.ours(results), self.theirs(results)
        if ours is None or theirs is None:
            return None, "not measured in this run"
        compare = _p50_ratio if self.at_most is not None else _rate_ratio
        spread = across(ours, theirs, compare)
        if spread is None:
            return None, "not measured in the same repetition"
        return spread, _verdict(self.met(spread.median), ours, theirs)

    def figures(self, results: list[Result]) -> dict[str, Any]:
        """The target as JSON: its ratio (median, min, max, repetitions), met, the detail."""
        spread, verdict = self.measure(results)
        return {
            "target": self.text,
            "goal": self.goal,
            "ratio": None if spread is None else round(spread.median, 3),
            "ratio_min": None if spread is None else round(spread.low, 3),
            "ratio_max": None if spread is None else round(spread.high, 3),
            "repetitions": 0 if spread is None else spread.count,
            "met": None if spread is None else verdict.startswith("met"),
            "detail": verdict,
        }


def _p50_ratio(ours: Result, theirs: Result) -> float:
    return (ours.p50 or 0) / (theirs.p50 or float("inf"))


def _rate_ratio(ours: Result, theirs: Result) -> float:
    return (ours.tasks_per_s or 0) / (theirs.tasks_per_s or float("inf"))


def compared(ours: Result, theirs: Result) -> str:
    """The two rows a ratio compares: ``12,518/s vs floor <variant>: 14,383/s``."""
    return f"{_figure(ours)} vs {theirs.system} {theirs.variant}: {_figure(theirs)}"


def _verdict(met: bool, ours: Result, theirs: Result) -> str:
    return f"{'met' if met else 'NOT met'}: {compared(ours, theirs)}"


TARGETS = [
    Target(
        "drain, 1 process: >= 1.25x Dramatiq's best 1-process configuration",
        row("taskq", "drain", "headline"),
        best_of("dramatiq", "drain"),
        at_least=1.25,
    ),
    Target(
        "drain, 1 process: >= 1.0x raw aio-pika at prefetch 1000",
        row("taskq", "drain", "headline"),
        row("raw", "drain", "ceiling"),
        at_least=1.0,
    ),
    Target(
        "drain, --processes 2: >= 1.1x Dramatiq's best 2-process configuration",
        row("taskq", "drain2", "headline"),
        best_of("dramatiq", "drain2"),
        at_least=1.1,
    ),
    Target(
        "enqueue: gather of delay() >= 0.9x raw pipelined confirms",
        row("taskq", "enqueue", "headline"),
        row("raw", "enqueue", "ceiling"),
        at_least=0.9,
    ),
    Target(
        "enqueue: map() >= gather of delay() (a batch is never slower than its parts)",
        row("taskq", "enqueue", "batch"),
        row("taskq", "enqueue", "headline"),
        at_least=1.0,
    ),
    Target(
        "round trip p50 (AMQP results) <= Dramatiq's with its Redis backend",
        row("taskq", "roundtrip", "headline"),
        best_of("dramatiq", "roundtrip"),
        at_most=1.0,
    ),
    Target(
        "round trip p50 (AMQP results) <= 1.2x raw direct reply-to",
        row("taskq", "roundtrip", "headline"),
        row("raw", "roundtrip", "ceiling"),
        at_most=1.2,
    ),
    Target(
        "fan-out of 5,000 with results (AMQP) >= 1.3x Dramatiq",
        row("taskq", "fanout", "headline"),
        best_of("dramatiq", "fanout"),
        at_least=1.3,
    ),
    Target(
        "Redis store: fan-out >= Dramatiq's Redis fan-out",
        row("taskq", "fanout", "redis"),
        best_of("dramatiq", "fanout"),
        at_least=1.0,
    ),
    Target(
        "Redis store: round trip p50 <= 1.2x Dramatiq's",
        row("taskq", "roundtrip", "redis"),
        best_of("dramatiq", "roundtrip"),
        at_most=1.2,
    ),
    Target(
        "--concurrency 1000 no slower than --concurrency 64 (drain, 1 process)",
        row("taskq", "drain", "headline"),
        row("taskq", "drain", "c64"),
        at_least=1.0,
    ),
    Target(
        "--concurrency 1000 no slower than --concurrency 64 (drain, 2 processes)",
        row("taskq", "drain2", "headline"),
        row("taskq", "drain2", "c64"),
        at_least=1.0,
    ),
    Target(
        "moonshot: drain, 1 process, >= 1.5x raw aio-pika (prefetch 1000)",
        row("taskq", "drain", "headline"),
        row("raw", "drain", "ceiling"),
        at_least=1.5,
    ),
]

RSS_FLAT = 0.05  # "flat": RSS after N tasks within 5 % of RSS after N/2


def targets(results: list[Result]) -> list[dict[str, Any]]:
    """Each target of issue 10 with its measured ratio and whether it is met."""
    out = [target.figures(results) for target in TARGETS]
    memory = find(results, "taskq", "memory", "headline")
    text = f"worker RSS flat over 200,000 tasks (N/2 -> N within {RSS_FLAT:.0%})"
    if memory is None:
        out.append(
            {
                "target": text,
                "ratio": None,
                "met": None,
                "detail": "not measured in this run (python -m benchmarks --tasks 200000 --systems "
                "taskq --scenarios memory)",
            }
        )
    else:
        growth = memory.extra["growth_half_to_end"]
        out.append(
            {
                "target": text,
                "ratio": round(1 + growth, 3),
                "met": growth <= RSS_FLAT and memory.tasks >= 200_000,
                "detail": f"RSS kB {memory.extra['rss_kb']} over {memory.tasks} tasks",
            }
        )
    return out


def measured_ratio(t: dict[str, Any]) -> str:
    """A target's ratio as JSON'd by ``Target.figures``: ``1.23x`` or ``1.23x (1.10-1.40)``."""
    if t["ratio"] is None:
        return ""
    if t.get("repetitions", 1) < 2:
        return f"{t['ratio']:.2f}x"
    return f"{t['ratio']:.2f}x ({t['ratio_min']:.2f}{DASH}{t['ratio_max']:.2f})"


def targets_table(rows: list[dict[str, Any]]) -> str:
    """Issue 10's targets, each with its measured ratio and verdict."""
    lines = [["target (issue 10)", "measured ratio", "verdict"]]
    for t in rows:
        lines.append([t["target"], measured_ratio(t), t["detail"]])
    return render(lines)


def configurations(configs: dict[str, list[str]]) -> str:
    """Each system's exact configurations, one bullet each."""
    return "\n".join(
        f"- **{system}**\n" + "\n".join(f"  - {c}" for c in lines)
        for system, lines in configs.items()
    )


def workflows_repeated(runs: Sequence[dict[str, Any]]) -> str:
    """The workflows scenario of several repetitions (``repeat.workflows_rows``), each
    repetition's figures in the JSON."""
    measured = [figures for figures in runs if figures]
    if not measured:
        return ""
    return (
        f"## Workflows (issue 22), {len(runs)} repetitions: a chord of "
        f"{measured[0]['members']:,} no-op members, a chain of {measured[0]['steps']:,} steps\n\n"
        "Each figure: the median (min-max) of the repetitions that measured it; each target's "
        f"ratio is taken within a repetition.\n\n{render(workflows_rows(runs))}\n"
    )


def document(results: list[Result], meta: dict[str, Any], sections: str = "") -> str:
    """The whole Markdown report of one run (``sections``: Markdown put after the targets)."""
    notes = "".join(f"\n- {n}" for n in meta["notes"])
    return (
        f"{header(meta)}\n\n## Every row\n\n{table(results)}\n\n"
        f"## taskq against the best configuration of each system\n\n"
        f"Ratios > 1: taskq is ahead (rates: taskq / best; latency: best p50 / taskq p50)."
        f"\n\n{versus_best(results)}\n\n## Targets of issue 10\n\n"
        f"{targets_table(meta['targets'])}\n\n{sections}## Configurations\n\n"
        f"{configurations(meta['configurations'])}\n" + (f"\n## Notes\n{notes}\n" if notes else "")
    )


def to_json(results: list[Result], meta: dict[str, Any]) -> dict[str, Any]:
    return {"machine": meta, "results": [dataclasses.asdict(r) for r in results]}


def plot(results: list[Result], meta: dict[str, Any], path: str) -> None:
    """Bars of tasks/s per system per scenario, and round-trip latency percentiles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    throughput = [
        r
        for r in results
        if r.latency_ms is None and r.tasks_per_s and r.scenario != "memory" and r.usable
    ]
    lat = [
        r for r in results if r.latency_ms is not None and r.scenario == "roundtrip" and r.usable
    ]
    groups = list(dict.fromkeys(r.scenario for r in throughput))
    fig, axes = plt.subplots(1, 2, figsize=(26, 8), gridspec_kw={"width_ratios": [4, 1]})
    ax = axes[0]
    systems = list(dict.fromkeys(r.system for r in results))
    colors = dict(zip(systems, plt.cm.tab10.colors, strict=False))  # type: ignore[attr-defined]
    x = 0.0
    ticks, labels = [], []
    for group in groups:
        rows = [r for r in throughput if r.scenario == group]
        start = x
        for r in rows:
            ax.bar(
                x,
                r.tasks_per_s,
                color=colors[r.system],
                width=0.8,
                label=r.system if r.system not in ax.get_legend_handles_labels()[1] else None,
            )
            ax.text(
                x,
                (r.tasks_per_s or 0) * 1.01,
                f"{(r.tasks_per_s or 0) / 1000:.1f}k\n{r.variant[:38]}",
                ha="center",
                va="bottom",
                fontsize=5.5,
                rotation=90,
            )
            x += 1
        ticks.append((start + x - 1) / 2)
        labels.append(group)
        x += 1.2
    ax.set_xticks(ticks, labels)
    ax.set_ylabel("tasks/s (higher is better)")
    top = max((r.tasks_per_s or 0) for r in throughput) if throughput else 1
    ax.set_ylim(0, top * 1.6)
    ax.legend(loc="upper right")
    ax.set_title("throughput, no-op tasks, persistent messages")
    ax2 = axes[1]
    for i, r in enumerate(lat):
        assert r.latency_ms is not None
        ax2.bar(i - 0.2, r.latency_ms["p50"], width=0.4, color=colors[r.system])
        ax2.bar(i + 0.2, r.latency_ms["p99"], width=0.4, color=colors[r.system], alpha=0.5)
        ax2.text(
            i,
            r.latency_ms["p99"],
            f"p50 {r.latency_ms['p50']:.2f}\np99 {r.latency_ms['p99']:.2f}",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax2.set_xticks(range(len(lat)), [f"{r.system}\n{r.role}" for r in lat], fontsize=7)
    ax2.set_ylabel("ms (lower is better; solid p50, light p99)")
    ax2.set_title("round trip, one task at a time")
    if lat:
        ax2.set_ylim(0, max(r.latency_ms["p99"] for r in lat if r.latency_ms) * 1.3)
    fig.suptitle(
        f"taskq benchmarks - {meta['cores']} cores, RabbitMQ {meta['rabbitmq']}, "
        f"Python {meta['python']}, {meta['date'][:10]} (shared machine: noisy)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
