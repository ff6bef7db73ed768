"""Several broker URLs (the nodes of a cluster): connections go to the next URL when one
fails, for clients and workers. Each "node" here is a TCP proxy to the shared broker that the
test cuts and refuses, so the failover is real while the broker stays up."""

from __future__ import annotations

import asyncio

import pytest

from taskq import App, BrokerUnavailable
from tests.support import BROKER, broker_proxy, closed_port, eventually, running_worker


def make_app(prefix: str, broker: str | list[str]) -> App:
    app = App("urls", broker=broker, prefix=prefix)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    return app


async def test_a_dead_first_url_is_skipped(prefix: str, topology_cleanup: set[str]) -> None:
    dead = f"amqp://guest:guest@127.0.0.1:{closed_port()}/"
    app = make_app(prefix, f"{dead},{BROKER}")
    assert len(app.settings.broker_urls) == 2
    async with app, running_worker(app):
        assert await (await app.tasks["add"].delay(2, 3)).result(timeout=15) == 5


async def test_no_url_answers(prefix: str) -> None:
    urls = [f"amqp://guest:s3cret@127.0.0.1:{closed_port()}/" for _ in range(2)]
    app = make_app(prefix, urls)
    with pytest.raises(BrokerUnavailable) as failure:
        async with app:
            pass
    text = str(failure.value)
    assert "no broker URL answered" in text
    assert all(f":{url.rsplit(':', 1)[1]}" in text for url in urls)
    assert "s3cret" not in text


async def test_clients_and_workers_move_to_the_next_url(
    prefix: str, topology_cleanup: set[str]
) -> None:
    async with broker_proxy() as first, broker_proxy() as second:
        app = make_app(prefix, [first.amqp_url(), second.amqp_url()])
        add = app.tasks["add"]
        async with app, running_worker(app) as worker:
            assert await (await add.delay(1, 1)).result(timeout=15) == 2
            assert second.accepted == 0  # everyone started on the first URL
            handles = [await add.delay(i, i) for i in range(50)]
            first.refuse()  # the "node" dies: its connections drop, new ones are refused
            first.cut()
            handles += [await add.delay(i, 0) for i in range(50)]
            results = await asyncio.gather(*(h.result(timeout=60) for h in handles))
            assert results == [2 * i for i in range(50)] + list(range(50))

            async def moved() -> bool:
                return worker.counters.succeeded >= 101

            await eventually(moved, what="the worker to run every task")
        # Client (publisher, replies) and worker connections reopened on the second URL.
        assert second.accepted >= 2
