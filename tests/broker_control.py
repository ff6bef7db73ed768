"""Test helpers that act on the broker from outside a client: rabbitmqctl, connections by
name, queue listings."""

from __future__ import annotations

import asyncio
import subprocess

from tests.support import broker_endpoint


def _rabbitmqctl(*args: str) -> str:
    done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"rabbitmqctl {' '.join(args)} failed: {done.stderr}"
    return done.stdout


def connection_pids(containing: str) -> list[str]:
    """The broker pids of the connections whose client properties (connection name) contain
    ``containing``, in the form ``rabbitmqctl close_connection`` takes."""
    rows = _rabbitmqctl("list_connections", "--no-table-headers", "pid", "client_properties")
    return [row.split("\t", 1)[0] for row in rows.splitlines() if containing in row]


def channels_of(containing: str) -> int:
    """Open channels of the connections whose client properties (connection name) contain
    ``containing``."""
    rows = _rabbitmqctl("list_connections", "--no-table-headers", "channels", "client_properties")
    return sum(int(row.split("\t", 1)[0]) for row in rows.splitlines() if containing in row)


async def heartbeat_timeouts(containing: str) -> list[int]:
    """The heartbeat timeouts (seconds; 0: none) the broker agreed with the connections whose
    client properties (connection name) contain ``containing``."""
    rows = await rabbitmqctl(
        "list_connections", "--no-table-headers", "timeout", "client_properties"
    )
    return [int(row.split("\t", 1)[0]) for row in rows.splitlines() if containing in row]


async def close_connections(containing: str) -> int:
    """Force-close (as the broker does on an admin's request) every connection whose name
    contains ``containing``; return how many were closed."""
    pids = await asyncio.to_thread(connection_pids, containing)
    for pid in pids:
        await asyncio.to_thread(_rabbitmqctl, "close_connection", pid, "test: forced close")
    return len(pids)


def queue_names(prefix: str) -> set[str]:
    """The names of the queues that start with ``prefix``, as the broker lists them (unlike a
    passive declare, listing does not count as using a queue, so it never renews x-expires)."""
    rows = _rabbitmqctl("list_queues", "--no-table-headers", "name")
    return {row.strip() for row in rows.splitlines() if row.strip().startswith(prefix)}


async def rabbitmqctl(*args: str) -> str:
    """Run ``rabbitmqctl ARGS``; return its output (fail the test if it fails)."""
    return await asyncio.to_thread(_rabbitmqctl, *args)


async def consumed(queue_name: str) -> bool:
    """Whether ``queue_name`` exists and has a consumer. Asks rabbitmqctl: an exclusive queue
    cannot be declared from another connection, not even passively."""
    listing = await rabbitmqctl("list_queues", "--no-table-headers", "name", "consumers")
    rows = [line.split("\t") for line in listing.splitlines()]
    return any(row[0] == queue_name and int(row[1]) > 0 for row in rows if len(row) == 2)


async def broker_answers() -> bool:
    """Whether the broker accepts TCP connections (it listens again after a restart)."""
    broker = broker_endpoint()
    try:
        _, writer = await asyncio.open_connection(broker.host, broker.port)
    except OSError:
        return False
    writer.close()
    return True
