"""What tests.apps.procapp's ``held`` tasks did, counted by task ID."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from taskq import App, TaskHandle
from tests.support import eventually


class RunLog:
    """The log that tests.apps.procapp's ``held`` tasks write, and the file that releases them.

    Every run of a ``held`` task appends ``start TASK_ID PID`` and, once released, ``end
    TASK_ID PID``: a test counts runs by task ID, whichever process ran them.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / "runs.log"
        self.release_path = directory / "release"

    def args(self, tag: int) -> tuple[str, str, int]:
        """The arguments of a ``held`` task that returns ``tag``."""
        return str(self.path), str(self.release_path), tag

    async def send(self, client: App, *tags: int) -> list[TaskHandle[Any]]:
        """Send one ``held`` task per tag, by name."""
        return [await client.send("held", *self.args(tag)) for tag in tags]

    async def wait_running(self, handles: Iterable[TaskHandle[Any]]) -> None:
        """Wait until the tasks of ``handles``, and no others, are running."""
        ids = {handle.id for handle in handles}

        async def running() -> bool:
            return self.running() == ids

        await eventually(running, what=f"{len(ids)} held task(s) running")

    async def wait_ended(self, runs: int) -> None:
        """Wait until ``runs`` runs in all have ended."""

        async def ended() -> bool:
            return sum(self.count("end").values()) == runs

        await eventually(ended, timeout=60, what=f"{runs} runs to end")

    def release(self) -> None:
        """Let every ``held`` task (running now or later) finish."""
        self.release_path.touch()

    def events(self) -> list[tuple[str, str, int]]:
        """``(event, task_id, pid)`` in the order written."""
        if not self.path.exists():
            return []
        lines = [line.split() for line in self.path.read_text().splitlines()]
        return [(event, task_id, int(pid)) for event, task_id, pid in lines]

    def count(self, event: str) -> dict[str, int]:
        """How many times each task ID logged ``event`` (``start`` or ``end``)."""
        counts: dict[str, int] = {}
        for logged, task_id, _ in self.events():
            if logged == event:
                counts[task_id] = counts.get(task_id, 0) + 1
        return counts

    def running(self) -> set[str]:
        """The task IDs with a run that started and has not ended."""
        starts, ends = self.count("start"), self.count("end")
        return {task_id for task_id, n in starts.items() if n > ends.get(task_id, 0)}
