"""App: settings, the task registry, and the client lifecycle (``async with app:``)."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload

from . import topology
from .cancel.client import DEFAULT_WAIT, CancelResult, cancel_task, canceller_of
from .exceptions import LifecycleError
from .handle import TaskHandle
from .hooks import Hook, Hooks
from .memory.inprocess import start_in_process_worker
from .memory.seam import transport_for
from .periodic.entry import CatchUp, PeriodicEntry
from .periodic.schedule import schedule_of
from .registry import PeriodicOptions, TaskOptions, TaskRegistry
from .results.base import ResultStore
from .results.registry import check_store, open_store
from .results.shared import SharedStore
from .retry import RetryPolicy
from .sending import Sender, SendItem, partition_for
from .settings import Settings, load_settings
from .sync import SyncClient
from .task import PoolKind, SendOptions, Task, TaskCall, unknown_task
from .transport import Transport

P = ParamSpec("P")
R = TypeVar("R")


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
            self._custom_store = SharedStore(check_store(results))
        self.settings: Settings = load_settings(broker=broker, **settings)
        self.names = topology.Names(self.settings.prefix)
        self._sync: SyncClient | None = None
        self.registry = TaskRegistry(self)
        """The registered tasks and periodic entries (see taskq.registry)."""
        self.hooks = Hooks()
        """The hooks added with ``add_hook`` and from entry points (see taskq.hooks)."""
        self.sender = Sender(f"App {name!r} is not open: use `async with app:`", self.hooks)
        """Sends this App's tasks once it is open (see taskq.sending)."""
        self.sender.canceller = canceller_of(self)
        self.default_retry = retry
        """The retry policy of tasks that declare none (None: one attempt)."""
        self._in_process: contextlib.AsyncExitStack | None = None  # memory:// only

    def __repr__(self) -> str:
        return (
            f"<App {self.name!r} broker={self.settings.redacted_broker()} tasks={len(self.tasks)}>"
        )

    # -- configuration -----------------------------------------------------------------------

    def configure(self, **overrides: Any) -> None:
        """Replace settings (e.g. from CLI flags) before the app is opened."""
        if self.sender.is_attached:
            raise LifecycleError("cannot change settings of an open App")
        merged = {
            **self.settings.model_dump(),
            **{k: v for k, v in overrides.items() if v is not None},
        }
        self.settings = load_settings(**merged)
        self.names = topology.Names(self.settings.prefix)

    def add_hook(self, hook: Hook) -> None:
        """Add ``hook`` after the hooks added so far (see taskq.hooks and
        docs/guide/hooks.md): its send methods run in this App's sends, its worker methods
        in workers started after this call. ConfigurationError if it is not a Hook."""
        self.hooks.add(hook)

    def load_entry_point_hooks(self) -> None:
        """Add the hooks of the ``taskq.hooks`` entry point group (once: later calls do
        nothing). Opening the App and starting a worker call this. ConfigurationError if an
        entry point cannot be loaded or gives no Hook."""
        self.hooks.load_entry_points()

    @property
    def tasks(self) -> Mapping[str, Task[Any, Any]]:
        """The registered tasks by name."""
        return self.registry.tasks

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
        pool: PoolKind | None = None,
        hard_timeout: float | None = None,
        rate_limit: str | None = None,
        concurrency_limit: int | None = None,
        concurrency_key: Callable[..., Any] | None = None,
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
        pool: PoolKind | None = None,
        hard_timeout: float | None = None,
        rate_limit: str | None = None,
        concurrency_limit: int | None = None,
        concurrency_key: Callable[..., Any] | None = None,
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

        ``pool`` chooses where a plain ``def`` task runs: ``"thread"`` or ``"process"`` (None:
        the worker's ``sync_pool``). ``hard_timeout`` (seconds) kills the task's process when
        it runs that long; it needs the process pool (a thread cannot be killed), so a task
        with one runs there. ConfigurationError for either on an ``async def`` task, for a
        hard timeout with ``pool="thread"`` or shorter than ``timeout``.

        ``rate_limit`` (``"100/s"``, ``"20/m"``, ``"500/h"``) limits how often the task starts,
        ``concurrency_limit`` how many run at once per ``concurrency_key(the task's arguments
        it names)``, across every worker (docs/guide/rate-limits.md); ConfigurationError if bad.
        """
        options = TaskOptions(
            name, queue, priority, timeout, retry, ignore_result, partitions, pool, hard_timeout,
            rate_limit, concurrency_limit, concurrency_key,
        )  # fmt: skip

        def register(fn: Callable[..., Any]) -> Task[Any, Any]:
            return self.registry.add(fn, options)

        return register if func is None else register(func)

    @property
    def periodic_entries(self) -> Mapping[str, PeriodicEntry]:
        """The periodic entries by name (the name of each entry's task)."""
        return self.registry.periodic

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
        options = TaskOptions(name, queue, priority, timeout, retry)
        schedule = schedule_of(every=every, cron=cron, timezone=timezone, start=start)
        when = PeriodicOptions(schedule, args, kwargs, catch_up)

        def register(fn: Callable[..., Any]) -> Task[Any, Any]:
            return self.registry.add_periodic(fn, options, when)

        return cast(_TaskDecorator, register)

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> App:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self, *, connection_name: str | None = None, connection: Any = None) -> None:
        """Connect to the broker and open the result store (``async with app:`` calls this).

        ``connection``: an aio-pika robust connection the application already holds (with
        ``transport="aio-pika"``): the App then opens its channels on it, and leaves it open
        when it closes. ConfigurationError with the native transport.
        """
        if self.sender.is_attached:
            raise LifecycleError(f"App {self.name!r} is already open")
        self.load_entry_point_hooks()
        name = connection_name or f"taskq:{self.name}"
        self.attach(*await self.connect(name, connection=connection))
        try:
            self._in_process = await start_in_process_worker(self)
        except BaseException:
            await self.close()
            raise

    async def connect(
        self, connection_name: str, *, concurrency: int | None = None, connection: Any = None
    ) -> tuple[Transport, ResultStore]:
        """A new connected transport and open result store, owned by the caller.

        A worker uses its own, so that one App can send and run tasks in one process; it
        gives its ``concurrency``, which sizes the store's connection pool where it has one.
        """
        transport = transport_for(self.settings, connection_name, connection)
        await transport.connect()
        try:
            store = await open_store(self.settings, transport, concurrency, self._custom_store)
        except BaseException:
            await transport.close()
            raise
        return transport, store

    def attach(self, transport: Transport, store: ResultStore) -> None:
        """Use ``transport`` and ``store`` for sending (what ``open`` does with new ones)."""
        self.sender.attach(transport, store, self.settings)

    @property
    def is_open(self) -> bool:
        """Whether the App can send tasks now."""
        return self.sender.is_attached

    @property
    def sync(self) -> SyncClient:
        """A blocking facade for code without an event loop (``app.sync.send(...)``; see
        taskq.sync). Opens the App on its own loop thread at first use."""
        self._sync = SyncClient.of(self, self._sync)
        return self._sync

    async def close(self) -> None:
        """Close the result store and the connections (idempotent)."""
        if not self.sender.is_attached:
            return
        if self._in_process is not None:  # its tasks finish before the store closes
            in_process, self._in_process = self._in_process, None
            await in_process.aclose()
        transport, store = self.sender.transport, self.sender.store
        self.sender.detach()
        await store.close()
        await transport.close()

    def detach(self) -> None:
        """Stop using the attached transport and store without closing them."""
        self.sender.detach()

    @property
    def transport(self) -> Transport:
        """The open transport; LifecycleError outside ``async with app:``."""
        return self.sender.transport

    @property
    def store(self) -> ResultStore:
        """The open result store; LifecycleError outside ``async with app:``."""
        return self.sender.store

    # -- sending -----------------------------------------------------------------------------

    def named(self, name: str) -> TaskCall[..., Any]:
        """A sendable view of the task called ``name``, registered here or not (an unregistered
        name goes to the default queue unchecked; the worker that knows it validates them)."""
        task = self.tasks.get(name) or unknown_task(self, name, self.settings.default_queue)
        return TaskCall(task, SendOptions())

    async def send(self, name: str, /, *args: Any, **kwargs: Any) -> TaskHandle[Any]:
        """Send the task called ``name`` (see ``named`` for options)."""
        return await self.named(name).delay(*args, **kwargs)

    def handle(self, task_id: str, task_name: str = "") -> TaskHandle[Any]:
        """A handle for a task sent earlier (by ID). Needs a durable store to see other
        processes' tasks; results come back untyped unless ``task_name`` is registered here."""
        task = self.tasks.get(task_name)
        validate = task.validate_result if task is not None else None
        return TaskHandle(
            task_id, task_name, self.store, validate, owned=False,
            canceller=self.sender.canceller,
        )  # fmt: skip

    async def cancel(
        self, task_id: str, *, reason: str = "", wait: bool = False, timeout: float = DEFAULT_WAIT
    ) -> CancelResult:
        """Cancel task ``task_id`` wherever it is, sent by any process (see taskq.cancel and
        docs/guide/cancellation.md; ``TaskHandle.cancel`` says what it does)."""
        return await cancel_task(self, task_id, reason=reason, wait=wait, timeout=timeout)

    async def send_many(self, calls: Iterable[SendItem]) -> list[TaskHandle[Any]]:
        """Send many tasks with pipelined publisher confirms; return their handles in order.

        Each call is ``(task, args)`` or ``(task, args, kwargs)``, where ``task`` is a Task,
        a TaskCall (with options) or a task name. Every call is checked before anything is
        sent. All or error: if a publish fails, the rest still finish and PublishError names
        the task IDs not confirmed.
        """
        return await self.sender.send_many(calls, self.named)

    def partition_for(self, queue: str, key: str | bytes | int | None, task_id: str) -> int | None:
        """The partition of ``queue`` a task goes to: by ``key`` if given, else by its ID
        (None when the queue is not partitioned)."""
        return partition_for(self.settings, queue, key, task_id)
