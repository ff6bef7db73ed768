"""How big each scenario is: the full run, or ``--short`` (the test command's, under 2 minutes)."""

from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Task counts, repetitions and deadlines of one suite run."""

    storm_tasks: int = 1000
    kills: int = 5
    seeds: int = 5
    """Seeds of the multi-queue scenario (random mixes)."""
    drop_runs: int = 3
    drop_tasks: int = 150
    restart_tasks: int = 300
    sent_during_outage: int = 20
    outage_tasks: int = 300
    cuts: int = 2
    cut_seconds: float = 3.0
    """How long each cut of the result store lasts (the fault's length, not a wait)."""
    node_kill_tasks: int = 5000
    node_kill_victims: tuple[int | None, ...] = (None, 1)
    """Nodes the node-kill runs SIGKILL, one run each: None is the work queue's leader, 1 the
    workers' node."""
    cancel_tasks: int = 1000
    """Tasks of the cancel storm (half of them cancelled)."""
    cancel_kills: int = 3
    """SIGKILLs of a worker while the cancel storm's cancels go on."""
    chord_members: int = 2000
    """Members of the chord that goes through kills and restarts (issue 22)."""
    chord_work: tuple[float, float] = (0.2, 0.6)
    """Seconds each member works (drawn in this range): members still run at the last fault."""
    fuzz_messages: int = 10_000
    """Messages the producer fuzz publishes (hypothesis draws them, seed 20)."""
    slow_seconds: tuple[float, float] = (4.0, 7.0)
    settle_timeout: float = 120.0
    grace: float = 15.0
    """Seconds callers get once nothing more can run, before a missing result counts."""
    redis: str = dataclasses.field(
        default_factory=lambda: os.environ.get("TASKQ_FAULTS_REDIS", "redis://127.0.0.1:6379/0")
    )
    """The shared Redis (only used, never stopped) for the SIGKILL storm's results."""


SHORT = {
    "storm_tasks": 300, "seeds": 2, "drop_runs": 1, "restart_tasks": 100,
    "sent_during_outage": 10, "outage_tasks": 150, "cuts": 1, "cut_seconds": 2.0,
    "node_kill_tasks": 500, "node_kill_victims": (None,), "slow_seconds": (2.0, 3.0),
    "settle_timeout": 45.0, "grace": 5.0, "fuzz_messages": 200, "cancel_tasks": 200,
    "cancel_kills": 1, "chord_members": 200, "chord_work": (1.0, 2.0),
}  # fmt: skip


def sizes(*, short: bool, tasks: int | None, seeds: int | None) -> Sizes:
    """The sizes for ``--short``; ``tasks`` sets every scenario's task count, ``seeds`` the
    multi-queue seeds and the connection-drop runs."""
    chosen = Sizes(**SHORT) if short else Sizes()
    if tasks is not None:
        chosen = dataclasses.replace(
            chosen, storm_tasks=tasks, drop_tasks=tasks, restart_tasks=tasks,
            outage_tasks=tasks, node_kill_tasks=tasks, cancel_tasks=tasks, chord_members=tasks,
        )  # fmt: skip
    if seeds is not None:
        chosen = dataclasses.replace(chosen, seeds=seeds, drop_runs=seeds)
    return chosen
