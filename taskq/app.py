"""App: settings, the task registry, and the client lifecycle (``async with app:``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import logging
import math
import random
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload

from . import codec, events, topology
from .context import current_or_none
from .exceptions import ConfigurationError, LifecycleError, PublishError, TaskRegistrationError
from .handle import TaskHandle
from .message import Envelope, OutgoingMessage
from .periodic.entry import CatchUp, PeriodicEntry, make_entry
from .periodic.schedule import schedule_of
from .redact import redact_url
from .results.amqp import AmqpResultStore
from .results.base import ResultStore
from .results.shared import SharedStore
from .retry import RetryPolicy
from .settings import Settings, check_partition_count, check_queue_name, load_settings
from .sync import SyncClient
from .task import SendOptions, Task, TaskCall, TaskConfig
from .transport import Transport

log = logging.getLogger("taskq.app")
P = ParamSpec("P")
R = TypeVar("R")

SendItem = (
    tuple[Task[Any, Any] | TaskCall[..., Any] | str, Iterable[Any]]
    | tuple[Task[Any, Any] | TaskCall[..., Any] | str, Iterable[Any], dict[str, Any]]
)
"""One call for ``App.send_many``: (task, args) or (task, args, kwargs)."""


class _TaskDecorator(Protocol):
    @overload
    def __call__(self, func: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, func: Callable[P, R], /) -> Task[P, R]: ...


class App:
    """A taskq application: its settings and tasks. Declaring it does no I/O.

    ``async with app:`` connects (and declares the topology of the queues it sends to);
    ``taskq-worker module:app`` runs its tasks. Settings (see Settings) come from keyword
    arguments, which win over ``TASKQ_*`` environment variables, which win over the defaults.
    ``broker`` is one AMQP URL, or several (the nodes of a cluster: a list, or one string
    with commas). ``retry`` is the RetryPolicy of tasks that declare none.

    ``results`` is ``"amqp"`` or a store URL (the ``results`` setting), or any object that
    implements the ResultStore protocol: the App and the workers of this process then share
    that one object (opened by the first, closed by the last; see taskq.results.shared).
    ConfigurationError if it is neither.
    """

    def __init__(
        self,
        name: str,
        *,
        broker: str | Sequence[str] | None = None,
        retry: RetryPolicy | None = None,
        results: str | ResultStore | None = None,
        **settings: Any,
    ) -> None:
        self.name = name
        self._custom_store: SharedStore | None = None
        if results is None or isinstance(results, str):
            settings["results"] = results
        else:
            self._custom_store = SharedStore(_check_store(results))
        self.settings: Settings = load_settings(broker=broker, **settings)
        self.names = topology.Names(self.settings.prefix)
        self._sync: SyncClient | None = None
        self._tasks: dict[str, Task[Any, Any]] = {}
        self._periodic: dict[str, PeriodicEntry] = {}
        self._transport: Transport | None = None
        self._store: ResultStore | None = None
        self.default_retry = retry
        """The retry policy of tasks that declare none (None: one attempt)."""

    def __repr__(self) -> str:
        return (
            f"<App {self.name!r} broker={self.settings.redacted_broker()} tasks={len(self._tasks)}>"
        )

    # -- configuration -----------------------------------------------------------------------

    def configure(self, **overrides: Any) -> None:
        """Replace settings (e.g. from CLI flags) before the app is opened."""
        if self._transport is not None:
            raise LifecycleError("cannot change settings of an open App")
        merged = {
            **self.settings.model_dump(),
            **{k: v for k, v in overrides.items() if v is not None},
        }
        self.settings = load_settings(**merged)
        self.names = topology.Names(self.settings.prefix)

    @property
    def tasks(self) -> Mapping[str, Task[Any, Any]]:
        """The registered tasks by name."""
        return self._tasks

    @overload
    def task(self, func: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
    @overload
    def task(self, func: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def task(
        self,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        ignore_result: bool = False,
        partitions: int | None = None,
    ) -> _TaskDecorator: ...

    def task(
        self,
        func: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        ignore_result: bool = False,
        partitions: int | None = None,
    ) -> Any:
        """Register ``func`` (``async def`` runs on the worker's loop; ``def`` in its thread pool).

        The task name defaults to the function's ``__name__``. With ``ignore_result``, no
        state or result of the task is recorded anywhere (nobody can ask for it; sending it
        costs a worker nothing beyond running it). Fails at once, with TaskRegistrationError,
        on lambdas, generators, non-functions (partials, callable objects: they have no name
        of their own) and names already registered.

        ``partitions`` splits the task's queue into that many work queues (see
        docs/operations/partitions.md); it is a setting of the queue (``partitions``), so it
        must agree with the setting and with other tasks of the queue (ConfigurationError).
        """

        def register(fn: Callable[..., Any]) -> Task[Any, Any]:
            task = self._new_task(fn, name, queue, priority, timeout, retry, ignore_result)
            if partitions is not None:
                self._set_partitions(task.config.queue, partitions)
                task.config = dataclasses.replace(task.config, partitions=partitions)
            self._tasks[task.name] = task
            return task

        return register if func is None else register(func)

    @property
    def periodic_entries(self) -> Mapping[str, PeriodicEntry]:
        """The periodic entries by name (the name of each entry's task)."""
        return self._periodic

    def periodic(
        self,
        *,
        every: float | dt.timedelta | None = None,
        cron: str | None = None,
        timezone: str = "UTC",
        start: dt.datetime | None = None,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        catch_up: CatchUp = "one",
        name: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> _TaskDecorator:
        """Register ``func`` as a task (``.delay()`` still works) that a scheduler sends on a
        schedule with ``args`` and ``kwargs`` (see taskq.periodic and docs/operations/periodic.md).

        ``every`` (seconds, or a timedelta, at least 1 s) ticks on multiples of the interval
        since the Unix epoch, or since ``start``; ``cron`` (five fields) ticks in
        ``timezone``. ``catch_up`` says what happens to ticks that came due while no
        scheduler was active: ``"one"`` fires the latest once, ``"all"`` every one,
        ``"skip"`` none. The other options are the task's (see ``task``). A bad schedule or
        time zone raises ConfigurationError and arguments that do not fit the function raise
        InvalidArguments, here, at import.
        """
        schedule = schedule_of(every=every, cron=cron, timezone=timezone, start=start)

        def register(fn: Callable[..., Any]) -> Task[Any, Any]:
            task = self._new_task(fn, name, queue, priority, timeout, retry, False)
            entry = make_entry(task, schedule, args, kwargs, catch_up)
            self._tasks[task.name] = task
            self._periodic[task.name] = entry
            return task

        return cast(_TaskDecorator, register)

    def _new_task(
        self,
        fn: Callable[..., Any],
        name: str | None,
        queue: str | None,
        priority: int | None,
        timeout: float | None,
        retry: RetryPolicy | None,
        ignore_result: bool,
    ) -> Task[Any, Any]:
        """A checked, not yet registered task of ``fn``."""
        task_name = _task_name(fn, name)
        if task_name in self._tasks:
            raise TaskRegistrationError(
                f"a task named {task_name!r} is already registered "
                f"({self._tasks[task_name].func!r}); pass name= to register another"
            )
        queue_name = check_queue_name(self.settings.default_queue if queue is None else queue)
        if priority is not None:
            self._check_priority(priority, queue_name, explicit=True)
        if timeout is not None and timeout <= 0:
            raise ConfigurationError(f"timeout of task {task_name!r} must be > 0")
        config = TaskConfig(
            name=task_name,
            queue=queue_name,
            priority=priority,
            timeout=timeout,
            retry=retry,
            is_async=inspect.iscoroutinefunction(fn),
            ignore_result=ignore_result,
        )
        return Task(self, fn, config)

    def _set_partitions(self, queue: str, partitions: int) -> None:
        """Record a task's partition count of ``queue`` in the settings (where the transport
        and workers read it); ConfigurationError if the queue already has another count."""
        check_partition_count(queue, partitions)
        known = self.settings.partitions.get(queue)
        if known is not None and known != partitions:
            raise ConfigurationError(
                f"queue {queue!r} has {known} partition(s) (from the partitions setting or "
                f"another task), not {partitions}: every task of a queue must agree"
            )
        merged = {**self.settings.partitions, queue: partitions}
        self.settings = self.settings.model_copy(update={"partitions": merged})

    def _check_priority(self, priority: int, queue: str, *, explicit: bool = False) -> int:
        if explicit and self.settings.queue_type_of(queue) == "quorum":
            # RabbitMQ 3.10 quorum queues ignore message priority; refuse rather than mislead.
            raise ConfigurationError(
                f"priority needs a classic work queue, and {queue!r} is a quorum queue: quorum "
                "queues have no priorities on RabbitMQ 3.10"
            )
        if not 0 <= priority <= self.settings.max_priority:
            raise ConfigurationError(
                f"priority must be between 0 and {self.settings.max_priority}, got {priority}"
            )
        return priority

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> App:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self, *, connection_name: str | None = None) -> None:
        """Connect to the broker and open the result store (``async with app:`` calls this)."""
        if self._transport is not None:
            raise LifecycleError(f"App {self.name!r} is already open")
        self.attach(*await self.connect(connection_name or f"taskq:{self.name}"))

    async def connect(
        self, connection_name: str, *, concurrency: int | None = None
    ) -> tuple[Transport, ResultStore]:
        """A new connected transport and open result store, owned by the caller.

        A worker uses its own, so that one App can send and run tasks in one process; it
        gives its ``concurrency``, which sizes the store's connection pool where it has one.
        """
        transport = Transport(self.settings, connection_name=connection_name)
        await transport.connect()
        try:
            store = self._make_store(transport, concurrency)
            await store.open()
        except BaseException:
            await transport.close()
            raise
        return transport, store

    def attach(self, transport: Transport, store: ResultStore) -> None:
        """Use ``transport`` and ``store`` for sending (what ``open`` does with new ones)."""
        self._transport, self._store = transport, store

    @property
    def is_open(self) -> bool:
        """Whether the App can send tasks now."""
        return self._transport is not None

    @property
    def sync(self) -> SyncClient:
        """A blocking facade for code without an event loop (``app.sync.send(...)``; see
        taskq.sync). Opens the App on its own loop thread at first use."""
        self._sync = SyncClient.of(self, self._sync)
        return self._sync

    def _make_store(self, transport: Transport, concurrency: int | None) -> ResultStore:
        if self._custom_store is not None:
            return self._custom_store.lease()
        spec = self.settings.results
        if spec == "amqp":
            return AmqpResultStore(transport)
        store: ResultStore
        if spec.startswith(("redis://", "rediss://", "unix://")):
            from .results.redis import RedisResultStore

            store = RedisResultStore(spec, transport)
            return store
        if spec.startswith(("postgresql://", "postgres://")):
            from .results.postgres import PostgresResultStore, pool_size
            from .results.postgres_schema import Tables

            settings = self.settings
            store = PostgresResultStore(
                spec,
                table=Tables.for_prefix(settings.prefix).name,
                pool_size=pool_size(concurrency),
                result_ttl=settings.result_ttl,
                connect_timeout=settings.connect_timeout,
            )
            return store
        raise ConfigurationError(
            f"unknown result store {redact_url(spec)!r}: use 'amqp', a redis:// or a "
            "postgresql:// URL, or pass a ResultStore object as App(results=...)"
        )

    async def close(self) -> None:
        """Close the result store and the connections (idempotent)."""
        transport, store = self._transport, self._store
        self._transport = self._store = None
        if store is not None:
            await store.close()
        if transport is not None:
            await transport.close()

    def detach(self) -> None:
        """Stop using the attached transport and store without closing them."""
        self._transport = self._store = None

    @property
    def transport(self) -> Transport:
        """The open transport; LifecycleError outside ``async with app:``."""
        if self._transport is None:
            raise LifecycleError(f"App {self.name!r} is not open: use `async with app:`")
        return self._transport

    @property
    def store(self) -> ResultStore:
        """The open result store; LifecycleError outside ``async with app:``."""
        if self._store is None:
            raise LifecycleError(f"App {self.name!r} is not open: use `async with app:`")
        return self._store

    # -- sending -----------------------------------------------------------------------------

    def named(self, name: str) -> TaskCall[..., Any]:
        """A sendable view of the task called ``name``, registered here or not.

        An unregistered name goes to the default queue with no argument checks; the worker
        that knows the task validates them.
        """
        task = self._tasks.get(name)
        if task is None:
            config = TaskConfig(name, self.settings.default_queue, None, None, None, True)
            task = Task(self, _unknown_signature, config)
            task.signature = codec.Signature(_unknown_signature)
        return TaskCall(task, SendOptions())

    async def send(self, name: str, /, *args: Any, **kwargs: Any) -> TaskHandle[Any]:
        """Send the task called ``name`` (see ``named`` for options)."""
        return await self.named(name).delay(*args, **kwargs)

    def handle(self, task_id: str, task_name: str = "") -> TaskHandle[Any]:
        """A handle for a task sent earlier (by ID). Needs a durable store to see other
        processes' tasks; results come back untyped unless ``task_name`` is registered here."""
        task = self._tasks.get(task_name)
        validate = task.validate_result if task is not None else None
        return TaskHandle(task_id, task_name, self.store, validate, owned=False)

    async def _send_task(
        self,
        task: Task[Any, Any],
        options: SendOptions,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> TaskHandle[Any]:
        send = await self._prepare(task, options, args, kwargs)
        await events.sent(self, send.envelope)  # first: it must come before task.received
        try:
            await self.transport.publish(send.exchange, send.routing_key, send.message)
        except PublishError as exc:
            if not exc.unroutable or send.exchange != self.names.exchange:
                raise
            # The queue was deleted after this App declared it (declarations are made once
            # per connection): declare it again and send once more. A returned message went
            # nowhere, so this sends no copy.
            log.warning("%s; declaring queue %r again", exc, send.envelope.queue)
            await self.transport.declare_work_queue(send.envelope.queue, again=True)
            await self.transport.publish(send.exchange, send.routing_key, send.message)
        return send.handle

    async def send_many(self, calls: Iterable[SendItem]) -> list[TaskHandle[Any]]:
        """Send many tasks with pipelined publisher confirms; return their handles in order.

        Each call is ``(task, args)`` or ``(task, args, kwargs)``, where ``task`` is a Task,
        a TaskCall (with options) or a task name. Every call is checked before anything is
        sent. All or error: if a publish fails, the rest still finish and PublishError names
        the task IDs not confirmed.
        """
        prepared = []
        for call in calls:
            target, args, kwargs = call if len(call) == 3 else (*call, {})
            view = self.named(target) if isinstance(target, str) else target
            if isinstance(view, TaskCall):
                view_task, view_options = view.task, view.send_options
            else:
                view_task, view_options = view, SendOptions()
            prepared.append(await self._prepare(view_task, view_options, tuple(args), kwargs))
        await events.sent(self, *(send.envelope for send in prepared))
        await self.transport.publish_many(
            [(send.exchange, send.routing_key, send.message) for send in prepared]
        )
        return [send.handle for send in prepared]

    async def _prepare(
        self,
        task: Task[Any, Any],
        options: SendOptions,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> _Send:
        """Check a call, declare its queue, and build its message."""
        bound = task.signature.bind(args, kwargs)  # a wrong call fails here, open or not
        transport, store = self.transport, self.store
        ignore = options.ignore_result
        if ignore is None:
            ignore = task.config.ignore_result
        reply_to = None if ignore else store.reply_to()
        envelope, delay_ms = self._envelope(task, options, bound, reply_to, ignore)
        message = envelope.to_message()
        if options.expires is not None and delay_ms == 0 and envelope.expires is not None:
            remaining = max(1, int((envelope.expires - _now()).total_seconds() * 1000))
            message = dataclasses.replace(message, expiration_ms=remaining)
        if not ignore:
            store.track(envelope.task_id, task.name)
        handle: TaskHandle[Any] = TaskHandle(
            envelope.task_id, task.name, store, task.validate_result, ignored=ignore
        )
        await transport.declare_work_queue(envelope.queue)
        if delay_ms > 0:
            await transport.declare_delay_levels()
            key = topology.delay_routing_key(delay_ms, envelope.route)
            return _Send(handle, envelope, self.names.delay_exchange(delay_ms), key, message)
        return _Send(handle, envelope, self.names.exchange, envelope.route, message)

    def _envelope(
        self,
        task: Task[Any, Any],
        options: SendOptions,
        bound: tuple[list[Any], dict[str, Any]],
        reply_to: str | None,
        ignore_result: bool,
    ) -> tuple[Envelope, int]:
        bound_args, bound_kwargs = bound
        cfg = task.config
        # The task's own queue was checked when it was registered.
        queue = cfg.queue if options.queue is None else check_queue_name(options.queue)
        if options.priority is not None:
            self._check_priority(options.priority, queue, explicit=True)
        priority = options.priority if options.priority is not None else cfg.priority
        if priority is None:
            priority = self.settings.default_priority
        eta, delay_ms = _schedule(options)
        parent = current_or_none()
        task_id = options.task_id or _new_task_id()
        return (
            Envelope(
                task_id=task_id,
                task_name=cfg.name,
                queue=queue,
                args=bound_args,
                kwargs=bound_kwargs,
                priority=self._check_priority(priority, queue),
                sent_at=time.time(),
                eta=eta,
                expires=_absolute(options.expires),
                reply_to=reply_to,
                ignore_result=ignore_result,
                dedupe=options.task_id is not None,  # an ID of the caller's may be sent twice
                parent_id=parent.task_id if parent else None,
                root_id=(parent.root_id or parent.task_id) if parent else None,
                partition=self.partition_for(queue, options.partition_key, task_id),
            ),
            delay_ms,
        )

    def partition_for(self, queue: str, key: str | bytes | int | None, task_id: str) -> int | None:
        """The partition of ``queue`` a task goes to: by ``key`` if given, else by its ID
        (None when the queue is not partitioned)."""
        count = self.settings.partitions_of(queue)
        return topology.partition_of(task_id if key is None else key, count)


@dataclasses.dataclass(frozen=True, slots=True)
class _Send:
    """One checked call, ready to publish."""

    handle: TaskHandle[Any]
    envelope: Envelope
    exchange: str
    routing_key: str
    message: OutgoingMessage


def _new_task_id() -> str:
    """A random UUID4 as text. From ``random``, not ``os.urandom``: a task ID must be unique,
    not secret, and this costs no system call per send (``random`` reseeds after a fork)."""
    return str(uuid.UUID(int=random.getrandbits(128), version=4))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _absolute(when: float | dt.datetime | None) -> dt.datetime | None:
    if when is None:
        return None
    if isinstance(when, dt.datetime):
        if when.tzinfo is None:
            raise ConfigurationError("expires must be a timezone-aware datetime (or seconds)")
        return when
    return _now() + dt.timedelta(seconds=when)


def _schedule(options: SendOptions) -> tuple[dt.datetime | None, int]:
    """The ETA and the delay in milliseconds of a send (a past ETA means now)."""
    if options.countdown is not None and options.eta is not None:
        raise ConfigurationError("give countdown or eta, not both")
    if options.eta is not None:
        if options.eta.tzinfo is None:
            raise ConfigurationError(
                "eta must be timezone-aware (e.g. datetime.now(timezone.utc) + timedelta(...))"
            )
        eta = options.eta
    elif options.countdown is not None:
        if options.countdown < 0 or not math.isfinite(options.countdown):
            raise ConfigurationError("countdown must be a finite number of seconds >= 0")
        eta = _now() + dt.timedelta(seconds=options.countdown)
    else:
        return None, 0
    delay_ms = max(0, math.ceil((eta - _now()).total_seconds() * 1000))
    if delay_ms > topology.MAX_DELAY_MS:
        raise ConfigurationError(
            f"delay of {delay_ms / 1000:.0f} s is longer than the longest supported "
            f"({topology.MAX_DELAY_SECONDS:.0f} s, about 795 days)"
        )
    return eta, delay_ms


def _task_name(fn: Callable[..., Any], explicit: str | None) -> str:
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
    if size > topology.MAX_NAME_BYTES:
        # The name travels as the AMQP `type` property, a short string.
        raise TaskRegistrationError(
            f"task name {name[:40]!r}... is {size} bytes of UTF-8; AMQP allows "
            f"{topology.MAX_NAME_BYTES}: pass a shorter name="
        )
    return name


def _check_store(store: object) -> ResultStore:
    """``store`` if it implements the ResultStore protocol, else ConfigurationError."""
    missing = [
        member
        for member in ("durable", "open", "close", "reply_to", "track", "forget", "reset",
                       "record", "get", "wait")
        if not hasattr(store, member)
    ]  # fmt: skip
    if missing or not isinstance(store, ResultStore):
        raise ConfigurationError(
            f"results={store!r} is not a result store: it lacks {', '.join(missing)} (see "
            "taskq.ResultStore)"
        )
    return store


def _unknown_signature(*args: Any, **kwargs: Any) -> Any:
    """Stands in for a task this process does not have: any arguments bind."""
