"""Waiting without polling, for the durable stores: one listening connection per store, read
by exactly one task, and the waiters it wakes.

A store that waits has a channel of its own (a Redis pub/sub channel, a PostgreSQL LISTEN
channel). Workers send a task's terminal state there when a waiter of this store registered
for the task. A :class:`Listener` runs one reader task that alone owns the listening
connection: a *session* (a coroutine given by the store) connects, subscribes, tells the
listener once the server confirmed the subscription, hands it what arrives, and raises when
the connection is lost. Waiters touch asyncio-level state only (their :class:`Watch`), never
the connection: a connection read by two coroutines fails in ways a caller must never see.

After any failure the reader marks the subscription lost, wakes every waiter (a notification
may have been missed while it was down), reconnects with backoff (0.1 s doubling to 2 s),
subscribes again, and wakes every waiter once more when the server confirms it, so that each
re-reads (and registers again).

:func:`wait_terminal` is the waiting loop both stores share: read (registering once
subscribed), return a terminal state, else sleep until woken or a slow safety re-read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

from ..exceptions import DecodeError, ResultTimeout, ResultUnavailable
from ..redact import redact_url
from .base import TaskState

log = logging.getLogger("taskq.results")

FIRST_BACKOFF = 0.1
MAX_BACKOFF = 2.0
FIRST_RECHECK = 0.5
MAX_RECHECK = 5.0
READ_GRACE = 1.0
"""A read at the deadline may take this long before the waiter gives up on it."""


class Feed(Protocol):
    """What a session tells its listener."""

    def confirmed(self) -> None:
        """The server confirmed the subscription: from now on, registrations are heard."""

    def published(self, state: TaskState) -> None:
        """A terminal state arrived for the waiters of its task."""

    def nudge(self, task_id: str) -> None:
        """``task_id`` changed but its state did not come along: its waiters re-read."""


Session = Callable[[Feed], Awaitable[None]]
"""Connects, subscribes, feeds the listener, and returns or raises only once the connection is
lost; it releases its connection before it ends."""


class Watch:
    """One waiter's interest in one task's terminal state."""

    __slots__ = ("_event", "published", "task_id")

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.published: TaskState | None = None
        """The terminal state published for the task while watched, if any."""
        self._event = asyncio.Event()

    def clear(self) -> None:
        """Forget earlier wake-ups: call it just before reading the task's state."""
        self._event.clear()

    def wake(self) -> None:
        """Ask the waiter to look again (a state was published, or may have been missed)."""
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """Wait for a wake-up; False if ``timeout`` seconds passed without one."""
        try:
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            return False
        return True


class Listener:
    """The subscription of one store's channel and the waiters it serves.

    ``session`` is run by the reader task, again after each loss. ``errors`` are the
    exceptions that mean "the server is unreachable or refused" (logged as a warning); the
    reader survives every other exception too, logged with its traceback. ``what`` names the
    connection in logs (e.g. "Redis pub/sub").
    """

    def __init__(
        self,
        session: Session,
        channel: str,
        errors: tuple[type[BaseException], ...],
        what: str,
    ) -> None:
        self.channel = channel
        self._session = session
        self._errors = errors
        self._what = what
        self._watches: dict[str, set[Watch]] = {}
        self._expected: dict[str, TaskState | None] = {}
        self._registered: set[str] = set()
        self._delivered: dict[str, asyncio.Future[None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._subscribed = False
        self._closed = False
        self._backoff = FIRST_BACKOFF
        self._failures = 0

    @property
    def subscribed(self) -> bool:
        """Whether the server confirmed the subscription and it has not been lost since: a
        waiter that registers now is told of its task's terminal write."""
        return self._subscribed

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (waiters must stop waiting)."""
        return self._closed

    @property
    def waiting(self) -> int:
        """How many tasks are watched now."""
        return len(self._watches)

    def expect(self, task_id: str) -> None:
        """Keep ``task_id``'s terminal state if it is published before anyone waits for it
        (a task this process sent, already registered for: its caller may ask later)."""
        self._expected.setdefault(task_id, None)

    def forget(self, task_id: str) -> None:
        """Stop keeping ``task_id``'s state (its handle is gone, or its state was reset)."""
        self._expected.pop(task_id, None)
        self._registered.discard(task_id)
        self._delivered.pop(task_id, None)

    def delivered(self, task_id: str) -> asyncio.Future[None]:
        """A future resolved when the terminal state of an expected task is published here:
        a worker got its message (see ``Transport.publish``)."""
        future = self._delivered.get(task_id)
        if future is None:
            future = self._delivered[task_id] = asyncio.get_running_loop().create_future()
        return future

    def early(self, task_id: str) -> TaskState | None:
        """The terminal state of an expected task, if it was published already."""
        return self._expected.get(task_id)

    def registered(self, task_id: str) -> None:
        """An expected task is registered, while the subscription was confirmed: its outcome
        will be published here, so a waiter need not read it (until the subscription is lost,
        which forgets every such registration)."""
        if task_id in self._expected and self._subscribed:
            self._registered.add(task_id)

    def will_publish(self, task_id: str) -> bool:
        """Whether ``task_id``'s outcome is certain to be published here (see registered)."""
        return task_id in self._registered

    def start(self) -> None:
        """Start the reader unless it runs already (or the listener is closed)."""
        if self._reader is None and not self._closed:
            self._reader = asyncio.get_running_loop().create_task(
                self._read(), name=f"taskq-listener {self.channel}"
            )

    @contextlib.contextmanager
    def watch(self, task_id: str) -> Iterator[Watch]:
        """Watch ``task_id`` for the duration of the block."""
        watch = Watch(task_id)
        watches = self._watches.setdefault(task_id, set())
        watches.add(watch)
        try:
            yield watch
        finally:
            watches.discard(watch)
            if not watches and self._watches.get(task_id) is watches:
                del self._watches[task_id]

    async def close(self) -> None:
        """Stop the reader, drop its connection and wake every waiter (idempotent)."""
        self._closed = True
        self._subscribed = False
        reader, self._reader = self._reader, None
        # Python 3.11's asyncio.wait_for (used by client libraries when they connect)
        # swallows a cancellation that arrives as the call it wraps completes: cancel until
        # it ends.
        while reader is not None and not reader.done():
            reader.cancel()
            await asyncio.wait({reader}, timeout=0.1)
        self._wake_all()

    # -- the reader task: the only code that runs the session --------------------------------

    async def _read(self) -> None:
        while not self._closed:
            try:
                await self._session(self)
                raise ConnectionError(f"the {self._what} connection ended")
            except self._errors as exc:
                self._lost(exc)
            except Exception:
                # A bug here must not strand every waiter: log it and start over.
                log.exception("the %s reader failed; reconnecting", self._what)
                self._lost(None)
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, MAX_BACKOFF)

    def confirmed(self) -> None:
        if self._failures:
            log.info("%s subscribed again after %d failure(s)", self._what, self._failures)
        self._subscribed = True
        self._backoff = FIRST_BACKOFF
        self._failures = 0
        self._wake_all()  # what was sent while unsubscribed is lost: everyone re-reads

    def _lost(self, exc: BaseException | None) -> None:
        was_subscribed, self._subscribed = self._subscribed, False
        self._registered.clear()  # what is published while unsubscribed never arrives
        self._failures += 1
        if exc is not None:
            # The first failure is news; the retries of one outage are not.
            level = logging.WARNING if self._failures == 1 else logging.DEBUG
            log.log(
                level,
                "%s connection failed (%s); reconnecting in %.1f s, waiters re-read meanwhile",
                self._what, redact_url(str(exc) or type(exc).__name__), self._backoff,
            )  # fmt: skip
        if was_subscribed:
            self._wake_all()  # a notification may have been missed

    def published(self, state: TaskState) -> None:
        if not state.status.terminal:
            return  # only terminal states are sent; anything else is not ours
        if state.task_id in self._expected:
            self._expected[state.task_id] = state
            delivered = self._delivered.pop(state.task_id, None)
            if delivered is not None and not delivered.done():
                delivered.set_result(None)
        for watch in self._watches.get(state.task_id, ()):
            watch.published = state
            watch.wake()

    def nudge(self, task_id: str) -> None:
        for watch in self._watches.get(task_id, ()):
            watch.wake()

    def _wake_all(self) -> None:
        for watches in self._watches.values():
            for watch in watches:
                watch.wake()


def decode_published(data: bytes, channel: str) -> TaskState | None:
    """The state encoded in a notification, or None (logged) if it is malformed."""
    try:
        return TaskState.decode(data)
    except DecodeError as exc:
        log.warning("ignoring a malformed state published on %s: %s", channel, exc)
        return None


Read = Callable[[str], Awaitable[TaskState | None]]


async def wait_terminal(
    task_id: str,
    timeout: float | None,
    *,
    listener: Listener,
    get: Read,
    register: Read,
    where: str,
) -> TaskState:
    """Wait until ``task_id`` is SUCCESS or FAILURE, as a durable store's ``wait``.

    ``get`` reads the task's state; ``register`` also asks to be told of its terminal write
    (used once the listener is subscribed). Both raise ResultUnavailable when the store
    cannot answer. Returns the terminal state; raises ResultTimeout at the deadline, or
    ResultUnavailable at the deadline if the last read failed, or once the store is closed.
    ``where`` names the store in errors (e.g. "Redis at redis://host:6379/0").
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    recheck = FIRST_RECHECK
    early = listener.early(task_id)
    if early is not None:
        return early  # published before this caller asked: no read at all
    skip_read = listener.will_publish(task_id)  # the sender registered: the outcome will come
    with listener.watch(task_id) as watch:
        while True:
            if watch.published is not None:
                return watch.published
            if (early := listener.early(task_id)) is not None:
                return early
            if listener.closed:
                raise ResultUnavailable(
                    f"the result store was closed while waiting for task {task_id}"
                )
            watch.clear()  # before reading: a publish or a wake-up after the read counts
            state, error = None, None
            if not skip_read:
                remaining = None if deadline is None else deadline - loop.time()
                read = register if listener.subscribed else get
                state, error = await _look(read, task_id, remaining, where)
                if state is not None and state.status.terminal:
                    return state
            skip_read = False  # a wake-up or the safety re-read: read from now on
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise _gave_up(task_id, timeout, state, error)
            listener.start()  # here, so that reading a finished task opens no connection
            pause = recheck if remaining is None else min(recheck, remaining)
            if not await watch.wait(pause):
                recheck = min(recheck * 2, MAX_RECHECK)


async def _look(
    read: Read, task_id: str, remaining: float | None, where: str
) -> tuple[TaskState | None, ResultUnavailable | None]:
    """Read ``task_id``'s state: the state (None: unknown) and the error if the read failed.

    The read is cut short near the deadline, so that a server that does not answer cannot
    hold a waiter far past it.
    """
    bound = None if remaining is None else max(remaining, READ_GRACE)
    try:
        async with asyncio.timeout(bound):
            return await read(task_id), None
    except ResultUnavailable as exc:
        return None, exc
    except TimeoutError:
        return None, ResultUnavailable(
            f"{where} did not answer for task {task_id} within {bound} s"
        )


def _gave_up(
    task_id: str, timeout: float | None, state: TaskState | None, error: ResultUnavailable | None
) -> Exception:
    if error is not None:
        return ResultUnavailable(f"gave up waiting for task {task_id}: {error}")
    status = state.status.value if state is not None else "unknown"
    return ResultTimeout(
        f"task {task_id} gave no outcome within {timeout} s (last status {status})"
    )
