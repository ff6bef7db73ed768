"""Sentry reporting of task failures: a worker hook.

Needs ``pip install 'taskq[sentry]'``. Initialise the SDK as usual in the module of the
worker's App (``sentry_sdk.init(dsn=...)``) and add the hook::

    app.add_hook(SentryHook())

What is reported, as one Sentry event each, with the task's name, ID, attempt and queue as
tags and its arguments (redacted) in the ``taskq`` context:

- a task's final failure (``on_failure``: its last attempt raised), level ``error``;
- with ``report_retries=True``, each failed attempt that will be retried (``on_retry``),
  level ``warning`` (off by default: a flaky call that succeeds on its second attempt is
  rarely worth an alert);
- with ``report_dead_letters=True`` (the default), a message dead-lettered for another reason
  than its last attempt failing (``rejected``, ``invalid-args``, ``unknown-task``,
  ``crash-loop``, ``expired``), level ``error``.

The event is built from the failure taskq recorded (the exception's type, message and
traceback as text), not from the exception object: the SDK would otherwise attach the local
variables of every frame, the task's arguments among them, unredacted. Arguments are shown as
the dashboard shows them (:func:`taskq.redact.call_repr`): the value of a parameter named like
a secret (``password``, ``token``, ``api_key``...) is ``'***'`` whether it was passed by
position or by keyword, and URL passwords are masked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from taskq import outcome
from taskq.extras import require_extra
from taskq.hooks import DeadLettered, Hook, TaskDone
from taskq.message import Envelope
from taskq.redact import call_repr
from taskq.results.base import ErrorInfo

require_extra("sentry", "taskq.integrations.sentry")

import sentry_sdk  # noqa: E402

if TYPE_CHECKING:
    from sentry_sdk.types import Event

    from taskq.task import Task
    from taskq.worker import Worker

__all__ = ["SentryHook"]

Level = Literal["error", "warning"]

ARGS_WIDTH = 1000  # longer than the dashboard's: an event has room for more


class SentryHook(Hook):
    """Reports task failures to Sentry (see the module's docstring for what and how)."""

    def __init__(self, *, report_retries: bool = False, report_dead_letters: bool = True) -> None:
        self.report_retries = report_retries
        self.report_dead_letters = report_dead_letters
        self._tasks: Mapping[str, Task[Any, Any]] = {}

    async def on_worker_start(self, worker: Worker) -> None:
        """Keep the worker's tasks: their signatures name positional arguments."""
        self._tasks = worker.app.tasks

    async def on_failure(self, done: TaskDone) -> None:
        """The last attempt failed: report it."""
        if done.error is not None:
            self.report(done.envelope, done.error, "error", "failed")

    async def on_retry(self, done: TaskDone) -> None:
        """An attempt failed and will be retried: reported only with ``report_retries``."""
        if self.report_retries and done.error is not None:
            self.report(done.envelope, done.error, "warning", "retried")

    async def on_dead_letter(self, dead: DeadLettered) -> None:
        """Dead-lettered for another reason than a last failed attempt (which ``on_failure``
        reports): reported with ``report_dead_letters``."""
        if self.report_dead_letters and dead.reason != outcome.MAX_ATTEMPTS:
            self.report(dead.envelope, dead.error, "error", dead.reason)

    def report(self, envelope: Envelope | None, error: ErrorInfo, level: Level, what: str) -> None:
        """Send one event for ``error`` of the task of ``envelope`` (None: an undecodable
        message); ``what`` becomes the ``taskq.outcome`` tag."""
        sentry_sdk.capture_event(self.event(envelope, error, level, what))

    def event(self, envelope: Envelope | None, error: ErrorInfo, level: Level, what: str) -> Event:
        """The Sentry event for ``error`` (see :meth:`report`)."""
        module, _, name = error.type.rpartition(".")
        tags: dict[str, str] = {"taskq.outcome": what}
        context: dict[str, Any] = {"traceback": error.traceback}
        if envelope is not None:
            tags |= {
                "taskq.task": envelope.task_name,
                "taskq.task_id": envelope.task_id,
                "taskq.queue": envelope.queue,
                "taskq.attempt": str(envelope.attempt),
            }
            context |= {"args": self.arguments(envelope), "root_id": envelope.root_id}
        return {
            "level": level,
            "logger": "taskq",
            "exception": {
                "values": [
                    {
                        "type": name,
                        "module": module or None,
                        "value": error.message,
                        "mechanism": {"type": "taskq", "handled": False},
                    }
                ]
            },
            "tags": tags,
            "contexts": {"taskq": context},
            "fingerprint": ["taskq", tags.get("taskq.task", what), error.type],
        }

    def arguments(self, envelope: Envelope) -> str:
        """The task's arguments, redacted as the dashboard shows them; positional ones all
        hidden when this worker lacks the task (nothing names them)."""
        task = self._tasks.get(envelope.task_name)
        if task is None:
            return call_repr(["***"] * len(envelope.args), envelope.kwargs, ARGS_WIDTH)
        return call_repr(envelope.args, envelope.kwargs, ARGS_WIDTH, task.signature.inspected)
