"""The Periodic page's data (issue 26): each periodic entry of the App with its schedule, its
arguments, its last and next firing, and the active scheduler; and *Run now*.

Everything shown comes from what the schedulers publish (taskq.periodic.status: the copy of
their state record in ``{prefix}.beat.status`` and the consumers of the lease queue), read
when the page asks: the dashboard keeps nothing of it. *Run now* sends an entry's task at
once, with its arguments, under a task ID of its own (taskq.periodic.entry.run_now_id): it
never equals a scheduled firing's ID, so a durable result store never takes it for a tick
that already ran, and two runs are two tasks. It does not move the entry's schedule.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

from ..app import App
from ..events import REPR_WIDTH
from ..periodic.entry import run_now_id
from ..periodic.status import read_status
from ..task import args_repr

log = logging.getLogger("taskq.dashboard")


class Periodic:
    """The periodic entries of one open App, as its schedulers last published them."""

    def __init__(self, app: App) -> None:
        self.app = app
        # A peek takes the record off the status queue until it puts it back: a second peek
        # meanwhile would find the queue empty (and show no scheduler).
        self._peeking = asyncio.Lock()

    async def status(self) -> dict[str, Any]:
        """``taskq beat list --json``'s answer, each entry with its ``task`` and its ``args``
        (redacted as the dashboard shows any task's arguments: taskq.redact.call_repr).
        BrokerError if the broker cannot be asked."""
        entries = self.app.periodic_entries
        async with self._peeking:
            status = await read_status(self.app.transport, self.app.names, entries,
                                       dt.datetime.now(dt.UTC))  # fmt: skip
        for row in status["entries"]:
            entry = entries[row["name"]]
            row["task"] = entry.task.name
            row["args"] = args_repr(entry.task, entry.args, entry.kwargs, REPR_WIDTH)
        return status

    async def run_now(self, name: str) -> str | None:
        """Send entry ``name``'s task now (see the module doc): its task ID, or None if the
        App has no such entry. BrokerError (PublishError...) if it cannot be sent."""
        entry = self.app.periodic_entries.get(name)
        if entry is None:
            return None
        call = entry.task.options(task_id=run_now_id(entry.name))
        handle = await call.delay(*entry.args, **entry.kwargs)
        log.info("periodic entry %s run now as task %s", name, handle.id)
        return handle.id
