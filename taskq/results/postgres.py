"""The PostgreSQL result store: task states in a table, readable by ID from any process.

``App(..., results="postgresql://user@host:5432/db")`` (or ``postgres://``; needs
``pip install 'taskq[postgres]'``, which brings asyncpg). Query parameters that taskq reads
(and removes before connecting): ``taskq_table`` (default ``{prefix}_results``, may be
``schema.table``) and ``taskq_pool_size`` (default: from the worker's concurrency, see
:func:`pool_size`). Every other parameter goes to asyncpg.

One row per task (see ``taskq.results.postgres_schema`` for the table, its versions and
upgrades). Every write sets ``expires_at`` to now + ``settings.result_ttl`` (``None``:
never); reads ignore expired rows, and a cleanup deletes them in batches of 500 (each its own
short transaction, ``FOR UPDATE SKIP LOCKED``: it takes row locks only, never blocks
readers or writers of other rows, and skips rows being written).

Guarantees (the same as the Redis store's):

- A status never moves backwards: every write is one ``INSERT ... ON CONFLICT DO UPDATE ...
  WHERE`` with the rule of ``TaskState.supersedes``. ``terminal_writes`` counts the terminal
  states accepted for a row (1 once finished; ``reset`` sets it back to 0).
- ``record`` returns only once PostgreSQL committed the state, and raises ResultUnavailable
  if it cannot be reached (the worker then keeps the delivery unacked and retries). Only
  terminal states wait for the WAL flush; PENDING, STARTED, RETRYING, progress and waiter
  registrations commit with ``synchronous_commit = off`` (a crash of the server may lose the
  last of them, never an outcome; the task is then redelivered, or the waiter registers
  again when its connection comes back).
- Sending records PENDING only for an unknown task, in the background (best effort).
- ``get``, ``record`` and ``reset`` turn every database failure into ResultUnavailable, with
  the URL's password redacted.
- A caller in ``wait`` gets the terminal state, or ResultTimeout at its deadline, or
  ResultUnavailable at its deadline if its last read failed; an outage delays it, never
  fails it otherwise.

How waiting works: each store instance LISTENs on a channel of its own (``taskq_{hex}``) on
one connection outside the pool, opened when a waiter first finds its task unfinished (see
``taskq.results.listener``). Once LISTEN is confirmed, a waiter registers by adding that
channel to the task's ``waiters`` column (creating a row with no status for a task not
recorded yet) and gets the task's state back in the same statement. A terminal write sends
``pg_notify`` to every channel in ``waiters`` in the same statement. Both statements lock the
task's row, so one of them sees the other's commit: a terminal state written before the
registration is what the waiter reads; one written after is notified to it. The notification
carries the encoded state when it fits in PostgreSQL's 8,000-byte payload (else the task ID,
and the waiter reads the row). Notifications are sent at commit, in commit order.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .. import codec
from ..exceptions import ConfigurationError, ResultUnavailable
from ..extras import require_extra
from ..redact import redact_url
from .background import Background
from .base import STATUS_RANK, ErrorInfo, TaskState, TaskStatus
from .batch import Batcher
from .listener import Feed, Listener, Session, decode_published, wait_terminal
from .postgres_schema import Tables, ensure_schema

log = logging.getLogger("taskq.results")

CLEANUP_BATCH = 500
CLEANUP_INTERVAL = 60.0
IDLE = 5.0
"""Seconds of silence before the LISTEN connection is checked with a query (as long again
without an answer: lost)."""
_PAYLOAD_LIMIT = 7900  # PostgreSQL refuses a NOTIFY payload of 8,000 bytes or more

_COLUMNS = """status, attempt, task_name, worker, result, error_type, error_message,
    error_traceback, progress, progress_message, sent_at, started_at, finished_at, updated_at"""
_ALIVE = "(t.expires_at IS NULL OR t.expires_at > now())"
_ASYNC_COMMIT = "set_config('synchronous_commit', 'off', true)"
# set_config(..., true) lasts until the end of the transaction, here the statement itself: its
# commit does not wait for the WAL flush.

# $1 id, $2 status, $3 terminal, $4 attempt, $5 rank, $6 name, $7 worker, $8 result,
# $9-$11 error, $12 progress, $13 progress message, $14 ttl (s, NULL: keep), $15 payload.
# The WHERE mirrors TaskState.supersedes; a row with no status only holds waiters.
_RECORD = f"""
WITH cfg AS (SELECT CASE WHEN $3 THEN '' ELSE {_ASYNC_COMMIT} END),
up AS (
  INSERT INTO {{t}} AS t (task_id, status, terminal, attempt, rank, task_name, worker, result,
      error_type, error_message, error_traceback, progress, progress_message, started_at,
      finished_at, updated_at, expires_at, terminal_writes)
  SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
      CASE WHEN $2 = 'STARTED' THEN now() END, CASE WHEN $3 THEN now() END, now(),
      now() + make_interval(secs => $14), $3::int
  FROM cfg
  ON CONFLICT (task_id) DO UPDATE SET status = EXCLUDED.status, terminal = EXCLUDED.terminal,
      attempt = EXCLUDED.attempt, rank = EXCLUDED.rank, task_name = EXCLUDED.task_name,
      worker = EXCLUDED.worker, result = EXCLUDED.result, error_type = EXCLUDED.error_type,
      error_message = EXCLUDED.error_message, error_traceback = EXCLUDED.error_traceback,
      progress = EXCLUDED.progress, progress_message = EXCLUDED.progress_message,
      started_at = COALESCE(t.started_at, EXCLUDED.started_at),
      finished_at = EXCLUDED.finished_at, updated_at = EXCLUDED.updated_at,
      expires_at = EXCLUDED.expires_at,
      terminal_writes = t.terminal_writes + EXCLUDED.terminal_writes
  WHERE {_ALIVE} AND (t.status IS NULL OR (NOT t.terminal AND (EXCLUDED.terminal
      OR EXCLUDED.attempt > t.attempt
      OR (EXCLUDED.attempt = t.attempt AND EXCLUDED.rank >= t.rank))))
  RETURNING t.waiters, t.terminal
)
SELECT (SELECT count(*) FROM up) AS written,
       (SELECT count(pg_notify(w, $15)) FROM up, unnest(up.waiters) AS w WHERE up.terminal)
"""

# $1 ids, $2 names, $3 ttl. PENDING only for an unknown task (or one only waited for).
_TRACK = f"""
WITH cfg AS (SELECT {_ASYNC_COMMIT})
INSERT INTO {{t}} AS t (task_id, status, task_name, sent_at, expires_at)
SELECT id, 'PENDING', name, now(), now() + make_interval(secs => $3)
FROM cfg, unnest($1::text[], $2::text[]) AS sent(id, name)
ON CONFLICT (task_id) DO UPDATE SET status = COALESCE(t.status, 'PENDING'),
    task_name = CASE WHEN t.task_name = '' THEN EXCLUDED.task_name ELSE t.task_name END,
    sent_at = COALESCE(t.sent_at, EXCLUDED.sent_at), expires_at = EXCLUDED.expires_at
WHERE {_ALIVE}
RETURNING task_id
"""

# $1 ids (sorted: concurrent batches lock rows in one order), $2 channel, $3 ttl. Returns
# the registered tasks' states (no row: finished, or expired).
_REGISTER = f"""
WITH cfg AS (SELECT {_ASYNC_COMMIT})
INSERT INTO {{t}} AS t (task_id, waiters, expires_at)
SELECT id, ARRAY[$2::text], now() + make_interval(secs => $3)
FROM cfg, unnest($1::text[]) AS id
ON CONFLICT (task_id) DO UPDATE SET
    waiters = CASE WHEN $2 = ANY(t.waiters) THEN t.waiters ELSE t.waiters || $2::text END
WHERE {_ALIVE} AND NOT t.terminal
RETURNING task_id, {_COLUMNS}
"""

_GET = f"""SELECT task_id, {_COLUMNS} FROM {{t}} AS t
WHERE task_id = ANY($1::text[]) AND status IS NOT NULL AND {_ALIVE}"""

# Back to "only waited for": the waiters of a replayed task stay registered.
_RESET = """UPDATE {t} SET status = NULL, terminal = false, attempt = 0, rank = 0,
    worker = NULL, result = NULL, error_type = NULL, error_message = NULL,
    error_traceback = NULL, progress = NULL, progress_message = NULL, sent_at = NULL,
    started_at = NULL, finished_at = NULL, updated_at = now(), terminal_writes = 0
WHERE task_id = $1"""

# An expired row is gone for every purpose: deleted before a write would have to skip it.
_DELETE_EXPIRED = """DELETE FROM {t} WHERE task_id = ANY($1::text[]) AND expires_at <= now()
RETURNING task_id"""

_CLEANUP = """DELETE FROM {t} WHERE task_id IN (
    SELECT task_id FROM {t} WHERE expires_at <= now() LIMIT $1 FOR UPDATE SKIP LOCKED)"""


# $1 join, $2 index, $3 value, $4 ttl: the members joined so far, counting this one. A member
# that joined before inserts nothing and reads the count. The head row's update serialises
# the members of one join, so each sees the count with every earlier member committed.
_JOIN = """WITH added AS (
  INSERT INTO {j} (join_id, idx, value, expires_at)
  VALUES ($1, $2, $3, now() + make_interval(secs => $4)) ON CONFLICT DO NOTHING RETURNING 1
), head AS (
  INSERT INTO {h} AS h (join_id, joined, expires_at)
  SELECT $1, 1, now() + make_interval(secs => $4) FROM added
  ON CONFLICT (join_id) DO UPDATE SET joined = h.joined + 1 RETURNING h.joined
)
SELECT COALESCE((SELECT joined FROM head), (SELECT joined FROM {h} WHERE join_id = $1), 0)"""
_JOIN_ALL = "SELECT idx, value FROM {j} WHERE join_id = $1 ORDER BY idx"
# $1 key, $2 token, $3 ttl: the holder's token (this one if the key was free).
_CLAIM = """INSERT INTO {c} AS c (claim_key, token, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3))
ON CONFLICT (claim_key) DO UPDATE SET claim_key = c.claim_key RETURNING c.token"""


def pool_size(concurrency: int | None) -> int:
    """Connections a store's pool opens at most: a client 4; a worker a quarter of its
    concurrency plus one, between 2 and 10 (each connection is a server process: ten workers
    must fit in PostgreSQL's default of 100 connections)."""
    if concurrency is None:
        return 4
    return max(2, min(10, concurrency // 4 + 1))


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """The DSN for asyncpg and taskq's own query parameters (``taskq_*``), taken out of it."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k.startswith("taskq_")}
    rest = [(k, v) for k, v in query if not k.startswith("taskq_")]
    unknown = set(ours) - {"taskq_table", "taskq_pool_size"}
    if unknown:
        raise ConfigurationError(
            f"unknown result store option(s) {sorted(unknown)}: use taskq_table, taskq_pool_size"
        )
    scheme = "postgresql" if parts.scheme == "postgres" else parts.scheme
    return urlunsplit(parts._replace(scheme=scheme, query=urlencode(rest))), ours


def _postgres_errors() -> tuple[type[BaseException], ...]:
    import asyncpg

    # OSError covers refused connections and TimeoutError (asyncio's too, since 3.11).
    return (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)


class PostgresResultStore:
    """Task states in PostgreSQL: durable (with TTL), visible by ID from any process.

    ``url`` is a ``postgresql://`` URL (see the module's doc for its ``taskq_*`` options,
    which override ``table`` and ``pool_size``). ``result_ttl`` is how long a state is kept
    (None: forever); ``connect_timeout`` bounds a connect and every statement;
    ``cleanup_interval`` is the pause between two runs of the TTL cleanup. ConfigurationError
    if asyncpg is missing or an option is invalid.
    """

    durable = True

    def __init__(
        self,
        url: str,
        *,
        table: str = "taskq_results",
        pool_size: int = 4,
        result_ttl: float | None = 86400.0,
        connect_timeout: float = 10.0,
        cleanup_interval: float = CLEANUP_INTERVAL,
    ) -> None:
        require_extra("postgres", "the PostgreSQL result store")
        import asyncpg

        self._asyncpg = asyncpg
        self._dsn, options = split_url(url)
        self._url = redact_url(url)
        self.tables = Tables.named(options.get("taskq_table", table))
        self.pool_size = int(options.get("taskq_pool_size", pool_size))
        if self.pool_size < 1:
            raise ConfigurationError("taskq_pool_size must be at least 1")
        self._ttl = result_ttl
        self._timeout = connect_timeout
        self._cleanup_interval = cleanup_interval
        self._sql = {
            name: sql.replace("{t}", self.tables.results)
            for name, sql in (
                ("record", _RECORD), ("track", _TRACK), ("register", _REGISTER), ("get", _GET),
                ("reset", _RESET), ("revive", _DELETE_EXPIRED), ("cleanup", _CLEANUP),
            )
        }  # fmt: skip
        self._errors = _postgres_errors()
        self._names: dict[str, str] = {}  # task names of the sends waiting to be tracked
        self._pool: Any = None
        self._tracker: Batcher[str, bool] = Batcher(self._track_many)
        self._reader: Batcher[str, TaskState] = Batcher(self._get_many)
        self._registrar: Batcher[str, TaskState | _Unknown] = Batcher(self._register_many)
        self._background = Background()
        self.channel = f"taskq_{uuid.uuid4().hex}"
        """This store's LISTEN channel: workers notify here the tasks its waiters await."""
        self._listener = self._new_listener()

    def _new_listener(self) -> Listener:
        session = postgres_session(self._listen_connection, self.channel)
        return Listener(session, self.channel, self._errors, "PostgreSQL LISTEN")

    def __repr__(self) -> str:
        return f"<PostgresResultStore {self._url} table={self.tables.name}>"

    def _unavailable(self, what: str, exc: BaseException) -> ResultUnavailable:
        detail = redact_url(str(exc)) or type(exc).__name__
        return ResultUnavailable(f"{what} PostgreSQL at {self._url}: {detail}")

    async def open(self) -> None:
        if self._listener.closed:  # opened again after a close
            self._listener = self._new_listener()
        try:
            self._pool = await self._asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self.pool_size,
                timeout=self._timeout,
                command_timeout=self._timeout,
                max_inactive_connection_lifetime=60.0,
            )
            async with self._pool.acquire(timeout=self._timeout) as connection:
                await ensure_schema(connection, self.tables)
        except self._errors as exc:
            await self._close_pool()
            raise self._unavailable("cannot reach the result store at", exc) from None
        except BaseException:
            await self._close_pool()
            raise
        self._background.spawn(self._clean_periodically())

    async def close(self) -> None:
        await self._background.cancel()
        await self._listener.close()
        await self._close_pool()

    async def _close_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self._timeout)
            except self._errors:  # TimeoutError is an OSError
                pool.terminate()

    async def _listen_connection(self) -> Any:
        return await self._asyncpg.connect(
            self._dsn, timeout=self._timeout, command_timeout=self._timeout
        )

    async def _call(self, what: str, method: str, sql: str, *args: Any) -> Any:
        """``pool.<method>(sql, *args)``; every failure becomes ResultUnavailable."""
        pool = self._pool
        if pool is None:
            raise ResultUnavailable(f"the result store at {self._url} is not open")
        try:
            return await getattr(pool, method)(self._sql[sql], *args)
        except self._errors as exc:
            raise self._unavailable(what, exc) from None

    def reply_to(self) -> str | None:
        return None  # waiters learn of outcomes from PostgreSQL, not from an AMQP reply queue

    def reaches(self, reply_to: str | None) -> bool:
        return True  # any process may look the state up by ID

    def track(self, task_id: str, task_name: str) -> None:
        # Sync by protocol, so the PENDING write runs in the background, batched with the
        # other sends of this loop turn; a state written by a worker first is never
        # overwritten (only an unknown task becomes PENDING).
        self._names[task_id] = task_name
        self._background.spawn(self._track(task_id))

    async def _track(self, task_id: str) -> None:
        try:
            await self._tracker(task_id)
        except ResultUnavailable as exc:
            log.warning("%s (the task was sent)", exc)

    async def _track_many(self, ids: Sequence[str]) -> dict[str, bool]:
        names = [self._names.pop(task_id, "") for task_id in ids]
        what = f"could not record {len(ids)} sent task(s) as PENDING in"
        rows = await self._call(what, "fetch", "track", ids, names, self._ttl)
        done = {row[0] for row in rows}
        expired = await self._delete_expired(what, [i for i in ids if i not in done])
        if expired:
            again = [names[ids.index(task_id)] for task_id in expired]
            rows += await self._call(what, "fetch", "track", expired, again, self._ttl)
        return {row[0]: True for row in rows}

    def forget(self, task_id: str) -> None:
        """Nothing to drop: states live in PostgreSQL until their TTL."""

    async def reset(self, task_id: str) -> None:
        await self._call(f"could not reset task {task_id} in", "execute", "reset", task_id)

    async def record(self, state: TaskState, *, reply_to: str | None) -> None:
        result = codec.pack(state.result)  # EncodeError here, before anything is written
        terminal = state.status.terminal
        error = state.error
        await self._write(
            "record", f"could not record task {state.task_id} in",
            state.task_id, state.status.value, terminal, state.attempt, STATUS_RANK[state.status],
            state.task_name, state.worker, result,
            error.type if error else None, error.message if error else None,
            error.traceback if error else None, state.progress, state.progress_message,
            self._ttl, _payload(state) if terminal else "",
        )  # fmt: skip

    async def _write(self, sql: str, what: str, task_id: str, *args: Any) -> bool:
        """Run an upsert of ``task_id``; an expired row it would not touch is deleted first
        (an expired state is gone: the task starts afresh). Whether a row was written."""
        row = await self._call(what, "fetchrow", sql, task_id, *args)
        if row[0]:
            return True
        if await self._delete_expired(what, [task_id]):
            row = await self._call(what, "fetchrow", sql, task_id, *args)
        return bool(row[0])

    async def _delete_expired(self, what: str, ids: Sequence[str]) -> list[str]:
        if not ids:
            return []
        return [row[0] for row in await self._call(what, "fetch", "revive", ids)]

    async def get(self, task_id: str) -> TaskState | None:
        return await self._reader(task_id)

    async def _get_many(self, ids: Sequence[str]) -> dict[str, TaskState]:
        what = (
            f"could not read task {ids[0]} from"
            if len(ids) == 1
            else (f"could not read {len(ids)} tasks from")
        )
        rows = await self._call(what, "fetch", "get", ids)
        return {row["task_id"]: _state(row["task_id"], row) for row in rows}

    async def _register(self, task_id: str) -> TaskState | None:
        """Ask to be told of ``task_id``'s terminal write; return its state as of now."""
        state = await self._registrar(task_id)
        if state is None:  # not registered: it finished (or is gone)
            return await self.get(task_id)
        return None if isinstance(state, _Unknown) else state

    async def _register_many(self, ids: Sequence[str]) -> dict[str, TaskState | _Unknown]:
        what = f"could not watch {len(ids)} task(s) in"
        ids = sorted(ids)
        rows = await self._call(what, "fetch", "register", ids, self.channel, self._ttl)
        done = {row["task_id"] for row in rows}
        expired = await self._delete_expired(what, [i for i in ids if i not in done])
        if expired:
            rows += await self._call(what, "fetch", "register", expired, self.channel, self._ttl)
        return {
            row["task_id"]: _UNKNOWN if row["status"] is None else _state(row["task_id"], row)
            for row in rows
        }

    async def wait(self, task_id: str, timeout: float | None) -> TaskState:
        return await wait_terminal(
            task_id,
            timeout,
            listener=self._listener,
            get=self.get,
            register=self._register,
            where=f"PostgreSQL at {self._url}",
        )

    async def join(self, join_id: str, index: int, size: int, value: bytes) -> list[bytes] | None:
        """Add member ``index`` to join ``join_id`` (see taskq.workflow.JoinStore): one
        statement on the ``_joins`` and ``_join_heads`` tables; once all are in, a read of
        their values."""
        pool = self._pool
        if pool is None:
            raise ResultUnavailable(f"the result store at {self._url} is not open")
        tables = self.tables
        try:
            sql = _JOIN.format(j=tables.joins, h=tables.join_heads)
            joined = await pool.fetchval(sql, join_id, index, value, self._ttl)
            if joined < size:
                return None
            rows = await pool.fetch(_JOIN_ALL.format(j=tables.joins), join_id)
        except self._errors as exc:
            raise self._unavailable(f"could not join {join_id} in", exc) from None
        return [bytes(row["value"]) for row in rows]

    async def claim(self, key: str, token: str) -> bool:
        """Claim ``key`` for ``token`` (see taskq.workflow.JoinStore): a row of ``_claims``."""
        pool = self._pool
        if pool is None:
            raise ResultUnavailable(f"the result store at {self._url} is not open")
        sql = _CLAIM.format(c=self.tables.claims)
        try:
            holder = await pool.fetchval(sql, key, token, self._ttl)
        except self._errors as exc:
            raise self._unavailable(f"could not claim {key} in", exc) from None
        return bool(holder == token)

    async def delete_expired(self, batch: int = CLEANUP_BATCH) -> int:
        """Delete expired rows, ``batch`` per transaction, until none is left; how many.

        Rows being written meanwhile are skipped (they are not expired any more, or the next
        run takes them)."""
        deleted = 0
        while True:
            status = await self._call("could not delete expired results in", "execute",
                                      "cleanup", batch)  # fmt: skip
            count = int(status.split()[-1])
            deleted += count
            if count < batch:
                await self._delete_expired_workflow_rows()
                return deleted
            await asyncio.sleep(0.05)  # let other writers in between two batches

    async def _delete_expired_workflow_rows(self) -> None:
        """Delete the expired rows of the join and claim tables (small: a row per chord
        member, and per step a worker sent)."""
        pool = self._pool
        if pool is None:
            return
        for table in (self.tables.joins, self.tables.join_heads, self.tables.claims):
            sql = f"DELETE FROM {table} WHERE expires_at <= now()"
            try:
                await pool.execute(sql)
            except self._errors as exc:
                raise self._unavailable("could not delete expired workflow rows in", exc) from None

    async def _clean_periodically(self) -> None:
        while True:
            # Jittered, so that workers started together do not clean at the same moment.
            await asyncio.sleep(self._cleanup_interval * random.uniform(0.5, 1.5))
            try:
                deleted = await self.delete_expired()
            except ResultUnavailable as exc:
                log.debug("TTL cleanup skipped: %s", exc)
                continue
            if deleted:
                log.debug("deleted %d expired result(s) from %s", deleted, self.tables.name)


class _Unknown:
    """Registered for a task that has no state yet."""


_UNKNOWN = _Unknown()


def _payload(state: TaskState) -> str:
    """What a terminal write notifies: ``s`` + the encoded state in base64 when it fits in a
    NOTIFY payload, else ``i`` + the task ID (the waiter reads the row)."""
    encoded = "s" + base64.b64encode(state.encode()).decode()
    return encoded if len(encoded) <= _PAYLOAD_LIMIT else "i" + state.task_id


def postgres_session(connect: Callable[[], Awaitable[Any]], channel: str) -> Session:
    """A session that LISTENs on ``channel`` on a new connection from ``connect`` (asyncpg
    delivers notifications between queries, so the session checks the connection with a
    query when it has been silent for IDLE seconds)."""

    async def session(feed: Feed) -> None:
        connection = await connect()
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        try:
            await connection.add_listener(
                channel, lambda _c, _pid, _channel, payload: _deliver(feed, payload, channel)
            )
            feed.confirmed()  # add_listener returns once the server ran LISTEN
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(IDLE):
                        await lost.wait()
                if lost.is_set() or connection.is_closed():
                    raise ConnectionError("the LISTEN connection was closed")
                await connection.fetchval("SELECT 1", timeout=IDLE)
        finally:
            connection.terminate()

    return session


def _deliver(feed: Feed, payload: str, channel: str) -> None:
    if payload.startswith("i"):
        feed.nudge(payload[1:])
        return
    try:
        data = base64.b64decode(payload[1:], validate=True)
    except ValueError:
        data = b""
    state = decode_published(data, channel)
    if state is not None:
        feed.published(state)


def _state(task_id: str, row: Any) -> TaskState:
    """A TaskState from a row of _COLUMNS."""
    error_type = row["error_type"]
    result = row["result"]

    def seconds(column: str) -> float | None:
        value = row[column]
        return None if value is None else float(value.timestamp())

    return TaskState(
        task_id=task_id,
        status=TaskStatus(row["status"]),
        task_name=row["task_name"],
        attempt=row["attempt"],
        result=codec.unpack(result) if result else None,
        error=(
            ErrorInfo(error_type, row["error_message"] or "", row["error_traceback"] or "")
            if error_type
            else None
        ),
        worker=row["worker"],
        updated_at=seconds("updated_at") or 0.0,
        progress=row["progress"],
        progress_message=row["progress_message"],
        sent_at=seconds("sent_at"),
        started_at=seconds("started_at"),
        finished_at=seconds("finished_at"),
    )
