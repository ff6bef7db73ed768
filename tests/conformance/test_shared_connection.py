"""An application that already holds an aio-pika connection hands it to taskq
(``app.open(connection=...)``, transport="aio-pika"): taskq opens its channels on it, opens no
connection of its own for the client, and leaves it open when the App closes."""

from __future__ import annotations

import asyncio

import aio_pika
import pytest

from taskq import App, ConfigurationError
from tests.broker_control import connection_pids
from tests.support import BROKER, running_worker

pytestmark = pytest.mark.one_queue_only  # about the client's connection, not the worker's queues


async def test_the_app_shares_the_applications_connection(
    app: App, prefix: str, transport: str
) -> None:
    own = f"shared-{prefix}"
    connection = await aio_pika.connect_robust(BROKER, client_properties={"connection_name": own})
    try:
        if transport == "native":
            with pytest.raises(ConfigurationError, match="aio-pika"):
                await app.open(connection=connection)
            assert not app.is_open
            return
        await app.open(connection=connection)
        try:
            async with running_worker(app):
                assert await (await app.send("add", 2, 3)).result(timeout=15) == 5
            client = f"taskq:{app.name}"
            assert await asyncio.to_thread(connection_pids, client) == []
            assert len(await asyncio.to_thread(connection_pids, own)) == 1
        finally:
            await app.close()
        assert not connection.is_closed
        channel = await connection.channel()  # still usable by the application
        await channel.close()
    finally:
        await connection.close()
