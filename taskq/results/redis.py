"""The durable result store: task states in Redis, readable by ID from any process.

``App(..., results="redis://127.0.0.1:6379/0")`` (needs ``pip install 'taskq[redis]'``).

Each task is one hash ``{prefix}:task:{id}`` with the fields ``status``, ``attempt``, ``name``,
``worker``, ``result`` (msgpack), ``error_type``, ``error_message``, ``error_traceback``,
``progress``, ``progress_message``, ``sent_at``, ``started_at``, ``finished_at`` and
``updated_at`` (an empty string means "none"), plus ``terminal_writes``: how many terminal
states (SUCCESS or FAILURE) the compare-and-set accepted for this hash. It is 1 once the task
finished and can never exceed 1 while the compare-and-set works (``reset`` drops it with the
hash); the fault suite reads it to count results recorded twice. Every write sets the key's
TTL to ``settings.result_ttl`` (``None``: the key never expires).

Guarantees:

- A status never moves backwards: every write is a compare-and-set in one Lua script, with the
  rule of ``TaskState.supersedes`` (a terminal state is final; else a later attempt wins; else
  PENDING < STARTED < RETRYING < SUCCESS | FAILURE). A late STARTED after SUCCESS is ignored.
- ``record`` returns only once Redis has the state, and raises ResultUnavailable if Redis
  cannot be reached (the worker then keeps the delivery unacked and retries).
- Sending records PENDING only if the task is unknown: sending an ID again never resets a
  stored state, so the worker sees the first SUCCESS and skips the task. That write is best
  effort: a send while Redis is down still goes out (logged), and the worker's states follow.
- ``get``, ``record`` and ``reset`` turn every Redis failure (refused, timed out, an error
  reply) into ResultUnavailable, with the URL's password redacted.
- A caller in ``wait`` gets the terminal state, or ResultTimeout at its deadline, or
  ResultUnavailable at its deadline if its last read of Redis failed; a Redis restart while
  it waits delays it, never fails it otherwise.

How waiting works: each store has its own pub/sub channel ``{prefix}:notify:{hex}``, which one
reader task subscribes to when a waiter first finds its task unfinished (see
``taskq.results.listener`` and ``taskq.results.redis_listener``). Once the subscription is
confirmed, a waiter registers with one script call that adds the store's channel to the set
``{prefix}:waiters:{id}`` (same TTL as the task) and returns the task's hash, in one round
trip. The record script, when it writes a terminal state, publishes the encoded state to every
channel in that set and deletes the set. Both scripts are atomic, so a terminal state written
before the registration is in the hash the waiter reads, and one written after it is published
to the waiter. After the subscription is lost and confirmed again, every waiter reads and
registers again; until then (or if Redis refuses pub/sub, e.g. an ACL without channel rights),
waiters re-read with backoff. A slow safety re-read (0.5 s doubling to 5 s) covers a
notification lost for a reason not foreseen. Closing the store ends every wait with
ResultUnavailable."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import msgpack

from .. import codec
from ..exceptions import ResultUnavailable
from ..extras import require_extra
from ..redact import redact_url
from ..transport import Transport
from .background import Background, InFlight
from .base import STATUS_RANK, ErrorInfo, TaskState, TaskStatus
from .listener import Listener, wait_terminal
from .redis_pipeline import ScriptPipeline

if TYPE_CHECKING:
    from collections.abc import Mapping

    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

log = logging.getLogger("taskq.results")

# KEYS: task hash, waiters set. ARGV: status, terminal (0|1), attempt, rank, now, ttl_ms
# (0 = keep), the encoded state to publish if terminal, the other fields as one msgpack map
# (one argument instead of sixteen: each argument costs the client encoding time). The
# comparison mirrors TaskState.supersedes.
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
local fields = {'status', ARGV[1], 'terminal', ARGV[2], 'attempt', ARGV[3], 'rank', ARGV[4],
                'updated_at', ARGV[5]}
for field, value in pairs(cmsgpack.unpack(ARGV[8])) do
  fields[#fields + 1] = field
  fields[#fields + 1] = value
end
redis.call('HSET', KEYS[1], unpack(fields))
if ARGV[1] == 'STARTED' then redis.call('HSETNX', KEYS[1], 'started_at', ARGV[5]) end
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'finished_at', ARGV[5])
  redis.call('HINCRBY', KEYS[1], 'terminal_writes', 1)
  for _, channel in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    redis.call('PUBLISH', channel, ARGV[7])
  end
  redis.call('DEL', KEYS[2])
end
if tonumber(ARGV[6]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[6])
else redis.call('PERSIST', KEYS[1]) end
return 1
"""

# KEYS: task hash, waiters set. ARGV: task name, now, ttl_ms, this store's channel. PENDING
# only for an unknown task; the sender registers as a waiter at once (its caller may ask).
_TRACK = """
local created = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'status', 'PENDING', 'terminal', '0', 'attempt', '0', 'rank', '0',
             'name', ARGV[1], 'updated_at', ARGV[2])
  created = 1
end
redis.call('HSETNX', KEYS[1], 'sent_at', ARGV[2])
local registered = 0
if redis.call('HGET', KEYS[1], 'terminal') ~= '1' then
  redis.call('SADD', KEYS[2], ARGV[4])
  if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[2], ARGV[3])
  else redis.call('PERSIST', KEYS[2]) end
  registered = 1
end
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3])
else redis.call('PERSIST', KEYS[1]) end
return {created, registered}
"""

# KEYS: task hash, waiters set. ARGV: this store's channel, ttl_ms (0 = keep). Returns the
# hash (flat field/value list). A finished task needs no registration.
_REGISTER = """
local state = redis.call('HGETALL', KEYS[1])
if redis.call('HGET', KEYS[1], 'terminal') ~= '1' then
  redis.call('SADD', KEYS[2], ARGV[1])
  if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[2], ARGV[2])
  else redis.call('PERSIST', KEYS[2]) end
end
return state
"""

_POOL_SIZE = 32


# KEYS: the join's hash (member index -> value). ARGV: index, size, value, ttl_ms (0 = keep).
# A member that ran twice keeps its first value; every call once all are in returns 1. The
# values are then read with a plain HGETALL: returning 10,000 of them from the script cost
# twice as long in Redis (its Lua table conversions) as the extra round trip.
_JOIN = """
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[3])
if tonumber(ARGV[4]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[2]) and 1 or 0
"""

# KEYS: the claim. ARGV: token, ttl_ms (0 = keep). 1 if free or held by this token.
_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if not holder then
  if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  else redis.call('SET', KEYS[1], ARGV[1]) end
  return 1
end
if holder == ARGV[1] then return 1 end
return 0
"""


def _redis_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError

    # OSError covers refused connections and TimeoutError (asyncio's too, since 3.11).
    return (RedisError, OSError)


class RedisResultStore:
    """Task states in Redis: durable (with TTL), visible by ID from any process."""

    durable = True

    def __init__(self, url: str, transport: Transport, *, result_ttl: float | None) -> None:
        require_extra("redis", "the Redis result store")
        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        from .redis_listener import redis_session
        from .redis_wire import RedisWire

        timeout = transport.options.connect_timeout
        self._url = redact_url(url)
        self._prefix = transport.names.prefix
        ttl = result_ttl
        self._ttl_ms = 0 if ttl is None else max(1, int(ttl * 1000))
        timeouts = {
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
        }
        # One immediate retry replaces a pooled connection that a Redis restart killed; longer
        # outages are the caller's to handle (the worker retries with backoff).
        # A blocking pool: a burst of waiters queues for a connection instead of failing with
        # "Too many connections" (the plain async pool raises at its limit).
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=_POOL_SIZE,
            timeout=timeout,
            retry=Retry(NoBackoff(), 1),
            **timeouts,
        )
        self._redis: Redis = redis.asyncio.Redis(connection_pool=pool)
        self._record_script: AsyncScript = self._redis.register_script(_RECORD)
        self._track_script: AsyncScript = self._redis.register_script(_TRACK)
        self._register_script: AsyncScript = self._redis.register_script(_REGISTER)
        self._join_script: AsyncScript = self._redis.register_script(_JOIN)
        self._claim_script: AsyncScript = self._redis.register_script(_CLAIM)
        self._errors = _redis_errors()
        self._timeout = timeout
        self._calls = InFlight(lambda: ResultUnavailable(f"the result store {self._url} is closed"))
        self._tracking = Background()
        self._wire = RedisWire(url, timeout)
        self._scripts = ScriptPipeline(self._wire)
        self.channel = f"{self._prefix}:notify:{uuid.uuid4().hex}"
        """This store's pub/sub channel: workers publish here the tasks its waiters await."""
        # Pub/sub on a connection of its own, which never reconnects behind the listener's
        # back (that would hide that publishes were missed): the listener decides.
        self._listener = Listener(
            redis_session(url, timeout, self.channel),
            self.channel,
            self._errors,
            "Redis pub/sub",
        )

    def __repr__(self) -> str:
        return f"<RedisResultStore {self._url} prefix={self._prefix!r}>"

    def key(self, task_id: str) -> str:
        """The Redis key of ``task_id``'s hash."""
        return f"{self._prefix}:task:{task_id}"

    def waiters_key(self, task_id: str) -> str:
        """The Redis key of the set of channels to publish ``task_id``'s terminal state to."""
        return f"{self._prefix}:waiters:{task_id}"

    def _unavailable(self, what: str, exc: BaseException) -> ResultUnavailable:
        detail = redact_url(str(exc)) or type(exc).__name__
        return ResultUnavailable(f"{what} Redis at {self._url}: {detail}")

    async def open(self) -> None:
        try:
            await self._redis.ping()
        except self._errors as exc:
            await self._close_clients()
            raise self._unavailable("cannot reach the result store at", exc) from None

    async def close(self) -> None:
        await self._tracking.cancel()
        await self._scripts.close()
        await self._wire.close()
        await self._listener.close()
        await self._calls.drain(self._timeout)
        await self._close_clients()

    async def _close_clients(self) -> None:
        await self._redis.aclose(close_connection_pool=True)

    def reply_to(self) -> str | None:
        return None  # waiters learn of outcomes from Redis, not from an AMQP reply queue

    def reaches(self, reply_to: str | None) -> bool:
        return True  # any process may look the state up by ID

    def track(self, task_id: str, task_name: str) -> None:
        # Sync by protocol, so the PENDING write runs in the background; a state written by a
        # worker first is never overwritten (the script only creates an unknown task). The
        # same script registers this store as a waiter: the outcome is published here, and a
        # caller that asks after it arrived reads nothing (a missed publish, e.g. before the
        # subscription is confirmed, only means a read at wait time).
        self._listener.start()
        self._listener.expect(task_id)
        self._tracking.spawn(self._track(task_id, task_name))

    async def _track(self, task_id: str, task_name: str) -> None:
        keys = [self.key(task_id), self.waiters_key(task_id)]
        subscribed = self._listener.subscribed  # then the outcome is certain to be published
        try:
            _, registered = await self._scripts(
                self._track_script, keys, [task_name, repr(time.time()), self._ttl_ms, self.channel]
            )
            if registered and subscribed:
                self._listener.registered(task_id)
        except self._errors as exc:
            log.warning(
                "could not record task %s as PENDING in Redis at %s (the task was sent): %s",
                task_id, self._url, redact_url(str(exc)),
            )  # fmt: skip

    def delivered(self, task_id: str) -> asyncio.Future[None]:
        """Resolved when ``task_id``'s outcome is published to this store (its sender then
        need not wait for the broker's confirm: see ResultStore)."""
        return self._listener.delivered(task_id)

    def forget(self, task_id: str) -> None:
        """Stop keeping an early outcome of ``task_id`` (states live in Redis until their TTL)."""
        self._listener.forget(task_id)

    async def reset(self, task_id: str) -> None:
        self._listener.forget(task_id)
        try:
            with self._calls.call():
                await self._redis.delete(self.key(task_id))
        except self._errors as exc:
            raise self._unavailable(f"could not reset task {task_id} in", exc) from None

    async def record(self, state: TaskState, *, reply_to: str | None) -> None:
        fields = _fields(state)  # EncodeError here, before anything is written
        terminal = "1" if state.status.terminal else "0"
        args: list[Any] = [
            state.status.value,
            terminal,
            state.attempt,
            STATUS_RANK[state.status],
            repr(time.time()),
            self._ttl_ms,
            state.encode() if state.status.terminal else b"",
            fields,
        ]
        keys = [self.key(state.task_id), self.waiters_key(state.task_id)]
        try:
            await self._scripts(self._record_script, keys, args)
        except self._errors as exc:
            raise self._unavailable(f"could not record task {state.task_id} in", exc) from None

    async def get(self, task_id: str) -> TaskState | None:
        try:
            with self._calls.call():
                raw = await self._redis.hgetall(self.key(task_id))
        except self._errors as exc:
            raise self._unavailable(f"could not read task {task_id} from", exc) from None
        return _state(task_id, raw) if raw else None

    async def _register(self, task_id: str) -> TaskState | None:
        """Ask to be told of ``task_id``'s terminal write; return its state as of now."""
        keys = [self.key(task_id), self.waiters_key(task_id)]
        try:
            flat = await self._scripts(self._register_script, keys, [self.channel, self._ttl_ms])
        except self._errors as exc:
            raise self._unavailable(f"could not watch task {task_id} in", exc) from None
        return _state(task_id, dict(zip(flat[::2], flat[1::2], strict=True))) if flat else None

    async def wait(self, task_id: str, timeout: float | None) -> TaskState:
        return await wait_terminal(
            task_id,
            timeout,
            listener=self._listener,
            get=self.get,
            register=self._register,
            where=f"Redis at {self._url}",
        )

    async def join(self, join_id: str, index: int, size: int, value: bytes) -> list[bytes] | None:
        """Add member ``index`` to join ``join_id`` (see taskq.workflow.JoinStore): one
        script on the hash ``{prefix}:join:{id}``, with the store's TTL."""
        key = f"{self._prefix}:join:{join_id}"
        try:
            complete = await self._scripts(
                self._join_script, [key], [index, size, value, self._ttl_ms]
            )
            if not complete:
                return None
            [flat] = await self._wire.execute([["HGETALL", key]])
            if isinstance(flat, Exception):
                raise flat
            if len(flat) < 2 * size:  # Redis lost the hash in between (restarted, flushed)
                raise ConnectionError(f"{len(flat) // 2} of the {size} members were read")
        except self._errors as exc:
            raise self._unavailable(f"could not join {join_id} in", exc) from None
        values: list[bytes] = [b""] * size
        pairs = iter(flat)
        for field, member in zip(pairs, pairs, strict=True):
            values[int(field)] = member
        return values

    async def claim(self, key: str, token: str) -> bool:
        """Claim ``key`` for ``token`` (see taskq.workflow.JoinStore): ``{prefix}:claim:{key}``."""
        claim_key = f"{self._prefix}:claim:{key}"
        try:
            won = await self._scripts(self._claim_script, [claim_key], [token, self._ttl_ms])
        except self._errors as exc:
            raise self._unavailable(f"could not claim {key} in", exc) from None
        return bool(won)


def _fields(state: TaskState) -> bytes:
    """The other hash fields of ``state`` as one msgpack map for the record script ("" =
    none; old-style raw strings: Redis's Lua msgpack reads no bin type)."""
    error = state.error
    fields = {
        "name": state.task_name,
        "worker": state.worker or "",
        "result": codec.pack(state.result),
        "error_type": error.type if error else "",
        "error_message": error.message if error else "",
        "error_traceback": error.traceback if error else "",
        "progress": "" if state.progress is None else repr(state.progress),
        "progress_message": state.progress_message or "",
    }
    return msgpack.packb(fields, use_bin_type=False)  # type: ignore[no-any-return]


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
