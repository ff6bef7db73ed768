"""Task[P, R]: a registered function, how to send it, and per-call options."""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, Protocol, TypeVar, overload

from .codec import Signature as CallSignature
from .exceptions import ConfigurationError, TaskRegistrationError
from .handle import TaskHandle
from .limits.concurrency import ConcurrencyLimit
from .limits.rate import RateLimit
from .redact import ARGS_WIDTH, call_repr
from .retry import RetryPolicy
from .topology import MAX_NAME_BYTES, check_amqp_name
from .workflow.canvas import TaskSignature, task_signature

if TYPE_CHECKING:
    from .app import App

P = ParamSpec("P")
R = TypeVar("R")
P2 = ParamSpec("P2")
A = TypeVar("A")
A_contra = TypeVar("A_contra", contravariant=True)
R2 = TypeVar("R2")
R2_co = TypeVar("R2_co", covariant=True)


class _Partial(Protocol[A_contra, P2, R2_co]):
    """A task whose first parameter is an ``A``, its others ``P2``, its result ``R2`` (how
    ``Task.s`` types a partial signature: mypy infers ``A`` through ``__call__``)."""

    def __call__(self, first: A_contra, /, *args: P2.args, **kwargs: P2.kwargs) -> Any: ...
    def validate_result(self, value: Any) -> R2_co: ...


PoolKind = Literal["thread", "process"]
"""Where a plain ``def`` task runs: the worker's thread pool or its process pool."""


@dataclasses.dataclass(frozen=True, slots=True)
class SendOptions:
    """Per-call options. They never share a namespace with the task's own arguments.

    - ``task_id``: the ID to use (default: a new UUID). With a durable result store, a task
      whose ID already succeeded is not run again.
    - ``priority``: 0 (lowest) to the queue's max priority.
    - ``queue``: send to this queue instead of the task's own.
    - ``countdown``: seconds to wait before the task may start, counted from the call that
      sends it (``delay()``, ``map()``, ``send_many()``).
    - ``eta``: a timezone-aware datetime before which the task may not start.
    - ``expires``: seconds from the call that sends it, or an aware datetime; a task not
      started by then is dead-lettered as ``expired`` instead of running.
    - ``ignore_result``: record no state or result for this call (None: the task's setting).
    - ``partition_key``: on a partitioned queue, the partition is picked from this key
      instead of the task ID: tasks with one key go to one partition, in the order sent
      (ignored on a queue that is not partitioned).
    """

    task_id: str | None = None
    priority: int | None = None
    queue: str | None = None
    countdown: float | None = None
    eta: dt.datetime | None = None
    expires: float | dt.datetime | None = None
    ignore_result: bool | None = None
    partition_key: str | bytes | int | None = None

    def __post_init__(self) -> None:
        if self.task_id is not None:
            check_amqp_name(self.task_id, "task_id")  # it travels as the AMQP message_id


@dataclasses.dataclass(frozen=True, slots=True)
class TaskConfig:
    """How a task is declared: name, queue, default priority, timeout, retry policy."""

    name: str
    queue: str
    priority: int | None
    timeout: float | None
    retry: RetryPolicy | None
    is_async: bool
    ignore_result: bool = False
    partitions: int | None = None
    """The partition count the task asked for (None: what the settings say)."""
    pool: PoolKind | None = None
    """Where a plain ``def`` task runs (None: the worker's ``sync_pool``)."""
    hard_timeout: float | None = None
    """Seconds after which the task's process is killed (process pool only)."""
    rate_limit: RateLimit | None = None
    """How often the task may start across the fleet (see taskq.limits.rate)."""
    concurrency: ConcurrencyLimit | None = None
    """How many runs at once per key across the fleet (see taskq.limits.concurrency)."""

    def runs_in_process(self, default: PoolKind) -> bool:
        """Whether the task runs in the worker's process pool, given the worker's default pool
        for plain ``def`` tasks (a hard timeout needs a process: it kills one)."""
        if self.is_async:
            return False
        if self.hard_timeout is not None:
            return True
        return (self.pool or default) == "process"


class Task(Generic[P, R]):
    """A function registered with ``@app.task``.

    ``await task.delay(*args, **kwargs)`` sends it and returns a ``TaskHandle[R]``;
    ``task.options(...)`` gives a frozen view with per-call options; calling the task object
    runs the function directly, in this process.
    """

    def __init__(self, app: App, func: Callable[P, Any], config: TaskConfig) -> None:
        self.app = app
        self.func = func
        self.config = config
        self.signature = CallSignature(func)
        self.__doc__ = func.__doc__
        self.__name__ = getattr(func, "__name__", config.name)
        self.__wrapped__ = func

    @property
    def name(self) -> str:
        """The registered task name (the AMQP ``type`` of its messages)."""
        return self.config.name

    def __repr__(self) -> str:
        return f"<Task {self.config.name} queue={self.config.queue}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        return self.func(*args, **kwargs)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[TaskHandle[R]]:
        """Send the task; the handle is returned once the broker has confirmed the message.

        A call that does not fit the signature raises InvalidArguments before anything is sent.
        """
        return self.app.sender.send(self, SendOptions(), args, kwargs)

    async def map(self, iterable_of_args: Iterable[Any]) -> list[TaskHandle[R]]:
        """Send one task per item, with pipelined confirms (see ``App.send_many``).

        An item is a tuple of positional arguments, a dict of keyword arguments, or a single
        other value taken as the only argument. Returns the handles in order.
        """
        return await _map(self, iterable_of_args)

    def options(
        self,
        *,
        task_id: str | None = None,
        priority: int | None = None,
        queue: str | None = None,
        countdown: float | None = None,
        eta: dt.datetime | None = None,
        expires: float | dt.datetime | None = None,
        ignore_result: bool | None = None,
        partition_key: str | bytes | int | None = None,
    ) -> TaskCall[P, R]:
        """A frozen view of this task with per-call options (see SendOptions)."""
        return TaskCall(self, SendOptions()).options(
            task_id=task_id, priority=priority, queue=queue,
            countdown=countdown, eta=eta, expires=expires, ignore_result=ignore_result,
            partition_key=partition_key,
        )  # fmt: skip

    @overload
    def s(self, *args: P.args, **kwargs: P.kwargs) -> TaskSignature[object, R]: ...
    @overload
    def s(
        self: _Partial[A, P2, R2], *args: P2.args, **kwargs: P2.kwargs
    ) -> TaskSignature[A, R2]: ...
    def s(self, *args: Any, **kwargs: Any) -> Any:
        """A signature of this task for a workflow (see taskq.workflow): complete when the
        arguments fit the whole signature (``add.s(2, 2)``), else partial (``add.s(2)``: the
        previous step's result comes first). Bound and validated now: InvalidArguments if the
        arguments fit neither way."""
        return task_signature(self, args, kwargs)

    def validate_result(self, value: Any) -> R:
        """Turn a received result into the annotated return type."""
        return self.signature.validate_result(value)  # type: ignore[no-any-return]


@dataclasses.dataclass(frozen=True, slots=True)
class TaskCall(Generic[P, R]):
    """A task with per-call options fixed; ``.delay(...)`` sends it, ``.options(...)`` refines."""

    task: Task[P, R]
    send_options: SendOptions

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[TaskHandle[R]]:
        """Send the task with these options (see Task.delay). A ``countdown`` (or an
        ``expires`` in seconds) counts from this call, not from when the returned awaitable
        gets to build the message: in a gather of thousands of sends, that comes later."""
        return self.task.app.sender.send(self.task, self.send_options, args, kwargs, time.time())

    async def map(self, iterable_of_args: Iterable[Any]) -> list[TaskHandle[R]]:
        """Send one task per item with these options (see Task.map)."""
        return await _map(self, iterable_of_args)

    def options(
        self,
        *,
        task_id: str | None = None,
        priority: int | None = None,
        queue: str | None = None,
        countdown: float | None = None,
        eta: dt.datetime | None = None,
        expires: float | dt.datetime | None = None,
        ignore_result: bool | None = None,
        partition_key: str | bytes | int | None = None,
    ) -> TaskCall[P, R]:
        """A new view with the given options set on top of these (None keeps the current)."""
        current = self.send_options
        changes = SendOptions(
            task_id=current.task_id if task_id is None else task_id,
            priority=current.priority if priority is None else priority,
            queue=current.queue if queue is None else queue,
            countdown=current.countdown if countdown is None else countdown,
            eta=current.eta if eta is None else eta,
            expires=current.expires if expires is None else expires,
            ignore_result=current.ignore_result if ignore_result is None else ignore_result,
            partition_key=current.partition_key if partition_key is None else partition_key,
        )
        return TaskCall(self.task, changes)


async def _map(
    target: Task[Any, R] | TaskCall[Any, R], items: Iterable[Any]
) -> list[TaskHandle[R]]:
    app = target.task.app if isinstance(target, TaskCall) else target.app
    calls: list[Any] = []
    for item in items:
        if isinstance(item, tuple):
            calls.append((target, item))
        elif isinstance(item, dict):
            calls.append((target, (), item))
        else:
            calls.append((target, (item,)))
    return await app.send_many(calls)


def task_name_of(fn: Callable[..., Any], explicit: str | None) -> str:
    """The name to register ``fn`` under; TaskRegistrationError if it cannot be a task."""
    if not (inspect.isfunction(fn) or inspect.ismethod(fn)):
        raise TaskRegistrationError(f"@app.task needs a function, got {fn!r}")
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise TaskRegistrationError(f"{fn.__qualname__} is a generator; a task must return a value")
    name = fn.__name__
    if name == "<lambda>":
        raise TaskRegistrationError(
            "a lambda cannot be a task: workers find tasks by name in an imported module; use a def"
        )
    if explicit is not None:
        if not explicit or not explicit.isprintable():
            raise TaskRegistrationError(f"invalid task name {explicit!r}")
        name = explicit
    size = len(name.encode())
    if size > MAX_NAME_BYTES:
        # The name travels as the AMQP `type` property, a short string.
        raise TaskRegistrationError(
            f"task name {name[:40]!r}... is {size} bytes of UTF-8; AMQP allows "
            f"{MAX_NAME_BYTES}: pass a shorter name="
        )
    return name


def check_pool_options(
    config: TaskConfig, pool: PoolKind | None, hard_timeout: float | None
) -> dict[str, Any]:
    """The ``pool`` and ``hard_timeout`` of a task declared with ``config``, checked:
    ConfigurationError where they cannot be honoured."""
    name = config.name
    if pool not in (None, "thread", "process"):
        raise ConfigurationError(f"pool of task {name!r} must be 'thread' or 'process'")
    if config.is_async:
        raise ConfigurationError(
            f"task {name!r} is async: it runs on the worker's event loop, so pool= and "
            "hard_timeout= do not apply (timeout= cancels it)"
        )
    if hard_timeout is not None:
        if hard_timeout <= 0:
            raise ConfigurationError(f"hard_timeout of task {name!r} must be > 0")
        if pool == "thread":
            raise ConfigurationError(
                f"task {name!r}: a hard timeout kills the task's process, and a thread cannot "
                "be killed: use pool='process' (or leave pool unset)"
            )
        if config.timeout is not None and hard_timeout < config.timeout:
            raise ConfigurationError(
                f"hard_timeout of task {name!r} must not be shorter than its timeout"
            )
    return {"pool": pool, "hard_timeout": hard_timeout}


def unknown_task(app: App, name: str, queue: str) -> Task[..., Any]:
    """A stand-in for the task called ``name`` that this process does not have, sent to
    ``queue``: any arguments bind (the worker that knows the task validates them)."""
    config = TaskConfig(name, queue, None, None, None, True)
    return Task(app, _unknown_signature, config)


def _unknown_signature(*args: Any, **kwargs: Any) -> Any:
    """Stands in for a task this process does not have: any arguments bind."""


def args_repr(
    task: Task[Any, Any] | None,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    width: int = ARGS_WIDTH,
) -> str:
    """The arguments of a call of ``task`` (None: a task this process lacks) for display,
    redacted by :func:`taskq.redact.call_repr` through the task's signature, so that a secret
    is hidden whether it was passed by position or by keyword (the sender binds keyword
    arguments to positions)."""
    signature = None if task is None else task.signature.inspected
    return call_repr(args, kwargs, width, signature)
