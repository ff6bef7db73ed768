"""A TCP proxy a test (or the fault suite) controls, to stage network outages between a
client and a server: cut every connection, refuse new ones, or freeze the open ones."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator

Pair = tuple[asyncio.StreamWriter, asyncio.StreamWriter]


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target_host:target_port``, in the caller's loop.

    ``cut()`` drops every open connection at once (both sides, as a reset); ``freeze()`` turns
    the open ones into black holes (they stay open, and what is sent on them is dropped, as on
    a dead network path); while ``refusing`` is set (``refuse()``/``restore()``), new
    connections are closed as soon as they are accepted. ``stall()`` stops reading what
    clients send (as a broker that blocked their connections does) until ``unstall()``: the
    kernel buffers fill and the client's socket stops taking writes.

    ``amqp_base`` is the URL of the AMQP server behind it: ``amqp_url()`` keeps its
    credentials, vhost and options. While ``recording`` is set, ``from_clients`` collects the
    bytes the clients send (to check what a client wrote, e.g. a frame it owes the server).
    """

    def __init__(
        self,
        target_port: int,
        target_host: str = "127.0.0.1",
        amqp_base: str = "amqp://guest:guest@127.0.0.1/",
    ) -> None:
        self.target = (target_host, target_port)
        self.amqp_base = amqp_base
        self.port = 0
        self.accepted = 0
        self.refusing = False
        self.recording = False
        self.from_clients = bytearray()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._pairs: set[Pair] = set()
        self._frozen: set[Pair] = set()
        self._reading = asyncio.Event()
        self._reading.set()

    def redis_url(self, db: int = 0) -> str:
        """A redis:// URL through this proxy."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    def amqp_url(self) -> str:
        """``amqp_base`` through this proxy: its host and port replaced by the proxy's."""
        parts = urllib.parse.urlsplit(self.amqp_base)
        login, at, _ = parts.netloc.rpartition("@")
        return urllib.parse.urlunsplit(parts._replace(netloc=f"{login}{at}127.0.0.1:{self.port}"))

    async def start(self) -> None:
        """Listen on a free port (``self.port``)."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        for source, sink, from_client in ((reader, up_writer, True), (up_reader, writer, False)):
            pipe = asyncio.ensure_future(self._pipe(source, sink, pair, from_client=from_client))
            self._pipes.add(pipe)
            pipe.add_done_callback(self._pipes.discard)

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        pair: Pair,
        *,
        from_client: bool,
    ) -> None:
        try:
            while True:
                if from_client:  # stall() stops reading what clients send
                    await self._reading.wait()
                data = await source.read(65536)
                if not data:
                    break
                if pair in self._frozen:
                    continue
                if from_client and self.recording:
                    self.from_clients += data
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._drop(pair)  # one side closed: close the other too

    def _drop(self, pair: Pair) -> None:
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

    def stall(self) -> None:
        """Stop reading from the clients (what the server sends still reaches them)."""
        self._reading.clear()

    def unstall(self) -> None:
        """Read from the clients again."""
        self._reading.set()

    def refuse(self) -> int:
        """Close new connections at once until ``restore()``, and cut the open ones."""
        self.refusing = True
        return self.cut()

    def restore(self) -> None:
        """Accept and forward new connections again."""
        self.refusing = False

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.cut()
        pipes = list(self._pipes)
        for pipe in pipes:
            pipe.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)


@contextlib.asynccontextmanager
async def tcp_proxy(
    target_port: int,
    target_host: str = "127.0.0.1",
    amqp_base: str = "amqp://guest:guest@127.0.0.1/",
) -> AsyncIterator[TcpProxy]:
    """A started TcpProxy to ``target_host:target_port``, closed on exit."""
    proxy = TcpProxy(target_port, target_host, amqp_base)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
