"""One scenario's figures, the targets they are judged against, and the table and JSON."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class Row:
    """What one scenario run counted, for the tasks whose send was confirmed.

    ``None`` means "not measured here" (no callers waited) or "unknown" (recorded twice,
    when the store does not say).
    """

    scenario: str
    store: str
    confirmed: int = 0
    executed: int = 0
    lost: int = 0
    twice: int = 0
    extra_runs: int = 0
    allowed_twice: int = 0
    recorded_twice: int | None = None
    callers: int = 0
    without_result: int | None = None
    wrong_errors: int | None = None
    callback_runs: int | None = None
    """How many times a chord's callback ran (None: the scenario has no chord)."""
    settled: bool = True
    ran_after_cancel: int = 0
    """Cancelled tasks with a run that started after their cancel was confirmed."""
    notes: list[str] = dataclasses.field(default_factory=list)
    failures: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None
    prefix: str = ""
    """The run's prefix (every name it declared starts with it; all deleted at the end)."""
    worker_pids: list[int] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.error is None and not self.failures

    def judge(self) -> None:
        """Add the failed targets to ``failures``: 0 lost; executed twice no more than the
        deliveries in flight at the faults; with Redis, 0 recorded twice; every caller that
        waited got its result, and none got a wrong error; no cancelled task started after
        its cancel was confirmed; a chord's callback ran once."""
        checks = [
            (self.lost == 0, f"lost {self.lost}"),
            (self.twice <= self.allowed_twice,
             f"executed twice {self.twice} > {self.allowed_twice} in flight"),
            (self.store != "redis" or not self.recorded_twice,
             f"recorded twice {self.recorded_twice}"),
            (not self.without_result, f"callers without result {self.without_result}"),
            (not self.wrong_errors, f"callers with a wrong error {self.wrong_errors}"),
            (self.callback_runs in (None, 1), f"chord callback ran {self.callback_runs} times"),
            (self.settled, "did not settle before the deadline"),
            (not self.ran_after_cancel, f"started after the cancel {self.ran_after_cancel}"),
        ]  # fmt: skip
        self.failures.extend(message for ok, message in checks if not ok)

    def verdict(self) -> str:
        if self.error is not None:
            return "ERROR"
        if not self.passed:
            return "FAIL: " + "; ".join(self.failures)
        return "pass (recorded twice unknown)" if self._unknown_twice() else "pass"

    def _unknown_twice(self) -> bool:
        return self.store == "redis" and self.recorded_twice is None


HEADERS = [
    "scenario", "store", "tasks confirmed", "executed", "lost", "executed twice",
    "max allowed twice (in flight)", "recorded twice", "callers without result",
    "callers with a wrong error", "chord callback runs", "against targets",
]  # fmt: skip


def _cell(value: Any, absent: str = "n/a") -> str:
    return absent if value is None else str(value)


def cells(row: Row) -> list[str]:
    """The table cells of ``row``."""
    no_callers = "-" if not row.callers else "n/a"
    return [
        row.scenario, row.store, str(row.confirmed), str(row.executed), str(row.lost),
        str(row.twice), str(row.allowed_twice), _cell(row.recorded_twice),
        _cell(row.without_result, no_callers), _cell(row.wrong_errors, no_callers),
        _cell(row.callback_runs, "-"), row.verdict(),
    ]  # fmt: skip


LEGEND = (
    "Counted for every task whose send the broker confirmed. *Executed*: its body ran to the "
    "end (the tasks write each run to a ledger file outside taskq). *Max allowed twice*: the "
    "deliveries in flight at the faults (prefetch x live workers, summed over the faults). "
    "*Recorded twice*: Redis, tasks with more than one accepted terminal write (the store's "
    "`terminal_writes` field; n/a while the store does not count them); AMQP, tasks whose "
    "terminal state reached the caller more than once. *Callers*: one `result()` per task, "
    "awaited through the fault; a wrong error is anything but the result, `ResultTimeout` or "
    "`ResultUnavailable` (or, for a cancelled task, `TaskCancelled`). Targets: 0 lost (a "
    "cancelled task need not run); executed twice <= in flight; with Redis 0 recorded "
    "twice; 0 callers without result or with a wrong error; 5 of 5 poison messages parked "
    "with a reason and the worker still serving; no cancelled task started after its cancel "
    "was confirmed; a chord's callback run exactly once (its ledger lines), with every "
    "member's result in order (what its caller got)."
)


def markdown(rows: list[Row]) -> str:
    """The rows as a Markdown table, then each row's notes and errors, then the legend."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cells(row)) + " |" for row in rows]
    details = [
        f"- **{row.scenario}**: "
        + "; ".join([*row.notes, *([f"error: {row.error}"] if row.error else [])])
        for row in rows
        if row.notes or row.error
    ]
    return "\n".join([*lines, "", *details, "", LEGEND])


def header(machine: dict[str, Any], mode: str, seconds: float) -> str:
    """The line above the table: date, machine, versions, mode."""
    return (
        f"Fault suite ({mode}), {machine['date']}: {machine['cpu']} ({machine['cores']} cores), "
        f"RabbitMQ {machine['rabbitmq']}, Python {machine['python']} ({machine['loop']}), "
        f"{machine['platform']}; {seconds:.0f} s."
    )


def to_json(
    rows: list[Row], machine: dict[str, Any], options: dict[str, Any], seconds: float
) -> dict[str, Any]:
    """The whole run as JSON-ready data."""
    return {
        "machine": machine,
        "options": options,
        "seconds": round(seconds, 1),
        "passed": all(row.passed for row in rows),
        "rows": [{**dataclasses.asdict(row), "passed": row.passed} for row in rows],
    }
