"""Redis outages for tests: a private redis-server, and a TCP proxy that cuts connections.

Never the shared Redis: each helper owns what it starts and removes it afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator

import redis.asyncio

from tests.support import eventually

REDIS_URL = os.environ.get("TASKQ_TEST_REDIS", "redis://127.0.0.1:6379/0")
"""The shared Redis of the tests (never stopped by them)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class OwnRedis:
    """A redis-server of the test's own (AOF on, so a restart keeps what it had).

    ``stop`` sends SIGTERM and waits for the process to exit; ``start`` runs it again on the
    same port and directory.
    """

    def __init__(self, password: str | None = None) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="taskq-redis-")
        self.password = password
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self._process is None, "already running"
        command = [
            shutil.which("redis-server") or "redis-server",
            "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
            "--save", "", "--appendonly", "yes", "--appendfsync", "always",
        ]  # fmt: skip
        if self.password:
            command += ["--requirepass", self.password]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()  # redis-server shuts down cleanly on SIGTERM (AOF flushed)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)

    async def wait_up(self, up: bool = True) -> None:
        """Poll until the server answers PING (or, with ``up=False``, until it does not)."""

        async def state() -> bool:
            client = redis.asyncio.from_url(self.url, socket_connect_timeout=1)
            try:
                await client.ping()
                alive = True
            except (redis.RedisError, OSError):
                alive = False
            finally:
                await client.aclose()
            return alive is up

        await eventually(state, timeout=15, interval=0.05, what=f"redis {'up' if up else 'down'}")


@contextlib.contextmanager
def own_redis_server(password: str | None = None) -> Iterator[OwnRedis]:
    """A started :class:`OwnRedis`, stopped and its directory removed whatever happens."""
    server = OwnRedis(password)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)
