"""Hooks: typed extension points on the send path and in the worker.

Subclass :class:`Hook`, override the methods you need, and register an instance with
``app.add_hook(hook)`` (or through the ``taskq.hooks`` entry point group: see
docs/guide/hooks.md). Methods not overridden cost nothing: a :class:`Hooks` chain keeps, per
method, the bound methods of the hooks that override it, and the callers skip an empty one.

Order: hooks run in the order they were added for the "before" methods (``before_send``,
``on_process_init``, ``on_worker_start``, ``before_run``) and in reverse order for the ones
that close them (``after_send``, ``on_worker_stop``, ``after_run``), as nested context
managers would; the outcome methods (``on_received``, ``on_success``, ``on_failure``,
``on_retry``, ``on_dead_letter``, ``on_cancel``) run in the order added.

Errors: an exception raised by a hook is logged (logger ``taskq.hooks``) and counted
(``Hooks.errors``; a worker's ``hook_errors`` stat and the ``taskq_hook_errors`` metric), and
the task goes on as if the hook had returned. The one exception is :class:`SendRefused` raised
by ``before_send``: it refuses the send (nothing is published, the caller gets it).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .context import TaskContext
from .exceptions import ConfigurationError, SendRefused
from .message import Envelope
from .results.base import ErrorInfo

if TYPE_CHECKING:
    from .app import App
    from .transport import Delivery
    from .worker import Worker

log = logging.getLogger("taskq.hooks")

ENTRY_POINT_GROUP = "taskq.hooks"
"""The entry point group whose hooks an App loads when it opens or its worker starts."""

T = TypeVar("T")


@dataclasses.dataclass(slots=True)
class Sending:
    """One new task message about to be published (``before_send``) or confirmed by the
    broker (``after_send``).

    ``headers`` are added to the message's AMQP headers (``before_send`` may add to them;
    names starting with ``x-taskq-`` are taskq's own and refused); the worker's hooks read
    them as ``run.headers`` and the task as ``taskq.current().headers``. ``context`` is the
    context of the task that sends this one, when sent from inside a running task.
    """

    envelope: Envelope
    headers: dict[str, Any]
    context: TaskContext | None
    state: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The hooks' own, from ``before_send`` to ``after_send`` (a span): under a key of your
    own. A send that fails after ``before_send`` gets no ``after_send``."""


@dataclasses.dataclass(slots=True)
class TaskRun:
    """One run of a task's function, seen by ``before_run`` and then ``after_run``.

    ``after_run`` finds ``runtime`` (seconds the function ran), and either ``result`` or the
    ``exception`` it raised (a ``Retry`` or ``Reject`` too; ``CancelledError`` when the worker
    stopped it). ``state`` is the hooks' own: keep there what ``after_run`` needs from
    ``before_run`` (a span, a timer), under a key of your own. ``next_headers``, set by
    ``before_run`` or ``after_run``, are added to the headers of the next attempt's message if
    this one is retried (a link to this attempt's span, say); names are strings, and
    ``x-taskq-*`` ones are taskq's and left out.
    """

    envelope: Envelope
    context: TaskContext
    runtime: float | None = None
    result: Any = None
    exception: BaseException | None = None
    state: dict[str, Any] = dataclasses.field(default_factory=dict)
    next_headers: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def headers(self) -> Mapping[str, Any]:
        """The headers the message was sent with (what ``before_send`` hooks added)."""
        return self.envelope.headers


@dataclasses.dataclass(frozen=True, slots=True)
class TaskDone:
    """An outcome, recorded: ``on_success`` (with ``result``), ``on_failure`` (the last
    attempt failed: ``error``), ``on_retry`` (``error``, and the ``delay`` in seconds
    before the next attempt) or ``on_cancel`` (``error.message`` is the cancel's reason).
    ``runtime``: seconds the function ran (0 for a cancelled task that never ran)."""

    envelope: Envelope
    runtime: float
    result: Any = None
    error: ErrorInfo | None = None
    delay: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLettered:
    """A message put in its queue's ``.dead`` queue with ``reason`` (see taskq.outcome).
    ``envelope`` is None when the message could not be decoded; ``runtime`` is None when
    the task never ran."""

    delivery: Delivery
    envelope: Envelope | None
    reason: str
    error: ErrorInfo
    runtime: float | None


class Hook:
    """Base class of hooks: every method does nothing; override the ones you need.

    Client side: ``before_send``, ``after_send``. Worker side: ``on_process_init``,
    ``on_worker_start``, ``on_worker_stop``, ``on_received``, ``before_run``, ``after_run``,
    ``on_success``, ``on_failure``, ``on_retry``, ``on_dead_letter``, ``on_cancel``. Every
    method is
    ``async`` except ``on_process_init`` (a process may have no event loop yet) and
    ``on_received`` (called from the consumer's callback, which must not wait): keep those
    quick. mypy checks an override's signature against these.
    """

    async def before_send(self, send: Sending) -> None:
        """A new task message is about to be published (a send, a batch, a periodic firing;
        not a retry or a dead-lettering of an existing one). Add to ``send.headers``; raise
        SendRefused to refuse the send."""

    async def after_send(self, send: Sending) -> None:
        """The broker confirmed the message (for a periodic firing: the scheduler committed
        it)."""

    def on_process_init(self) -> None:
        """Once in each worker process, before it runs a task: the worker's main process at
        start, and each child of a process pool (see :func:`init_process`)."""

    async def on_worker_start(self, worker: Worker) -> None:
        """The worker is connected and about to consume."""

    async def on_worker_stop(self, worker: Worker) -> None:
        """The worker stopped consuming and drained; its connections are still open."""

    def on_received(self, delivery: Delivery) -> None:
        """A delivery arrived and waits for a slot (synchronous: do not block)."""

    async def before_run(self, run: TaskRun) -> None:
        """The task's function is about to run (``taskq.current()`` is its context).
        A context variable set here is seen by the function; reset it in ``after_run``."""

    async def after_run(self, run: TaskRun) -> None:
        """The function returned or raised (see :class:`TaskRun`); its outcome is not
        recorded yet. Called once for every ``before_run``."""

    async def on_success(self, done: TaskDone) -> None:
        """The task's result was recorded."""

    async def on_failure(self, done: TaskDone) -> None:
        """The task's last attempt failed and the failure was recorded."""

    async def on_retry(self, done: TaskDone) -> None:
        """The task will run again after ``done.delay`` seconds (the retry is published)."""

    async def on_dead_letter(self, dead: DeadLettered) -> None:
        """The message was published to the dead-letter queue."""

    async def on_cancel(self, done: TaskDone) -> None:
        """The task was cancelled (never run, or stopped) and CANCELLED was recorded."""


_FORWARD = ("before_send", "on_process_init", "on_worker_start", "before_run", "on_received",
            "on_success", "on_failure", "on_retry", "on_dead_letter", "on_cancel")  # fmt: skip
_REVERSED = ("after_send", "on_worker_stop", "after_run")


def _overrides(hook: Hook, name: str) -> bool:
    return getattr(type(hook), name) is not getattr(Hook, name)


class Hooks:
    """An ordered chain of hooks. Each method name is an attribute holding the bound methods
    of the hooks that override it, in calling order (empty: nothing to call)."""

    before_send: tuple[Callable[[Sending], Awaitable[None]], ...]
    after_send: tuple[Callable[[Sending], Awaitable[None]], ...]
    on_process_init: tuple[Callable[[], None], ...]
    on_worker_start: tuple[Callable[[Worker], Awaitable[None]], ...]
    on_worker_stop: tuple[Callable[[Worker], Awaitable[None]], ...]
    on_received: tuple[Callable[[Delivery], None], ...]
    before_run: tuple[Callable[[TaskRun], Awaitable[None]], ...]
    after_run: tuple[Callable[[TaskRun], Awaitable[None]], ...]
    on_success: tuple[Callable[[TaskDone], Awaitable[None]], ...]
    on_failure: tuple[Callable[[TaskDone], Awaitable[None]], ...]
    on_retry: tuple[Callable[[TaskDone], Awaitable[None]], ...]
    on_dead_letter: tuple[Callable[[DeadLettered], Awaitable[None]], ...]
    on_cancel: tuple[Callable[[TaskDone], Awaitable[None]], ...]

    def __init__(self, hooks: Iterable[Hook] = ()) -> None:
        self.errors = 0
        """Exceptions raised by hooks of this chain (each logged)."""
        self._hooks: list[Hook] = []
        self._entry_points_loaded = False
        self.replace(hooks)

    def __iter__(self) -> Iterator[Hook]:
        return iter(list(self._hooks))

    def __len__(self) -> int:
        return len(self._hooks)

    def add(self, hook: Hook) -> None:
        """Append ``hook``; ConfigurationError if it is not a Hook."""
        self.replace([*self._hooks, hook])

    def load_entry_points(self) -> None:
        """Append the hooks of the ``taskq.hooks`` entry point group, the first time only;
        ConfigurationError if an entry point cannot be loaded or gives no Hook."""
        if not self._entry_points_loaded:
            self.replace([*self._hooks, *entry_point_hooks()])
            self._entry_points_loaded = True

    def remove(self, hook: Hook) -> None:
        """Take ``hook`` out of the chain (nothing if it is not in it)."""
        self.replace([each for each in self._hooks if each is not hook])

    def replace(self, hooks: Iterable[Hook]) -> None:
        """Make ``hooks`` the chain (the error count is kept)."""
        hooks = list(hooks)
        for hook in hooks:
            if not isinstance(hook, Hook):
                raise ConfigurationError(f"{hook!r} is not a taskq.hooks.Hook")
        self._hooks = hooks
        for name in _FORWARD:
            setattr(self, name, tuple(getattr(h, name) for h in hooks if _overrides(h, name)))
        for name in _REVERSED:
            chosen = [getattr(h, name) for h in reversed(hooks) if _overrides(h, name)]
            setattr(self, name, tuple(chosen))

    async def notify(self, methods: Iterable[Callable[[T], Awaitable[None]]], arg: T) -> None:
        """Await each method with ``arg``; one that raises is logged and counted."""
        for method in methods:
            try:
                await method(arg)
            except Exception:
                self.failed(method)

    def notify_sync(self, methods: Iterable[Callable[[T], None]], arg: T) -> None:
        """Call each (synchronous) method with ``arg``; one that raises is logged and counted."""
        for method in methods:
            try:
                method(arg)
            except Exception:
                self.failed(method)

    async def before_sending(self, send: Sending) -> None:
        """Run ``before_send``: SendRefused goes to the caller, other errors are counted."""
        for method in self.before_send:
            try:
                await method(send)
            except SendRefused:
                raise
            except Exception:
                self.failed(method)
        for name in send.headers:
            if not is_hook_header(name):
                raise ConfigurationError(
                    f"hook header {name!r}: header names are strings and x-taskq-* is taskq's"
                )

    def process_init(self) -> None:
        """Run every ``on_process_init`` (errors logged and counted)."""
        for method in self.on_process_init:
            try:
                method()
            except Exception:
                self.failed(method)

    def failed(self, method: Callable[..., Any]) -> None:
        """Log and count the exception being handled, raised by hook method ``method``."""
        self.errors += 1
        log.exception("hook %s failed; carrying on without it", _name_of(method))


def is_hook_header(name: object) -> bool:
    """Whether hooks may set a header named ``name``: a string, not one of taskq's."""
    return isinstance(name, str) and not name.startswith("x-taskq-")


def _name_of(method: Callable[..., Any]) -> str:
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", repr(method))
    return f"{type(owner).__qualname__}.{name}" if owner is not None else name


def entry_point_hooks(group: str = ENTRY_POINT_GROUP) -> list[Hook]:
    """The hooks named by installed packages' entry points in ``group``, sorted by entry
    point name. An entry point names a Hook instance, or a class (or any callable) that
    returns one when called with no arguments. ConfigurationError if one cannot be loaded or
    is not a Hook."""
    found = []
    for point in sorted(importlib.metadata.entry_points(group=group), key=lambda p: p.name):
        try:
            target = point.load()
            hook = target() if callable(target) and not isinstance(target, Hook) else target
        except Exception as exc:
            raise ConfigurationError(
                f"cannot load hook entry point {point.name!r} ({point.value}): {exc!r}"
            ) from exc
        if not isinstance(hook, Hook):
            raise ConfigurationError(
                f"hook entry point {point.name!r} ({point.value}) gave {hook!r}, not a Hook"
            )
        found.append(hook)
    return found


def init_process(app: App) -> None:
    """Run the ``on_process_init`` hooks of ``app`` (its entry point hooks loaded first):
    a process pool calls this once in each of its child processes."""
    app.load_entry_point_hooks()
    app.hooks.process_init()
