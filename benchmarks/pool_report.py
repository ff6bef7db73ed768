"""The report of benchmarks/pool.py: Markdown tables (no-op, CPU-bound with the speed-up of 2
processes over 1, the shutdown figure), the configurations, and the JSON."""

from __future__ import annotations

import dataclasses
from typing import Any

from .harness import Result

HEADER = (
    "| system | configuration | processes | tasks | tasks/s | drain s | wall s | "
    "worker CPU µs/task |{extra}\n"
    "|---|---|---|---|---|---|---|---|{rule}"
)


def speedups(rows: list[Result]) -> dict[str, float]:
    """family -> tasks/s with 2 processes over tasks/s with 1, for the CPU-bound rows."""
    rates: dict[str, dict[int, float]] = {}
    for r in rows:
        if r.scenario == "cpu" and r.usable and r.tasks_per_s:
            rates.setdefault(r.role, {})[r.extra["processes"]] = r.tasks_per_s
    return {f: by[2] / by[1] for f, by in rates.items() if 1 in by and 2 in by}


def _line(r: Result, speedup: str | None) -> str:
    extra = "" if speedup is None else f" {speedup} |"
    if r.failed:
        error = r.extra.get("error")
        return f"| {r.system} | {r.variant} | | {r.tasks} | failed: {error} |||||{extra}"
    wall = r.seconds + r.extra["startup_s"]
    cpu = r.extra.get("worker_cpu_us")
    rate = f"{r.tasks_per_s:,.1f}" + (" (invalid)" if r.invalid else "")
    return (
        f"| {r.system} | {r.variant} | {r.extra['processes']} | {r.tasks} | {rate} | "
        f"{r.seconds:.2f} | {wall:.2f} | {'' if cpu is None else f'{cpu:,.0f}'} |{extra}"
    )


def table(rows: list[Result], group: str) -> str:
    """The rows of one group; the CPU-bound group with its speed-ups."""
    cpu = group == "cpu"
    ratios = speedups(rows) if cpu else {}
    lines = [HEADER.format(extra=" speed-up 2 vs 1 |" if cpu else "", rule="---|" if cpu else "")]
    for r in rows:
        if r.scenario != group:
            continue
        speedup = None
        if cpu:
            ratio = ratios.get(r.role)
            speedup = f"{ratio:.2f}x" if ratio and r.extra.get("processes") == 2 else ""
        lines.append(_line(r, speedup))
    return "\n".join(lines)


def shutdown_text(shutdown: dict[str, Any] | None) -> str:
    """The shutdown measurement: every try, then min / median / max."""
    if not shutdown:
        return "Not measured (--shutdown-repeats 0)."
    tries = ", ".join(
        f"{t['seconds']:.2f} s (exit {t['exit_code']}, {t['pool_processes_left']} of "
        f"{t['pool_processes']} pool processes left)"
        for t in shutdown["tries"]
    )
    verdict = "within" if shutdown["within_bound"] else "NOT within"
    return (
        f"`{shutdown['command']}`, a task in `time.sleep(3600)`, then SIGTERM; time from the "
        f"signal to the worker's exit, {len(shutdown['tries'])} tries: min "
        f"{shutdown['min_s']:.2f} s, median {shutdown['median_s']:.2f} s, max "
        f"{shutdown['max_s']:.2f} s ({verdict} the bound of {shutdown['bound_s']:g} s = "
        f"--shutdown-timeout + 2 s); pool processes alive after the exit: "
        f"{shutdown['pool_processes_left']}. Tries: {tries}."
    )


def document(rows: list[Result], shutdown: dict[str, Any] | None, meta: dict[str, Any]) -> str:
    """The whole report, in Markdown."""
    args = meta["args"]
    parts = [
        "# Plain `def` tasks: thread and process pools, Celery prefork, Dramatiq processes",
        "",
        f"{meta['date']}; {meta['cores']} cores ({meta['platform']}), Python {meta['python']} "
        f"({meta['loop']}), RabbitMQ {meta['rabbitmq']} on the same host; run took "
        f"{meta['duration_s']:.0f} s.",
        "",
        f"- load at the start: `{meta['load_start']}`",
        f"- load at the end: `{meta['load_end']}`",
        "",
        "Each row: the tasks queued first, then the workers started. tasks/s = tasks / drain s, "
        "drain = first task done to last task done (CPU-bound: first task started to last "
        "done); wall = worker start to the last task done (imports, pool start, connect "
        "included). Worker CPU per task: the worker and every process under it.",
        "",
        f"## No-op, {args['tasks']} tasks",
        "",
        table(rows, "no-op"),
        "",
        f"## CPU-bound, {args['cpu_tasks']} tasks of {args['iterations']:,} additions",
        "",
        table(rows, "cpu"),
        "",
        "## Shutdown with a stuck pool process",
        "",
        shutdown_text(shutdown),
        "",
        "## Configurations",
        "",
        *[f"- {r.system} {r.scenario} [{r.variant}]: {r.config}" for r in rows],
    ]
    if meta["notes"]:
        parts += ["", "## Notes", "", *[f"- {n}" for n in meta["notes"]]]
    return "\n".join(parts) + "\n"


def to_json(
    rows: list[Result], shutdown: dict[str, Any] | None, meta: dict[str, Any]
) -> dict[str, Any]:
    """Every figure: the machine and loads, every row, the speed-ups, the shutdown tries."""
    return {
        "machine": meta,
        "results": [dataclasses.asdict(r) for r in rows],
        "speedups": {f: round(v, 3) for f, v in speedups(rows).items()},
        "shutdown": shutdown,
    }
