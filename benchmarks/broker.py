"""The broker and Redis side of a run: where they are, checks, cleanup, restarts, machine facts."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import os
import platform
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aio_pika
import aiormq

BROKER = os.environ.get("BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672/")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")  # result backends


@contextlib.asynccontextmanager
async def channel() -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A plain channel on a fresh connection (for checks and cleanup)."""
    connection = await aio_pika.connect(BROKER)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


class BrokerRestarted(ConnectionError):
    """The broker restarted during a measurement (``check_broker`` found it out)."""


class BrokerWatch:
    """A connection held open over a measurement: closed at the end means the broker was
    restarted (or its connections forced closed) in between. ``check_broker`` asks the
    innermost one, so that waits can give up at once instead of at their timeout."""

    restarted = False

    async def __aenter__(self) -> BrokerWatch:
        # aiormq, not aio_pika: aio-pika 10's Connection.is_closed stays False after the
        # broker closes the connection; aiormq's turns True.
        self.connection = await aiormq.connect(BROKER)
        self._token = _watch.set(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        _watch.reset(self._token)
        self.restarted = bool(self.connection.is_closed)
        if not self.restarted:
            await self.connection.close()


_watch: contextvars.ContextVar[BrokerWatch | None] = contextvars.ContextVar("watch", default=None)


def check_broker() -> None:
    """Raise BrokerRestarted if the measurement's BrokerWatch saw its connection close."""
    watch = _watch.get()
    if watch is not None and watch.connection.is_closed:
        raise BrokerRestarted("the broker restarted during the measurement")


BROKER_DOWN = (
    ConnectionError,
    aio_pika.exceptions.AMQPError,
    aio_pika.exceptions.ChannelInvalidStateError,
)
"""What a client raises when the broker restarts under it (AMQPConnectionError is both of the
first two; ChannelInvalidStateError is a RuntimeError)."""


async def wait_for_broker(timeout: float, steady: float = 5.0) -> bool:
    """Wait until the broker has kept a connection open for ``steady`` seconds (tests that
    restart it tend to do it several times in a row); False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = await aiormq.connect(BROKER)  # is_closed: see BrokerWatch
        except BROKER_DOWN:
            await asyncio.sleep(2)
            continue
        await asyncio.sleep(steady)
        if not connection.is_closed:
            await connection.close()
            return True
    return False


async def queue_depth(name: str) -> int | None:
    """Ready messages in queue ``name`` (passive declare), or None if it does not exist."""
    try:
        async with channel() as ch:
            queue = await ch.declare_queue(name, passive=True)
            return queue.declaration_result.message_count or 0
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return None


async def delete(queues: Sequence[str] = (), exchanges: Sequence[str] = ()) -> None:
    """Delete queues and exchanges (missing ones are fine)."""
    async with channel() as ch:
        for q in queues:
            await ch.queue_delete(q)
        for e in exchanges:
            await ch.exchange_delete(e)


def names_starting_with(*prefixes: str) -> tuple[list[str], list[str]]:
    """The queues and the exchanges of the default virtual host whose names start with one of
    ``prefixes``, listed with ``rabbitmqctl`` (none when it is missing or does not answer)."""
    found: list[list[str]] = []
    for kind in ("queues", "exchanges"):
        try:
            out = subprocess.run(
                ["rabbitmqctl", "-q", f"list_{kind}", "name"],
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            return [], []
        found.append([n for n in out.split() if prefixes and n.startswith(prefixes)])
    return found[0], found[1]


async def sweep(prefix: str) -> list[str]:
    """Delete every queue and exchange whose name starts with ``prefix`` (what a run declared
    and did not delete: reply queues, a peer's extra entities); return their names."""
    await wait_for_broker(timeout=300)  # a sweep while the broker restarts finds nothing
    queues, exchanges = names_starting_with(prefix)
    if queues or exchanges:
        await delete(queues=queues, exchanges=exchanges)
    return queues + exchanges


async def delete_redis_keys(prefix: str) -> int:
    """Delete every Redis key starting with ``prefix``; return how many were deleted."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS)
    deleted = 0
    try:
        batch = []
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await client.delete(*batch)
                batch.clear()
        if batch:
            deleted += await client.delete(*batch)
    finally:
        await client.aclose()
    return deleted


async def purge(name: str) -> None:
    """Remove the ready messages of queue ``name``."""
    async with channel() as ch:
        queue = await ch.declare_queue(name, passive=True)
        await queue.purge()


async def machine() -> dict[str, Any]:
    """Cores, RabbitMQ version, Python, loop, date."""
    connection = await aio_pika.connect(BROKER)
    try:
        props = connection.transport.connection.server_properties  # type: ignore[union-attr]
        version = props.get("version", "?")
        version = version.decode() if isinstance(version, bytes) else str(version)
    finally:
        await connection.close()
    return {
        "cores": os.cpu_count(),
        "rabbitmq": version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
