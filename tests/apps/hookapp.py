"""An App with a hook that writes what it saw to a file, for the cross-process hook tests.

Settings come from the environment (``tests.support.WorkerProcess`` sets ``TASKQ_PREFIX`` and
``TASKQ_BROKER``); ``HOOK_LOG`` names the file the hook appends JSON lines to.
"""

from __future__ import annotations

import json
import os
from typing import Any

from taskq import App, Hook, Retry, TaskDone, TaskRun, Worker, current
from tests.apps import noise

app = App("hookapp")
noise.register(app)

TRACE = "traceparent"  # the header a client hook adds (a W3C trace context)


class FileHook(Hook):
    """Appends one JSON line per call: the method, and what it saw."""

    def _write(self, method: str, **fields: Any) -> None:
        path = os.environ.get("HOOK_LOG")
        if path:
            with open(path, "a", encoding="utf-8") as log:
                log.write(json.dumps({"method": method, "pid": os.getpid(), **fields}) + "\n")

    def on_process_init(self) -> None:
        self._write("on_process_init")

    async def on_worker_start(self, worker: Worker) -> None:
        self._write("on_worker_start", worker=worker.name)

    async def before_run(self, run: TaskRun) -> None:
        if run.envelope.task_name != noise.NOISE_TASK:
            self._write(
                "before_run",
                task=run.envelope.task_name,
                attempt=run.context.attempt,
                headers=dict(run.headers),
                current=current().task_id == run.envelope.task_id,
            )

    async def after_run(self, run: TaskRun) -> None:
        if run.envelope.task_name != noise.NOISE_TASK:
            exception = None if run.exception is None else type(run.exception).__name__
            self._write("after_run", task=run.envelope.task_name, exception=exception)

    async def on_success(self, done: TaskDone) -> None:
        if done.envelope.task_name != noise.NOISE_TASK:
            self._write("on_success", task=done.envelope.task_name, result=done.result)


app.add_hook(FileHook())


@app.task
async def traced() -> dict[str, Any]:
    """The headers the task sees in its own context."""
    return dict(current().headers)


@app.task
async def traced_retry() -> int:
    """Retried once at once: the second attempt must still carry the sent headers."""
    if current().attempt == 1:
        raise Retry(delay=0)
    return current().attempt
