"""What a worker asks before a limited task starts: its rate limit, then its concurrency slot.

The limits in force for a task are the ones it was declared with (``@app.task(rate_limit=,
concurrency_limit=)``), unless a runtime change (:mod:`.changes`) replaced them. Only tasks
with a limit in force are in :attr:`Gate.limited`, so a task without one costs the executor
one dictionary lookup.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigurationError
from ..topology import Names
from ..transport import Transport
from .changes import LimitChange
from .concurrency import ConcurrencyLimit, Slot, Slots
from .rate import Limiter, RateLimit

if TYPE_CHECKING:
    from ..task import Task


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """The limits in force for one task."""

    rate: RateLimit | None = None
    concurrency: ConcurrencyLimit | None = None


def declared_limits(
    fn: Callable[..., Any], rate: str | None, limit: int | None, key: Callable[..., Any] | None
) -> dict[str, Any]:
    """The TaskConfig fields of the limits ``@app.task`` declares for ``fn`` (none: empty);
    ConfigurationError if one is malformed."""
    fields: dict[str, Any] = {}
    if rate is not None:
        fields["rate_limit"] = RateLimit.parse(rate)
    if limit is not None or key is not None:
        if limit is None:
            raise ConfigurationError("concurrency_key needs a concurrency_limit")
        fields["concurrency"] = ConcurrencyLimit.of(limit, key, fn)
    return fields


class Gate:
    """Admits the starts of one worker's limited tasks."""

    def __init__(
        self, transport: Transport, names: Names, tasks: Mapping[str, Task[Any, Any]]
    ) -> None:
        self.rates = Limiter(transport, names)
        self.slots = Slots(transport, names)
        self._declared = {
            name: Limits(task.config.rate_limit, task.config.concurrency)
            for name, task in tasks.items()
        }
        self.limited: dict[str, Limits] = {}
        """The tasks with a limit in force, by name."""
        self._changes: dict[str, LimitChange] = {}
        for name in self._declared:
            self._refresh(name)

    def change(self, change: LimitChange) -> None:
        """Apply a runtime change (the last one read for a task wins)."""
        if change.task not in self._declared:
            return  # a task this worker does not run
        prior = self._changes.get(change.task) or LimitChange(change.task)
        self._changes[change.task] = prior.then(change)
        self._refresh(change.task)

    def _refresh(self, name: str) -> None:
        declared = self._declared[name]
        change = self._changes.get(name)
        limits = declared if change is None else change.applied_to(declared)
        if limits.rate is None and limits.concurrency is None:
            self.limited.pop(name, None)
        else:
            self.limited[name] = limits

    async def admit(
        self, task: Task[Any, Any], limits: Limits, call: tuple[tuple[Any, ...], dict[str, Any]]
    ) -> Slot | float | None:
        """May ``task`` start now? None or a Slot to free after the run (yes), or the seconds
        to defer it by. ``call``: the task's validated arguments (for its key)."""
        slot = None
        if limits.concurrency is not None:
            key = limits.concurrency.key_of(task.signature.inspected, *call)
            got = await self.slots.acquire(task.name, limits.concurrency.limit, key)
            if not isinstance(got, Slot):
                return got
            slot = got
        if limits.rate is not None:
            wait = await self.rates.admit(task.name, limits.rate)
            if wait is not None:
                if slot is not None:
                    await self.slots.release(slot)
                return wait
        return slot
