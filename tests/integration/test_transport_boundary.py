"""No error of taskq's AMQP client (ChannelClosed, a ConnectionError of its own) reaches a user:
the Transport's public methods raise the public exception tree (taskq.exceptions) only.

The connection is cut by a TCP proxy between taskq and the real broker (issue 19: a cut
connection made the first ``delay()`` to a new queue raise ChannelClosed at once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from taskq import App, BrokerError, BrokerUnavailable, TaskqError
from taskq.settings import Settings
from taskq.transport import Transport, make_transport
from taskq.transport.connection import ChannelClosed
from tests.support import BROKER, eventually
from tests.tcp_proxy import TcpProxy, tcp_proxy

SHORT = 0.5  # publish_timeout of the tests that wait it out: how long a call waits for the broker


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    async with tcp_proxy(5672) as started:
        yield started


def _ignore(*_: object) -> None:
    """A consumer callback that drops what it gets."""


async def _inbox(transport: Transport) -> None:
    async with transport.reply_inbox(_ignore):
        pass


# Every public method of the Transport that talks to the broker, with arguments that would work.
CALLS: dict[str, Callable[[Transport, str], Awaitable[object]]] = {
    "declare_work_queue": lambda t, p: t.declare_work_queue("default"),
    "declare_delay_path": lambda t, p: t.declare_delay_path(1000),
    "declare_exchange": lambda t, p: t.declare_exchange(f"{p}.x", "direct"),
    "queue_depth": lambda t, p: t.queue_depth(f"{p}.q.default"),
    "argument_refusal": lambda t, p: t.argument_refusal(f"{p}.q.default", {}),
    "server_properties": lambda t, p: t.server_properties(),
    "purge": lambda t, p: t.purge(f"{p}.q.default"),
    "delete_queue": lambda t, p: t.delete_queue(f"{p}.q.default"),
    "delete_exchange": lambda t, p: t.delete_exchange(f"{p}.x"),
    "consume": lambda t, p: t.consume("default", _ignore, prefetch=1),
    "consume_replies": lambda t, p: t.consume_replies(
        f"{p}.reply.x", _ignore, expires=60, on_lost=_ignore
    ),
    "reply_inbox": lambda t, p: _inbox(t),
    "get": lambda t, p: t.get(f"{p}.q.default"),
    "consume_bound": lambda t, p: t.consume_bound(f"{p}.b", "amq.fanout", "", _no_message),
    "listen": lambda t, p: t.listen(f"{p}.l", "amq.fanout", "", _ignore),
    "hold": lambda t, p: t.hold(f"{p}.h", {"x-expires": 60000}),
    "release": lambda t, p: t.release(f"{p}.h"),
}


async def _no_message(kind: str | None, body: bytes) -> None:
    """A bound queue's handler that does nothing."""


@pytest.mark.parametrize("method", sorted(CALLS))
async def test_a_cut_connection_never_lets_a_transport_error_escape(
    method: str, proxy: TcpProxy, prefix: str, topology_cleanup: set[str]
) -> None:
    settings = Settings(broker=proxy.amqp_url(), prefix=prefix, publish_timeout=SHORT,
                        connect_timeout=SHORT)  # fmt: skip
    transport = make_transport(settings.transport_options(), connection_name=f"boundary-{prefix}")
    await transport.connect()
    try:
        # Both connections open (the consuming one opens at its first use), then both drop.
        await transport.listen(f"{prefix}.warm", "amq.fanout", "", _ignore)
        proxy.refuse()  # the connections drop, and cannot come back

        async def noticed() -> bool:
            return not transport.connected

        await eventually(noticed, what="the transport to see its connections drop")
        with pytest.raises(TaskqError) as raised:
            await CALLS[method](transport, prefix)
        assert isinstance(raised.value, BrokerUnavailable), repr(raised.value)
        assert not isinstance(raised.value, ChannelClosed)
    finally:
        await transport.close()


async def test_the_first_delay_to_a_new_queue_waits_out_a_cut_then_raises_broker_unavailable(
    proxy: TcpProxy, prefix: str, topology_cleanup: set[str]
) -> None:
    topology_cleanup.add("fresh")
    app = App(f"c{prefix}", broker=proxy.amqp_url(), prefix=prefix, publish_timeout=SHORT)
    async with app:
        proxy.refuse()
        with pytest.raises(BrokerUnavailable) as raised:
            await app.named("fresh.job").options(queue="fresh", ignore_result=True).delay()
        assert "publish_timeout" in str(raised.value)


async def test_the_first_delay_to_a_new_queue_goes_through_once_the_broker_is_back(
    proxy: TcpProxy, prefix: str, topology_cleanup: set[str], caplog: pytest.LogCaptureFixture
) -> None:
    topology_cleanup.add("fresh")
    caplog.set_level(logging.WARNING, logger="taskq.transport")
    app = App(f"c{prefix}", broker=proxy.amqp_url(), prefix=prefix)
    async with app:
        proxy.refuse()
        fresh = app.named("fresh.job").options(queue="fresh", ignore_result=True)
        sending = asyncio.ensure_future(fresh.delay())

        async def interrupted() -> bool:
            return "interrupted" in caplog.text and not sending.done()

        await eventually(interrupted, what="the declare of the new queue to wait for the broker")
        proxy.restore()
        handle = await asyncio.wait_for(sending, timeout=60)
        depth = await app.transport.queue_depth(app.names.work_queue("fresh"))
        assert depth is not None and depth.messages == 1, (handle.id, depth)


async def test_a_refused_request_is_a_broker_error_with_its_reply_code(
    prefix: str, topology_cleanup: set[str]
) -> None:
    settings = Settings(broker=BROKER, prefix=prefix)
    options = settings.transport_options()
    first, second = make_transport(options), make_transport(options)
    await first.connect()
    await second.connect()
    try:
        await first.listen(f"{prefix}.mine", "amq.fanout", "", _ignore)
        with pytest.raises(BrokerError) as locked:  # exclusive to the first connection
            await second.listen(f"{prefix}.mine", "amq.fanout", "", _ignore)
        assert locked.value.reply_code == 405, repr(locked.value)
        assert not isinstance(locked.value, BrokerUnavailable | ChannelClosed)
        with pytest.raises(BrokerError) as missing:
            await second.get(f"{prefix}.no-such-queue")
        assert missing.value.reply_code == 404, repr(missing.value)
        assert f"{prefix}.no-such-queue" in str(missing.value)
    finally:
        await first.close()
        await second.close()
