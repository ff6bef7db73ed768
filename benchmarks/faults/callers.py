"""Callers that await their tasks' results through the faults, as a user's code would."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Collection, Sequence
from typing import Any

from taskq import ResultTimeout, ResultUnavailable, TaskCancelled, TaskHandle


@dataclasses.dataclass
class CallerCounts:
    """What the callers got: their result, no result, or something else (a wrong error)."""

    waited: int = 0
    with_result: int = 0
    without_result: int = 0
    wrong: int = 0
    wrong_examples: list[str] = dataclasses.field(default_factory=list)
    """Up to three different wrong outcomes, as text."""


class Callers:
    """One ``result()`` call per sent task, started right after the send."""

    def __init__(self) -> None:
        self._waits: list[tuple[asyncio.Future[Any], int, str]] = []

    def watch(self, handles: Sequence[TaskHandle[Any]], tags: Sequence[int]) -> None:
        """Start awaiting ``handles``, whose tasks return ``tags``."""
        for handle, tag in zip(handles, tags, strict=True):
            self._waits.append((asyncio.ensure_future(handle.result()), tag, handle.id))

    async def finish(self, grace: float, cancelled: Collection[str] = ()) -> CallerCounts:
        """Give the callers ``grace`` seconds more, then count; a caller still waiting then
        has no result (its wait is cancelled). The callers of ``cancelled`` tasks may get
        TaskCancelled instead of their result (which they get if the task ended first)."""
        futures = [future for future, *_ in self._waits]
        if futures:
            await asyncio.wait(futures, timeout=grace)
        counts = CallerCounts(waited=len(futures))
        for future, tag, task_id in self._waits:
            if not future.done():
                future.cancel()
                counts.without_result += 1
                continue
            got = _got(future, tag, task_id in cancelled)
            if got is None:
                counts.wrong += 1
                error = future.exception()
                example = repr(error) if error is not None else f"{future.result()!r} != {tag}"
                if len(counts.wrong_examples) < 3 and example not in counts.wrong_examples:
                    counts.wrong_examples.append(example)
            elif got:
                counts.with_result += 1
            else:
                counts.without_result += 1
        await asyncio.gather(*futures, return_exceptions=True)
        return counts

    async def abandon(self) -> None:
        """Stop every wait still going (the run is being torn down)."""
        for future, *_ in self._waits:
            future.cancel()
        await asyncio.gather(*(future for future, *_ in self._waits), return_exceptions=True)


def _got(future: asyncio.Future[Any], tag: int, may_be_cancelled: bool) -> bool | None:
    """Whether a finished wait got its outcome (its result ``tag``, or TaskCancelled where
    ``may_be_cancelled``), False for no outcome, None for a wrong one."""
    if future.cancelled() or isinstance(future.exception(), ResultTimeout | ResultUnavailable):
        return False
    error = future.exception()
    if error is None:
        return True if future.result() == tag else None
    return True if may_be_cancelled and isinstance(error, TaskCancelled) else None
