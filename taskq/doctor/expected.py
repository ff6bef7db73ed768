"""What the App expects of the broker: its queues with their arguments, its tasks' timeouts.
Built from the App's settings and tasks with taskq.topology, so it is what the App declares."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from .. import topology
from ..app import App


@dataclasses.dataclass(frozen=True, slots=True)
class Expected:
    """The App's side of the comparison (pure data)."""

    prefix: str
    work_queues: tuple[str, ...]
    """Full names of the App's work queues (the default, its tasks', ``--queue`` names)."""
    arguments: Mapping[str, Mapping[str, Any]]
    """Arguments the App declares, by full queue name: work, ``.dead`` and delay queues."""
    task_timeouts: Mapping[str, tuple[str, float | None]]
    """``task name -> (full work queue name, timeout in seconds or None: unbounded)``."""
    old_delay_levels: tuple[str, ...] = ()
    """The binary delay levels of taskq before issue 25 (no longer declared; messages sent
    before an upgrade may still wait there)."""

    @property
    def hold_queues(self) -> tuple[str, ...]:
        """Full names of the hold queues of the work queues (delayed tasks due soon)."""
        inside = f"{self.prefix}.q."
        return tuple(f"{self.prefix}.hold.{name.removeprefix(inside)}" for name in self.work_queues)

    @property
    def dead_queues(self) -> tuple[str, ...]:
        """Full names of the ``.dead`` queues of the work queues."""
        return tuple(f"{name}.dead" for name in self.work_queues)

    def is_work_queue(self, name: str) -> bool:
        """Whether ``name`` is a work queue of the prefix (also one the App does not list,
        e.g. a partition of a partitioned queue)."""
        inside = f"{self.prefix}.q."
        return name.startswith(inside) and not name.endswith(".dead")

    def is_dead_queue(self, name: str) -> bool:
        """Whether ``name`` is a ``.dead`` queue of the prefix."""
        return name.startswith(f"{self.prefix}.q.") and name.endswith(".dead")

    def owns(self, name: str) -> bool:
        """Whether ``name`` is a work, dead-letter, hold or delay queue of the prefix (the
        base-16 ``{p}.delay16.`` queues, and the binary ``{p}.delay.`` levels of older
        versions)."""
        return name.startswith(
            (f"{self.prefix}.q.", f"{self.prefix}.delay", f"{self.prefix}.hold.")
        )


def expected_of(app: App, extra_queues: Iterable[str] = ()) -> Expected:
    """What ``app`` declares for its default queue, its tasks' queues and ``extra_queues``."""
    settings, names = app.settings, app.names
    short = sorted(
        {settings.default_queue, *extra_queues, *(t.config.queue for t in app.tasks.values())}
    )
    arguments: dict[str, Mapping[str, Any]] = {}
    for queue in short:
        arguments[names.work_queue(queue)] = topology.work_queue_arguments(
            names,
            queue,
            max_priority=settings.max_priority,
            queue_type=settings.queue_type_of(queue),
        )
        arguments[names.dead_queue(queue)] = topology.dead_queue_arguments(
            settings.queue_type_of(queue)
        )
        arguments[names.hold_queue(queue)] = topology.hold_queue_arguments(
            names, queue, settings.queue_type_of(queue)
        )
    plan = topology.DELAY.declarations(names, quorum=settings.any_quorum)
    arguments.update(plan.queues)
    timeouts = {
        task.name: (
            names.work_queue(task.config.queue),
            task.config.timeout or settings.task_timeout,
        )
        for task in app.tasks.values()
    }
    old = tuple(topology.LEGACY_DELAY.queue_names(names))
    work = tuple(names.work_queue(q) for q in short)
    return Expected(names.prefix, work, arguments, timeouts, old_delay_levels=old)
