"""The task registry of an App: checks each task as it is registered, and holds the tasks
and periodic entries by name."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .exceptions import ConfigurationError, TaskRegistrationError
from .limits.gate import declared_limits
from .periodic.entry import CatchUp, PeriodicEntry, make_entry
from .periodic.schedule import Schedule
from .retry import RetryPolicy
from .settings import Settings, check_partition_count, check_priority, check_queue_name
from .task import PoolKind, Task, TaskConfig, check_pool_options, task_name_of

if TYPE_CHECKING:
    from .app import App


@dataclasses.dataclass(frozen=True)
class TaskOptions:
    """The options of ``@app.task`` (see App.task); None: the App's default."""

    name: str | None = None
    queue: str | None = None
    priority: int | None = None
    timeout: float | None = None
    retry: RetryPolicy | None = None
    ignore_result: bool = False
    partitions: int | None = None
    pool: PoolKind | None = None
    hard_timeout: float | None = None
    rate_limit: str | None = None
    concurrency_limit: int | None = None
    concurrency_key: Callable[..., Any] | None = None


@dataclasses.dataclass(frozen=True)
class PeriodicOptions:
    """When and with what a periodic task is sent (see App.periodic)."""

    schedule: Schedule
    args: tuple[Any, ...] | list[Any]
    kwargs: dict[str, Any] | None
    catch_up: CatchUp


class TaskRegistry:
    """The tasks and periodic entries of one App, by name."""

    def __init__(self, app: App) -> None:
        self._app = app
        self._tasks: dict[str, Task[Any, Any]] = {}
        self._periodic: dict[str, PeriodicEntry] = {}

    @property
    def tasks(self) -> Mapping[str, Task[Any, Any]]:
        """The registered tasks by name."""
        return self._tasks

    @property
    def periodic(self) -> Mapping[str, PeriodicEntry]:
        """The periodic entries by name (the name of each entry's task)."""
        return self._periodic

    def add(self, fn: Callable[..., Any], options: TaskOptions) -> Task[Any, Any]:
        """Register ``fn`` as a task (see App.task for what is refused, and how)."""
        task = self._checked_task(fn, options)
        if options.pool is not None or options.hard_timeout is not None:
            changes = check_pool_options(task.config, options.pool, options.hard_timeout)
            task.config = dataclasses.replace(task.config, **changes)
        limits = declared_limits(
            fn, options.rate_limit, options.concurrency_limit, options.concurrency_key
        )
        if limits:
            task.config = dataclasses.replace(task.config, **limits)
        if options.partitions is not None:
            settings = self._app.settings
            self._app.settings = with_partitions(settings, task.config.queue, options.partitions)
            task.config = dataclasses.replace(task.config, partitions=options.partitions)
        self._tasks[task.name] = task
        return task

    def add_periodic(
        self, fn: Callable[..., Any], options: TaskOptions, when: PeriodicOptions
    ) -> Task[Any, Any]:
        """Register ``fn`` as a task that a scheduler sends ``when`` says (see App.periodic)."""
        task = self._checked_task(fn, options)
        entry = make_entry(task, when.schedule, when.args, when.kwargs, when.catch_up)
        self._tasks[task.name] = task
        self._periodic[task.name] = entry
        return task

    def _checked_task(self, fn: Callable[..., Any], options: TaskOptions) -> Task[Any, Any]:
        """A checked, not yet registered task of ``fn``."""
        task_name = task_name_of(fn, options.name)
        if task_name in self._tasks:
            raise TaskRegistrationError(
                f"a task named {task_name!r} is already registered "
                f"({self._tasks[task_name].func!r}); pass name= to register another"
            )
        settings = self._app.settings
        queue = options.queue if options.queue is not None else settings.default_queue
        queue = check_queue_name(queue)
        if options.priority is not None:
            check_priority(settings, options.priority, queue, explicit=True)
        policy = options.retry or self._app.default_retry
        if policy is not None and policy.priority is not None:
            check_priority(settings, policy.priority, queue, explicit=True)
        if options.timeout is not None and options.timeout <= 0:
            raise ConfigurationError(f"timeout of task {task_name!r} must be > 0")
        config = TaskConfig(
            name=task_name,
            queue=queue,
            priority=options.priority,
            timeout=options.timeout,
            retry=options.retry,
            is_async=inspect.iscoroutinefunction(fn),
            ignore_result=options.ignore_result,
        )
        return Task(self._app, fn, config)


def with_partitions(settings: Settings, queue: str, partitions: int) -> Settings:
    """``settings`` with ``queue`` split into ``partitions`` (where the transport and workers
    read it); ConfigurationError if the queue already has another count."""
    check_partition_count(queue, partitions)
    known = settings.partitions.get(queue)
    if known is not None and known != partitions:
        raise ConfigurationError(
            f"queue {queue!r} has {known} partition(s) (from the partitions setting or "
            f"another task), not {partitions}: every task of a queue must agree"
        )
    return settings.model_copy(update={"partitions": {**settings.partitions, queue: partitions}})


def queues_of(app: App) -> list[str]:
    """The queues a worker of ``app`` consumes unless told which: the default queue and
    every task's."""
    queues = {app.settings.default_queue}
    queues.update(task.config.queue for task in app.tasks.values())
    return sorted(queues)
