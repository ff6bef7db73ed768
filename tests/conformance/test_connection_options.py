"""What the broker URL asks of a connection (heartbeat, name, unknown parameters) and how a
connection ends: a silent peer is detected by heartbeats, a close from the broker is answered.

Written against taskq's public API (App, its settings and ``app.transport.connected``) so the
same tests can run against another transport."""

from __future__ import annotations

import pytest

from taskq import App, ConfigurationError
from tests.broker_control import close_connections, heartbeat_timeouts
from tests.support import BROKER, broker_proxy, eventually, with_query

# Connection.CloseOk on channel 0: frame type 1, channel 0, size 4, class 10, method 51, end.
CLOSE_OK = bytes.fromhex("01000000000004000a0033ce")


@pytest.mark.parametrize("heartbeat", [5, 0])
async def test_the_heartbeat_of_the_url_is_the_one_the_broker_uses(
    prefix: str, topology_cleanup: set[str], heartbeat: int
) -> None:
    app = App(prefix, broker=with_query(BROKER, heartbeat=str(heartbeat)), prefix=prefix)
    async with app:
        timeouts = await heartbeat_timeouts(prefix)
    assert timeouts, f"no connection named after {prefix} on the broker"
    assert set(timeouts) == {heartbeat}


async def test_the_name_of_the_url_names_the_connections(
    prefix: str, topology_cleanup: set[str]
) -> None:
    app = App(prefix, broker=with_query(BROKER, name=f"svc-{prefix}"), prefix=prefix)
    async with app:
        named = await heartbeat_timeouts(f"svc-{prefix}:")
    assert named, f"no connection named svc-{prefix}:... on the broker"


@pytest.mark.parametrize(
    ("query", "named"),
    [({"heartbeet": "5"}, "heartbeet"), ({"connection_attempts": "3"}, "connection_attempts")],
)
def test_an_unknown_url_parameter_is_refused(query: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        App("urls", broker=with_query(BROKER, **query))
    text = str(refused.value)
    assert named in text
    assert "accepted: " in text and "heartbeat" in text.split("accepted: ")[1]
    assert "guest:guest" not in text  # the password stays out of the message


@pytest.mark.parametrize("heartbeat", ["-1", "soon", "70000"])
def test_a_bad_heartbeat_is_refused(heartbeat: str) -> None:
    with pytest.raises(ConfigurationError, match="heartbeat="):
        App("urls", broker=with_query(BROKER, heartbeat=heartbeat))


async def test_a_silent_broker_is_detected_by_heartbeats(
    prefix: str, topology_cleanup: set[str]
) -> None:
    async with broker_proxy() as proxy:
        app = App(
            prefix,
            broker=with_query(proxy.amqp_url(), heartbeat="1"),
            prefix=prefix,
            publish_timeout=2,  # closing the App waits that long for the lost connection
        )
        async with app:
            assert app.transport.connected
            proxy.refusing = True  # no reconnect: the connection stays down once it is lost
            assert proxy.freeze() >= 1  # open, but nothing gets through: a dead peer

            async def lost() -> bool:
                return not app.transport.connected

            # With heartbeats every second, a few seconds; the broker's 60 s would take 2 min.
            await eventually(lost, timeout=30, what="the silent connection to be reported lost")


async def test_a_close_from_the_broker_is_answered_with_close_ok(
    prefix: str, topology_cleanup: set[str]
) -> None:
    async with broker_proxy() as proxy:
        app = App(prefix, broker=proxy.amqp_url(), prefix=prefix, publish_timeout=2)
        async with app:
            proxy.refusing = True  # no reconnect: only the closed connections write from now on
            proxy.recording = True
            assert await close_connections(prefix) >= 1

            async def answered() -> bool:
                return CLOSE_OK in proxy.from_clients

            await eventually(answered, what="Connection.CloseOk from taskq")
