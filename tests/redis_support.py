"""Redis outages for tests: a private redis-server, and a TCP proxy that cuts connections.

Never the shared Redis: each helper owns what it starts and removes it afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator

import redis.asyncio

from tests.support import eventually


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


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to a Redis on 127.0.0.1:``target``, in the test's loop.

    ``cut()`` drops every open connection at once (both sides); ``freeze()`` turns the open
    ones into black holes (they stay open, and what is sent on them is dropped, as on a dead
    network path); while ``refusing`` is set, new connections are closed as soon as they are
    accepted.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.accepted = 0
        self.refusing = False
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._frozen: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            pipe = asyncio.create_task(self._pipe(source, sink, pair))
            self._pipes.add(pipe)
            pipe.add_done_callback(self._pipes.discard)

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        try:
            while data := await source.read(65536):
                if pair in self._frozen:
                    continue
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            self._drop(pair)  # one side closed: close the other too

    def _drop(self, pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
        self._pairs.discard(pair)
        self._frozen.discard(pair)
        for writer in pair:
            writer.transport.abort()

    def cut(self) -> int:
        """Drop every open connection (both ends at once); return how many there were."""
        pairs = list(self._pairs)
        for pair in pairs:
            self._drop(pair)
        return len(pairs)

    def freeze(self) -> int:
        """Silently drop all traffic on every open connection from now on; return how many."""
        self._frozen |= self._pairs
        return len(self._pairs)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.cut()
        pipes = list(self._pipes)
        for pipe in pipes:
            pipe.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
