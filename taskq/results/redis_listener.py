"""The Redis store's listener: one pub/sub connection per store, read by exactly one task.

A store that waits has a channel of its own (``{prefix}:notify:{hex}``). Workers publish a
task's terminal state there when a waiter of this store registered for the task (see
``taskq.results.redis``). The listener subscribes to that one channel and hands each
published state to the waiters of its task.

Only the reader task ever calls a method of the PubSub object (subscribe, get_message, ping,
aclose). Waiters touch asyncio-level state only (their :class:`Watch`), never the connection:
redis-py's connection is not safe for two readers, and a reconnect handshake reads the socket
too, so a second coroutine on it fails with "readuntil() called while another coroutine is
already waiting for incoming data".

After any pub/sub error the reader marks the subscription lost, wakes every waiter (a publish
may have been missed while it was down), reconnects with backoff (0.1 s doubling to 2 s),
subscribes again, and wakes every waiter once more when Redis confirms it, so that each
re-reads (and registers again). An idle connection is checked with a PING: no reply to it
counts as a lost connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..exceptions import DecodeError
from ..redact import redact_url
from .base import TaskState

if TYPE_CHECKING:
    from redis.asyncio.client import PubSub

log = logging.getLogger("taskq.results")

_FIRST_BACKOFF = 0.1
_MAX_BACKOFF = 2.0
_IDLE = 5.0
"""Seconds without a message before the reader PINGs; as long again without a reply: lost."""


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

    ``pubsub`` makes a new PubSub object (on a connection without redis-py retries: the
    reader decides when to reconnect). ``errors`` are the exceptions that mean "Redis is
    unreachable or refused"; the reader survives every other exception too, logged.
    """

    def __init__(
        self,
        pubsub: Callable[[], PubSub],
        channel: str,
        errors: tuple[type[BaseException], ...],
    ) -> None:
        self.channel = channel
        self._pubsub = pubsub
        self._errors = errors
        self._watches: dict[str, set[Watch]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._subscribed = False
        self._closed = False
        self._backoff = _FIRST_BACKOFF
        self._failures = 0

    @property
    def subscribed(self) -> bool:
        """Whether Redis confirmed the subscription and it has not been lost since: a waiter
        that registers now is told of its task's terminal write."""
        return self._subscribed

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (waiters must stop waiting)."""
        return self._closed

    def start(self) -> None:
        """Start the reader unless it runs already (or the listener is closed)."""
        if self._reader is None and not self._closed:
            self._reader = asyncio.get_running_loop().create_task(
                self._read(), name=f"taskq-redis-listener {self.channel}"
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
        # Python 3.11's asyncio.wait_for (used by redis-py when it connects) swallows a
        # cancellation that arrives as the call it wraps completes: cancel until it ends.
        while reader is not None and not reader.done():
            reader.cancel()
            await asyncio.wait({reader}, timeout=0.1)
        self._wake_all()

    # -- the reader task: the only code that touches the PubSub object ------------------------

    async def _read(self) -> None:
        while not self._closed:
            pubsub = self._pubsub()
            try:
                await self._listen(pubsub)
            except self._errors as exc:
                self._lost(exc)
            except Exception:
                # A bug here must not strand every waiter: log it and start over.
                log.exception("the Redis pub/sub reader failed; reconnecting")
                self._lost(None)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, _MAX_BACKOFF)

    async def _listen(self, pubsub: PubSub) -> None:
        """Subscribe, then hand out messages until the connection fails (raises)."""
        await pubsub.subscribe(self.channel)
        pinged = False
        while not self._closed:
            message = await pubsub.get_message(timeout=_IDLE)
            if message is None:
                if pinged:
                    raise TimeoutError(f"no reply to PING within {_IDLE} s")
                await pubsub.ping()
                pinged = True
                continue
            pinged = False
            kind = message.get("type")
            if kind == "subscribe":
                self._confirmed()
            elif kind == "message":
                self._dispatch(message["data"])

    def _confirmed(self) -> None:
        if self._failures:
            log.info("Redis pub/sub subscribed again after %d failure(s)", self._failures)
        self._subscribed = True
        self._backoff = _FIRST_BACKOFF
        self._failures = 0
        self._wake_all()  # publishes made while unsubscribed are lost: everyone re-reads

    def _lost(self, exc: BaseException | None) -> None:
        was_subscribed, self._subscribed = self._subscribed, False
        self._failures += 1
        if exc is not None:
            # The first failure is news; the retries of one outage are not.
            level = logging.WARNING if self._failures == 1 else logging.DEBUG
            log.log(
                level,
                "Redis pub/sub connection failed (%s); reconnecting in %.1f s, waiters re-read"
                " meanwhile",
                redact_url(str(exc) or type(exc).__name__), self._backoff,
            )  # fmt: skip
        if was_subscribed:
            self._wake_all()  # a publish may have been missed

    def _dispatch(self, data: Any) -> None:
        try:
            state = TaskState.decode(data)
        except DecodeError as exc:
            log.warning("ignoring a malformed state published on %s: %s", self.channel, exc)
            return
        if not state.status.terminal:
            return  # only terminal states are published; anything else is not ours
        for watch in self._watches.get(state.task_id, ()):
            watch.published = state
            watch.wake()

    def _wake_all(self) -> None:
        for watches in self._watches.values():
            for watch in watches:
                watch.wake()
