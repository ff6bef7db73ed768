"""A call made while the transport reconnects raises taskq's BrokerUnavailable, never the AMQP
client's own exception (issue 20: errors are mapped at the transport's boundary).

aio-pika refuses a channel on a robust connection that is reconnecting with a plain
``RuntimeError("<Connection ...> closed")``; that must reach the caller as BrokerUnavailable,
like every other lost-connection error, and the transport must work again once the broker
is back.
"""

from __future__ import annotations

import asyncio

import pytest

from taskq import App
from taskq.exceptions import BrokerUnavailable
from tests.support import broker_proxy, eventually


def ignore(correlation_id: str | None, body: bytes, kind: str | None) -> None:
    """Replies mean nothing here."""


async def test_a_channel_opened_while_reconnecting_fails_as_broker_unavailable(
    prefix: str, topology_cleanup: set[str]
) -> None:
    async with broker_proxy() as proxy:
        app = App("reconnecting", broker=proxy.amqp_url(), prefix=prefix, publish_timeout=1)
        async with app:
            transport = app.transport
            async with transport.reply_inbox(ignore):  # opens the consuming connection
                pass
            proxy.refuse()
            await eventually(lambda: _down(app), what="the transport sees the broker gone")
            with pytest.raises(BrokerUnavailable):
                async with asyncio.timeout(30), transport.reply_inbox(ignore):
                    pass
            proxy.restore()
            await eventually(lambda: _up(app), timeout=30, what="the transport reconnected")
            async with transport.reply_inbox(ignore) as name:
                assert name


async def _down(app: App) -> bool:
    return not app.transport.connected


async def _up(app: App) -> bool:
    return app.transport.connected
