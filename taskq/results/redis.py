"""The durable result store: task states in Redis, readable by ID from any process.

``App(..., results="redis://127.0.0.1:6379/0")`` (needs ``pip install 'taskq[redis]'``).

Each task is one hash ``{prefix}:task:{id}`` with the fields ``status``, ``attempt``, ``name``,
``worker``, ``result`` (msgpack), ``error_type``, ``error_message``, ``error_traceback``,
``progress``, ``progress_message``, ``sent_at``, ``started_at``, ``finished_at`` and
``updated_at`` (an empty string means "none"). Every write sets the key's TTL to
``settings.result_ttl`` (``None``: the key never expires).

Guarantees:

- A status never moves backwards: every write is a compare-and-set in one Lua script, with the
  rule of ``TaskState.supersedes`` (a terminal state is final; else a later attempt wins; else
  PENDING < STARTED < RETRYING < SUCCESS | FAILURE). A late STARTED after SUCCESS is ignored.
- ``record`` returns only once Redis has the state, and raises ResultUnavailable if Redis
  cannot be reached (the worker then keeps the delivery unacked and retries).
- Sending records PENDING only if the task is unknown: sending an ID again never resets a
  stored state, so the worker sees the first SUCCESS and skips the task.
- Waiters are woken by a publish on ``{prefix}:done:{id}`` that the same script sends with a
  terminal write; a re-read with backoff (0.2 s doubling to 2 s) covers a lost subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from .. import codec
from ..exceptions import ConfigurationError, DecodeError, ResultTimeout, ResultUnavailable
from ..redact import redact_url
from ..transport import Transport
from .base import _RANK, ErrorInfo, TaskState, TaskStatus

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub
    from redis.commands.core import AsyncScript

log = logging.getLogger("taskq.results")

# KEYS: task hash, done channel. ARGV: status, terminal (0|1), attempt, rank, now, ttl_ms
# (0 = keep), the encoded state to publish if terminal, then field/value pairs. The comparison
# mirrors TaskState.supersedes.
_RECORD = """
local cur = redis.call('HMGET', KEYS[1], 'terminal', 'attempt', 'rank')
if cur[1] then
  if cur[1] == '1' then return 0 end
  if ARGV[2] ~= '1' then
    local old_attempt, new_attempt = tonumber(cur[2]), tonumber(ARGV[3])
    if new_attempt < old_attempt then return 0 end
    if new_attempt == old_attempt and tonumber(ARGV[4]) < tonumber(cur[3]) then return 0 end
  end
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'terminal', ARGV[2], 'attempt', ARGV[3],
           'rank', ARGV[4], 'updated_at', ARGV[5], unpack(ARGV, 8))
if ARGV[1] == 'STARTED' then redis.call('HSETNX', KEYS[1], 'started_at', ARGV[5]) end
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'finished_at', ARGV[5])
  redis.call('PUBLISH', KEYS[2], ARGV[7])
end
if tonumber(ARGV[6]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[6])
else redis.call('PERSIST', KEYS[1]) end
return 1
"""

# KEYS: task hash. ARGV: task name, now, ttl_ms. PENDING only for an unknown task.
_TRACK = """
local created = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'status', 'PENDING', 'terminal', '0', 'attempt', '0', 'rank', '0',
             'name', ARGV[1], 'updated_at', ARGV[2])
  created = 1
end
redis.call('HSETNX', KEYS[1], 'sent_at', ARGV[2])
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3])
else redis.call('PERSIST', KEYS[1]) end
return created
"""

_FIRST_RECHECK = 0.2
_POOL_SIZE = 32
_MAX_RECHECK = 2.0


def _connection_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (RedisConnectionError, RedisTimeoutError, OSError)


class RedisResultStore:
    """Task states in Redis: durable (with TTL), visible by ID from any process."""

    durable = True

    def __init__(self, url: str, transport: Transport) -> None:
        try:
            import redis.asyncio
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise ConfigurationError(
                "the Redis result store needs the redis package: pip install 'taskq[redis]'"
            ) from None
        settings = transport.settings
        self._url = redact_url(url)
        self._prefix = transport.names.prefix
        ttl = settings.result_ttl
        self._ttl_ms = 0 if ttl is None else max(1, int(ttl * 1000))
        # One immediate retry replaces a pooled connection that a Redis restart killed; longer
        # outages are the caller's to handle (the worker retries with backoff).
        # A blocking pool: a burst of waiters queues for a connection instead of failing with
        # "Too many connections" (the plain async pool raises at its limit).
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=_POOL_SIZE,
            timeout=settings.connect_timeout,
            socket_connect_timeout=settings.connect_timeout,
            socket_timeout=settings.connect_timeout,
            retry=Retry(NoBackoff(), 1),
        )
        self._redis: Redis = redis.asyncio.Redis(connection_pool=pool)
        self._record_script: AsyncScript = self._redis.register_script(_RECORD)
        self._track_script: AsyncScript = self._redis.register_script(_TRACK)
        self._errors = _connection_errors()
        self._tracking: set[asyncio.Task[None]] = set()
        self._waiters = _Waiters(self._redis, self._errors)

    def __repr__(self) -> str:
        return f"<RedisResultStore {self._url} prefix={self._prefix!r}>"

    def key(self, task_id: str) -> str:
        """The Redis key of ``task_id``'s hash."""
        return f"{self._prefix}:task:{task_id}"

    def channel(self, task_id: str) -> str:
        """The pub/sub channel announcing ``task_id``'s terminal state."""
        return f"{self._prefix}:done:{task_id}"

    async def open(self) -> None:
        try:
            await self._redis.ping()
        except self._errors as exc:
            await self._redis.aclose(close_connection_pool=True)
            raise ResultUnavailable(
                f"cannot reach the Redis result store at {self._url}: {redact_url(str(exc))}"
            ) from None

    async def close(self) -> None:
        for task in list(self._tracking):
            task.cancel()
        await self._waiters.close()
        await self._redis.aclose(close_connection_pool=True)

    def reply_to(self) -> str | None:
        return None  # waiters learn of outcomes from Redis, not from an AMQP reply queue

    def track(self, task_id: str, task_name: str) -> None:
        # Sync by protocol, so the PENDING write runs in the background; a state written by a
        # worker first is never overwritten (the script only creates an unknown task).
        task = asyncio.get_running_loop().create_task(self._track(task_id, task_name))
        self._tracking.add(task)
        task.add_done_callback(self._tracking.discard)

    async def _track(self, task_id: str, task_name: str) -> None:
        try:
            await self._track_script(
                keys=[self.key(task_id)], args=[task_name, repr(time.time()), self._ttl_ms]
            )
        except self._errors as exc:
            log.warning("could not record task %s as PENDING in Redis: %s", task_id, exc)

    def forget(self, task_id: str) -> None:
        """Nothing to drop: states live in Redis until their TTL."""

    async def reset(self, task_id: str) -> None:
        try:
            await self._redis.delete(self.key(task_id))
        except self._errors as exc:
            raise ResultUnavailable(
                f"could not reset task {task_id} in Redis at {self._url}: {exc}"
            ) from None

    async def record(self, state: TaskState, *, reply_to: str | None) -> None:
        fields = _fields(state)  # EncodeError here, before anything is written
        terminal = "1" if state.status.terminal else "0"
        args: list[Any] = [
            state.status.value,
            terminal,
            state.attempt,
            _RANK[state.status],
            repr(time.time()),
            self._ttl_ms,
            state.encode() if state.status.terminal else b"",
            *fields,
        ]
        try:
            await self._record_script(
                keys=[self.key(state.task_id), self.channel(state.task_id)], args=args
            )
        except self._errors as exc:
            raise ResultUnavailable(
                f"could not record task {state.task_id} in Redis at {self._url}: {exc}"
            ) from None

    async def get(self, task_id: str) -> TaskState | None:
        try:
            raw = await self._redis.hgetall(self.key(task_id))
        except self._errors as exc:
            raise ResultUnavailable(
                f"could not read task {task_id} from Redis at {self._url}: {exc}"
            ) from None
        return _state(task_id, raw) if raw else None

    async def wait(self, task_id: str, timeout: float | None) -> TaskState:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        recheck = _FIRST_RECHECK
        channel = self.channel(task_id)
        async with self._waiters.watch(channel) as done:
            while True:
                done.clear()  # before reading: a publish after the read wakes us
                error: ResultUnavailable | None = None
                state = self._waiters.published(channel)
                try:
                    if state is None:
                        state = await self.get(task_id)
                except ResultUnavailable as exc:
                    state, error = None, exc
                if state is not None and state.status.terminal:
                    return state
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    raise _gave_up(task_id, timeout, state, error)
                pause = recheck if remaining is None else min(recheck, remaining)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), pause)
                recheck = min(recheck * 2, _MAX_RECHECK)


def _gave_up(
    task_id: str, timeout: float | None, state: TaskState | None, error: ResultUnavailable | None
) -> Exception:
    if error is not None:
        return ResultUnavailable(f"gave up waiting for task {task_id}: {error}")
    status = state.status.value if state is not None else "unknown"
    return ResultTimeout(
        f"task {task_id} gave no outcome within {timeout} s (last status {status})"
    )


class _Waiters:
    """One pub/sub connection shared by every waiter of a store: a channel per awaited task."""

    def __init__(self, client: Redis, errors: tuple[type[BaseException], ...]) -> None:
        self._client = client
        self._errors = errors
        self._pubsub: PubSub | None = None
        self._events: dict[str, set[asyncio.Event]] = {}
        self._published: dict[str, TaskState] = {}
        self._subscribed: dict[str, asyncio.Future[None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._have_channels = asyncio.Event()
        self._lost = False

    @contextlib.asynccontextmanager
    async def watch(self, channel: str) -> AsyncIterator[asyncio.Event]:
        """An event set whenever ``channel`` announces a terminal state (or may have)."""
        event = asyncio.Event()
        events = self._events.setdefault(channel, set())
        events.add(event)
        try:
            await self._subscribe(channel)
            yield event
        finally:
            events.discard(event)
            if not events:
                del self._events[channel]
                self._published.pop(channel, None)
                self._subscribed.pop(channel, None)
                await self._unsubscribe(channel)

    async def _subscribe(self, channel: str) -> None:
        ready = self._subscribed.get(channel)
        if ready is None:
            ready = self._subscribed[channel] = asyncio.get_running_loop().create_future()
            try:
                if self._pubsub is None:
                    self._pubsub = self._client.pubsub()
                await self._pubsub.subscribe(channel)
            except self._errors as exc:
                # Waiters fall back to re-reading with backoff; the reader subscribes again.
                log.warning("could not subscribe to %s: %s", channel, exc)
                self._lost = True
            finally:
                ready.set_result(None)
            self._have_channels.set()
            if self._reader is None:
                self._reader = asyncio.get_running_loop().create_task(self._read())
        await asyncio.shield(ready)

    async def _unsubscribe(self, channel: str) -> None:
        if self._pubsub is None:
            return
        try:
            await self._pubsub.unsubscribe(channel)
        except self._errors as exc:
            log.debug("unsubscribe from %s failed: %s", channel, exc)

    async def _read(self) -> None:
        pause = _FIRST_RECHECK
        while True:
            pubsub = self._pubsub
            if not self._events or pubsub is None:
                self._have_channels.clear()
                await self._have_channels.wait()
                continue
            try:
                if self._lost:
                    await pubsub.subscribe(*self._events)
                    self._lost = False
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except self._errors as exc:
                log.warning("Redis pub/sub lost (%s); waiters re-read with backoff", exc)
                self._lost = True
                self._wake_all()  # a publish may have been missed: let every waiter re-read
                await asyncio.sleep(pause)
                pause = min(pause * 2, _MAX_RECHECK)
                continue
            pause = _FIRST_RECHECK
            if message is not None and message.get("type") == "message":
                channel = message["channel"]
                name = channel.decode() if isinstance(channel, bytes) else str(channel)
                self._dispatch(name, message["data"])

    def _dispatch(self, channel: str, data: Any) -> None:
        events = self._events.get(channel)
        if not events:
            return
        try:
            self._published[channel] = TaskState.decode(data)
        except DecodeError as exc:
            log.warning("ignoring a malformed state published on %s: %s", channel, exc)
        for event in events:
            event.set()

    def published(self, channel: str) -> TaskState | None:
        """The terminal state announced on ``channel`` while it was watched, if any."""
        return self._published.get(channel)

    def _wake_all(self) -> None:
        for events in self._events.values():
            for event in events:
                event.set()

    async def close(self) -> None:
        """Stop the reader and drop the pub/sub connection (idempotent)."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        self._wake_all()
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(*self._errors):
                await pubsub.aclose()  # type: ignore[no-untyped-call]


def _fields(state: TaskState) -> list[Any]:
    """The hash fields of ``state`` as a flat field/value list ("" = none)."""
    error = state.error
    return [
        "name",
        state.task_name,
        "worker",
        state.worker or "",
        "result",
        codec.pack(state.result),
        "error_type",
        error.type if error else "",
        "error_message",
        error.message if error else "",
        "error_traceback",
        error.traceback if error else "",
        "progress",
        "" if state.progress is None else repr(state.progress),
        "progress_message",
        state.progress_message or "",
    ]


def _state(task_id: str, raw: Mapping[Any, Any]) -> TaskState:
    """A TaskState from a task hash as Redis returns it (bytes keys and values)."""

    def text(field: str) -> str:
        value = raw.get(field.encode(), b"")
        return value.decode() if isinstance(value, bytes) else str(value)

    def number(field: str) -> float | None:
        value = text(field)
        return float(value) if value else None

    result = raw.get(b"result")
    error_type = text("error_type")
    return TaskState(
        task_id=task_id,
        status=TaskStatus(text("status")),
        task_name=text("name"),
        attempt=int(text("attempt") or 0),
        result=codec.unpack(result) if result else None,
        error=(
            ErrorInfo(error_type, text("error_message"), text("error_traceback"))
            if error_type
            else None
        ),
        worker=text("worker") or None,
        updated_at=number("updated_at") or 0.0,
        progress=number("progress"),
        progress_message=text("progress_message") or None,
        sent_at=number("sent_at"),
        started_at=number("started_at"),
        finished_at=number("finished_at"),
    )
