"""Faults a test makes on purpose: rabbitmqctl, and a TCP proxy in front of the broker."""

from __future__ import annotations

import asyncio

from tests.support import BROKER


async def rabbitmqctl(*args: str) -> str:
    """Run ``rabbitmqctl ARGS``; return its output (fail the test if it fails)."""
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert await process.wait() == 0, err.decode()
    return out.decode()


async def consumed(queue_name: str) -> bool:
    """Whether ``queue_name`` exists and has a consumer. Asks rabbitmqctl: an exclusive queue
    (a reply queue) cannot be declared from another connection, not even passively."""
    listing = await rabbitmqctl("list_queues", "name", "consumers", "-q", "--no-table-headers")
    rows = [line.split("\t") for line in listing.splitlines()]
    return any(row[0] == queue_name and int(row[1]) > 0 for row in rows if len(row) == 2)


class TcpProxy:
    """A TCP proxy on 127.0.0.1 in front of the broker, which a test can cut.

    ``cut()`` closes every connection through it and refuses new ones until ``restore()``:
    for the clients behind it, the broker is unreachable, while everyone else still reaches it.
    """

    def __init__(self, target_port: int = 5672) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open = True
        self._pipes: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def url(self) -> str:
        """The broker URL through the proxy."""
        return BROKER.replace(":5672/", f":{self.port}/")

    def cut(self) -> None:
        self._open = False
        for writer in list(self._pipes):
            writer.close()

    def restore(self) -> None:
        self._open = True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._open:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._pipes |= {writer, up_writer}
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer), self._pipe(up_reader, writer)
            )
        finally:
            self._pipes -= {writer, up_writer}

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
