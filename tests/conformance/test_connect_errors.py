"""Connecting where it cannot work says why: a port that is not AMQP, amqps:// to a plain port,
a refused login or virtual host (with their own exit code in both commands)."""

from __future__ import annotations

import asyncio
import os
import sys
import urllib.parse
from collections.abc import Callable

import pytest

from taskq import App, BrokerRefused, BrokerUnavailable
from taskq.cli.common import ExitCode
from tests.postgres_support import POSTGRES_PORT
from tests.redis_support import REDIS_URL
from tests.support import BROKER, REPO, broker_endpoint, closed_port, run_taskq

CONNECT_TIMEOUT = 3.0
GUARD = CONNECT_TIMEOUT + 30  # only against a hang: no timing decides these tests


def _with(url: str, **parts: str) -> str:
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(**parts))


def wrong_password() -> str:
    endpoint = broker_endpoint()
    return f"amqp://{endpoint.user}:not-the-password@{endpoint.host}:{endpoint.port}/"


def missing_vhost() -> str:
    return _with(BROKER, path="/taskq-no-such-vhost")


def closed_broker() -> str:
    return f"amqp://guest:guest@127.0.0.1:{closed_port()}/"


async def connect(broker: str) -> BaseException:
    """What connecting to ``broker`` raised."""
    app = App("connect-errors", broker=broker, connect_timeout=CONNECT_TIMEOUT)
    with pytest.raises(BrokerUnavailable) as failure:
        async with asyncio.timeout(GUARD), app:
            pass
    return failure.value


@pytest.mark.parametrize(
    "port",
    [int(urllib.parse.urlsplit(REDIS_URL).port or 6379), POSTGRES_PORT],
    ids=["redis", "postgresql"],
)
async def test_a_port_that_is_not_amqp_is_named_as_such(port: int) -> None:
    failure = await connect(f"amqp://guest:guest@127.0.0.1:{port}/")
    assert not isinstance(failure, BrokerRefused)
    assert "does not speak AMQP 0-9-1" in str(failure)
    assert f"127.0.0.1:{port}" in str(failure)


async def test_amqps_to_a_plain_port_says_it_may_not_be_a_tls_port() -> None:
    endpoint = broker_endpoint()
    failure = await connect(f"amqps://guest:guest@{endpoint.host}:{endpoint.port}/")
    text = str(failure)
    assert "TLS handshake" in text and "may not be a TLS port" in text
    assert "client certificate" not in text


@pytest.mark.parametrize(
    ("broker", "said"),
    [(wrong_password, "refused the login of user"), (missing_vhost, "taskq-no-such-vhost")],
    ids=["wrong-password", "missing-vhost"],
)
async def test_a_refusal_is_broker_refused(broker: Callable[[], str], said: str) -> None:
    failure = await connect(broker())
    assert isinstance(failure, BrokerRefused)
    assert said in str(failure)
    assert "not-the-password" not in str(failure)


async def test_a_broker_that_is_down_is_not_a_refusal() -> None:
    failure = await connect(closed_broker())
    assert not isinstance(failure, BrokerRefused)


BROKERS = {"wrong-password": wrong_password, "missing-vhost": missing_vhost, "down": closed_broker}
CODES = {
    "wrong-password": ExitCode.BROKER_REFUSED,
    "missing-vhost": ExitCode.BROKER_REFUSED,
    "down": ExitCode.BROKER_UNREACHABLE,
}


@pytest.mark.parametrize("case", sorted(BROKERS))
async def test_taskq_exit_codes(prefix: str, case: str) -> None:
    code, _, err = await run_taskq(prefix, "queues", broker=BROKERS[case]())
    assert code == CODES[case], err
    assert "not-the-password" not in err


@pytest.mark.parametrize("case", sorted(BROKERS))
async def test_taskq_worker_exit_codes(prefix: str, case: str) -> None:
    env = {
        **os.environ,
        "TASKQ_PREFIX": prefix,
        "TASKQ_BROKER": BROKERS[case](),
        "TASKQ_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
        "PYTHONPATH": str(REPO),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "taskq.cli.worker", "tests.apps.ops_app:app",
        cwd=REPO, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=GUARD + 30)
    assert process.returncode == CODES[case], (out + err).decode()
    assert b"Traceback" not in err
    assert b"not-the-password" not in out + err
