"""A private ``redis-server`` for one scenario: its own port and directory, never the shared one."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator

import redis.asyncio

from tests.support import eventually


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _answers(url: str) -> bool:
    client = redis.asyncio.from_url(url, socket_connect_timeout=1)
    try:
        return bool(await client.ping())
    except (redis.ConnectionError, OSError):
        return False
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def private_redis() -> AsyncIterator[int]:
    """Run a redis-server on a free port (no persistence) for the block; yield its port.

    The server is a child of this process and is killed, and its directory removed, at the end.
    """
    port = free_port()
    directory = tempfile.mkdtemp(prefix="taskq-faults-redis-")
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"redis://127.0.0.1:{port}/0"

        async def up() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {process.returncode}")
            return await _answers(url)

        await eventually(up, timeout=15, interval=0.05, what=f"redis-server on port {port}")
        yield port
    finally:
        process.kill()
        process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)
