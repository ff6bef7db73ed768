"""The broker side of the suite: ``rabbitmqctl`` on the local node, checks and cleanup.

The faults act on the node ``rabbitmqctl`` reaches, so ``TASKQ_BROKER`` must point at that
node (the default, 127.0.0.1:5672, does). Everything here is scoped to one run's prefix: the
connections it closes are those whose ``connection_name`` contains the prefix, the queues it
reads or deletes are those whose name starts with it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import re
import subprocess
from collections.abc import AsyncIterator, Iterable, Sequence

import aio_pika

from taskq.topology import Names, every_name
from tests.support import eventually

BROKER = os.environ.get("TASKQ_BROKER", "amqp://guest:guest@127.0.0.1:5672/")
RABBITMQCTL: tuple[str, ...] = ("rabbitmqctl",)
"""The command that reaches the local node (a cluster's is ``cluster.sh ctl N``)."""
_CONNECTION_NAME = re.compile(r'\{"connection_name","([^"]*)"\}')


async def rabbitmqctl(
    *args: str, timeout: float = 120, command: Sequence[str] = RABBITMQCTL
) -> str:
    """Run ``rabbitmqctl ARGS`` (``command ARGS``: the local node by default); its stdout, or
    RuntimeError with stderr."""
    process = await asyncio.create_subprocess_exec(
        *command, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {err.decode(errors='replace')}")
    return out.decode(errors="replace")


async def connections_of(prefix: str) -> dict[str, str]:
    """``{pid: connection_name}`` of the open connections whose name contains ``prefix``."""
    listing = await rabbitmqctl(
        "list_connections", "pid", "client_properties", "-q", "--no-table-headers"
    )
    found = {}
    for line in listing.splitlines():
        pid, _, props = line.partition("\t")
        match = _CONNECTION_NAME.search(props)
        if match and prefix in match.group(1):
            found[pid] = match.group(1)
    return found


async def close_connections(pids: Iterable[str], why: str) -> None:
    """Close connections from the broker's side, as an operator or a failing node would."""
    await asyncio.gather(*(rabbitmqctl("close_connection", pid, why) for pid in pids))


async def queue_counts(
    prefix: str, command: Sequence[str] = RABBITMQCTL
) -> dict[str, tuple[int, int]]:
    """``{queue: (ready, unacked)}`` of every queue whose name starts with ``prefix.``."""
    listing = await rabbitmqctl(
        "list_queues", "name", "messages_ready", "messages_unacknowledged",
        "-q", "--no-table-headers", command=command,
    )  # fmt: skip
    counts = {}
    for line in listing.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[0].startswith(f"{prefix}."):
            counts[parts[0]] = (int(parts[1]), int(parts[2]))
    return counts


async def backlog(prefix: str, command: Sequence[str] = RABBITMQCTL) -> int | None:
    """Messages still to be handled (ready or unacked) in the work queues and delay levels
    of ``prefix`` (the ``.dead`` queues are where handled messages end, not backlog); None
    while the broker cannot say (its application is stopped, e.g. by someone else's test)."""
    names = Names(prefix)
    pending = (f"{names.prefix}.q.", f"{names.prefix}.delay.")
    try:
        counts = await queue_counts(prefix, command)
    except RuntimeError:
        return None
    return sum(
        ready + unacked
        for name, (ready, unacked) in counts.items()
        if name.startswith(pending) and not name.endswith(".dead")
    )


async def take_all(
    queue_name: str, url: str = BROKER
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Remove and return every message of a queue (full name), on the broker at ``url``."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        messages = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            messages.append(message)
        return messages
    finally:
        await connection.close()


def text(value: object) -> str:
    """A header value as text (AMQP tables carry strings as bytes)."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


async def delete_prefix(
    prefix: str, queues: Iterable[str], url: str = BROKER, command: Sequence[str] = RABBITMQCTL
) -> None:
    """Delete every exchange and queue of ``prefix``: what taskq declares for ``queues``,
    and any other queue whose name starts with the prefix (reply and control queues); on the
    broker at ``url``, listed with ``command``."""
    queue_names, exchanges = every_name(Names(prefix), queues)

    async def up() -> bool:
        return await answers(url)

    await eventually(up, timeout=180, interval=0.5, what="RabbitMQ, to clean up")
    listed = await queue_counts(prefix, command)
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        for queue in dict.fromkeys([*queue_names, *listed]):
            await channel.queue_delete(queue)
        for exchange in exchanges:
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()


async def answers(url: str = BROKER) -> bool:
    """Whether the broker at ``url`` accepts AMQP connections."""
    try:
        connection = await aio_pika.connect(url, timeout=2)
    except Exception:
        return False
    await connection.close()
    return True


def _start_app_blocking() -> None:
    subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=180)


@contextlib.asynccontextmanager
async def stopped() -> AsyncIterator[None]:
    """Stop the RabbitMQ application for the block; it is always started again, also when the
    block fails or the suite is interrupted (Ctrl-C, SIGTERM)."""
    # A second Ctrl-C can raise KeyboardInterrupt outside this coroutine: the interpreter's
    # exit then still starts the broker.
    atexit.register(_start_app_blocking)
    try:
        await rabbitmqctl("stop_app")
        yield
    finally:
        try:
            await asyncio.shield(rabbitmqctl("start_app"))
        except BaseException:
            _start_app_blocking()  # cancelled while starting it: block until it is started
            raise
        finally:
            atexit.unregister(_start_app_blocking)
