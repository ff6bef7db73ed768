"""How the suite learns how often a result was recorded, per task.

- AMQP store: the client's reply stream is tapped, and every terminal state (SUCCESS or
  FAILURE) it carries is counted per task. Two for one task = the caller was told twice.
- Redis store: the store counts its accepted terminal writes in the task hash field
  ``terminal_writes``. A store without that field answers "unknown" (None), never 0.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Collection
from typing import Any

import redis.asyncio

from taskq import App, ResultStore, TaskState
from taskq.exceptions import DecodeError
from taskq.results.amqp import AmqpResultStore
from taskq.transport import Transport, make_transport

log = logging.getLogger("benchmarks.faults")


def _tap(transport: Transport, seen: Callable[[bytes], None]) -> Transport:
    """``transport``, its reply consumer also reporting each reply body to ``seen`` (whichever
    implementation it is)."""
    consume_replies = transport.consume_replies

    async def tapped_replies(queue_name: str, on_reply: Any, *args: Any, **kw: Any) -> Any:
        def tapped(correlation_id: Any, body: bytes, *rest: Any) -> Any:
            seen(body)
            return on_reply(correlation_id, body, *rest)

        return await consume_replies(queue_name, tapped, *args, **kw)

    transport.consume_replies = tapped_replies  # type: ignore[method-assign]
    return transport


class ObservedApp(App):
    """A client App that counts the terminal replies it receives, per task (AMQP store).

    ``terminal_replies`` stays None when the tap could not be installed (the store's
    construction changed): then how often results were recorded is unknown.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.terminal_replies: collections.Counter[str] | None = None

    async def connect(self, connection_name: str, **options: Any) -> tuple[Transport, ResultStore]:
        if self.settings.results != "amqp" or options.get("connection") is not None:
            return await super().connect(connection_name, **options)
        counts: collections.Counter[str] = collections.Counter()
        transport = _tap(
            make_transport(self.settings.transport_options(), connection_name=connection_name),
            lambda body: _count(counts, body),
        )
        await transport.connect()
        try:
            store = AmqpResultStore(transport, reply_queue_ttl=self.settings.reply_queue_ttl)
            await store.open()
        except TypeError as exc:  # the store is built differently now: no tap
            await transport.close()
            log.warning("cannot tap the AMQP replies (%s): recorded twice is unknown", exc)
            return await super().connect(connection_name, **options)
        except BaseException:
            await transport.close()
            raise
        self.terminal_replies = counts
        return transport, store


def _count(counts: collections.Counter[str], body: bytes) -> None:
    try:
        state = TaskState.decode(body)
    except DecodeError:
        return
    if state.status.terminal:
        counts[state.task_id] += 1


def replies_twice(app: ObservedApp, ids: Collection[str]) -> int | None:
    """Tasks of ``ids`` whose terminal state reached the client more than once (None:
    unknown, because nothing was tapped)."""
    counts = app.terminal_replies
    if not counts:
        return None
    return sum(1 for task_id in ids if counts[task_id] > 1)


async def redis_writes_twice(url: str, prefix: str, ids: Collection[str]) -> int | None:
    """Tasks of ``ids`` with more than one accepted terminal write in Redis (None: the store
    does not count them: a task in a terminal state has no ``terminal_writes`` field)."""
    client = redis.asyncio.from_url(url)
    try:
        async with client.pipeline(transaction=False) as pipe:
            for task_id in ids:
                pipe.hmget(f"{prefix}:task:{task_id}", "terminal", "terminal_writes")
            replies = await pipe.execute()
    finally:
        await client.aclose()
    twice = 0
    for terminal, writes in replies:
        if terminal == b"1" and writes is None:
            return None
        twice += int(writes or 0) > 1
    return twice
