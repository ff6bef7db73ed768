"""The raw aio-pika ceiling: the same work with no framework (persistent messages, confirms on,
mandatory publishes, one ack per message through the high-level API)."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

import aio_pika

from . import broker, enqueue_floor, rt_floor
from . import harness as h
from .harness import Options, Result

REPLY_TO = "amq.rabbitmq.reply-to"


def _message(i: int, **props: object) -> aio_pika.Message:
    return aio_pika.Message(
        str(i).encode(),
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=uuid.uuid4().hex,
        **props,
    )  # type: ignore[arg-type]


async def _publisher(
    queue: str,
) -> tuple[aio_pika.abc.AbstractConnection, aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(broker.BROKER)
    ch = await connection.channel(publisher_confirms=True, on_return_raises=True)
    await ch.declare_queue(queue, durable=True)
    return connection, ch


async def publish_all(queue: str, n: int, *, pipelined: bool) -> float:
    connection, ch = await _publisher(queue)
    try:
        ex = ch.default_exchange
        start = time.perf_counter()
        if pipelined:
            await asyncio.gather(*(ex.publish(_message(i), queue) for i in range(n)))
        else:
            for i in range(n):
                await ex.publish(_message(i), queue)
        return time.perf_counter() - start
    finally:
        await connection.close()


async def enqueue(queue: str, opts: Options) -> list[Result]:
    results = []
    seq = min(opts.tasks, opts.sequential_cap)
    for role, variant, count, pipelined in (
        ("ceiling", "pipelined confirms", opts.tasks, True),
        ("", "await each", seq, False),
    ):
        h.progress(f"raw enqueue: {variant}, {count} messages")
        elapsed = await publish_all(queue, count, pipelined=pipelined)
        depth = await broker.queue_depth(queue)
        results.append(
            h.rate(
                "raw",
                "enqueue",
                variant,
                "aio-pika, persistent, mandatory",
                count,
                elapsed,
                role,
                counted=depth,
            )
        )
        await broker.purge(queue)
    return results


def worker_command(queue: str, prefetch: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "benchmarks.bench_apps.raw_worker",
        broker.BROKER,
        queue,
        str(prefetch),
        *extra,
    ]


async def prequeue(queue: str, tasks: int) -> None:
    for start in range(0, tasks, 5000):
        await publish_all(queue, min(5000, tasks - start), pipelined=True)


def drains(queue: str, opts: Options, processes: int) -> list[h.Drain]:
    """Prefetch 1000 (the ceiling) and the second prefetch (64), one consumer per process."""
    scenario = "drain" if processes == 1 else f"drain{processes}"
    return [
        h.Drain(
            "raw",
            scenario,
            f"prefetch {prefetch}, ack each",
            f"{processes} x aio-pika consumer process (one connection and channel), "
            f"prefetch {prefetch}, await message.ack() per message, uvloop",
            [worker_command(queue, prefetch)] * processes,
            {},
            queue,
            processes,
            role,
        )
        for role, prefetch in (("ceiling", opts.prefetch), ("", opts.concurrency))
    ]


class RpcClient:
    """Direct reply-to RPC: publish (confirmed) with reply_to, await the reply by correlation."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.waiting: dict[str, asyncio.Future[bytes]] = {}

    async def __aenter__(self) -> RpcClient:
        self.connection = await aio_pika.connect(broker.BROKER)
        self.channel = await self.connection.channel(publisher_confirms=True)
        replies = await self.channel.get_queue(REPLY_TO, ensure=False)
        await replies.consume(self._on_reply, no_ack=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()

    async def _on_reply(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        future = self.waiting.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(message.body)

    async def call(self, i: int) -> bytes:
        cid = uuid.uuid4().hex
        future = asyncio.get_running_loop().create_future()
        self.waiting[cid] = future
        await self.channel.default_exchange.publish(
            _message(i, correlation_id=cid, reply_to=REPLY_TO), self.queue
        )
        return await future


async def with_worker(queue: str, opts: Options) -> list[Result]:
    results = []
    workers = h.Workers([worker_command(queue, opts.prefetch, "rpc")], {})
    try:
        await workers.wait_log("consuming")
        async with RpcClient(queue) as client:
            await client.call(0)
            if "roundtrip" in opts.scenarios:
                h.progress(f"raw roundtrip: {opts.roundtrips} calls")
                samples = []
                start = time.perf_counter()
                for i in range(opts.roundtrips):
                    t0 = time.perf_counter()
                    assert await client.call(i) == str(i).encode()
                    samples.append(time.perf_counter() - t0)
                results.append(
                    h.latency(
                        "raw",
                        "roundtrip",
                        "direct reply-to",
                        "confirmed publish + amq.rabbitmq.reply-to",
                        samples,
                        time.perf_counter() - start,
                        "ceiling",
                    )
                )
            if "fanout" in opts.scenarios:
                h.progress(f"raw fanout: {opts.fanout} concurrent calls")
                start = time.perf_counter()
                values = await asyncio.gather(*(client.call(i) for i in range(opts.fanout)))
                elapsed = time.perf_counter() - start
                results.append(
                    h.rate(
                        "raw",
                        "fanout",
                        "direct reply-to",
                        "confirmed publishes + amq.rabbitmq.reply-to",
                        opts.fanout,
                        elapsed,
                        "ceiling",
                        counted=len(values),
                    )
                )
    finally:
        await workers.stop()
    return results


async def run(opts: Options, prefix: str) -> list[Result]:
    """Every selected raw scenario on queue ``{prefix}.raw`` (deleted afterwards)."""
    queue = f"{prefix}.raw"
    results: list[Result] = []
    try:
        if "enqueue" in opts.scenarios:
            results += await h.steadily(
                "raw enqueue", lambda: enqueue(queue, opts), lambda: broker.purge(queue)
            )
            results += await h.steadily(
                "floor enqueue", lambda: enqueue_floor.rows(opts.tasks, prefix)
            )
        for processes, scenario in ((1, "drain"), (2, "drain2")):
            if scenario in opts.scenarios:
                for drain in drains(queue, opts, processes):
                    results.append(
                        await h.measure_drain(drain, opts.tasks, lambda n: prequeue(queue, n))
                    )
        if {"roundtrip", "fanout"} & set(opts.scenarios):
            results += await h.steadily(
                "raw roundtrip/fanout",
                lambda: with_worker(queue, opts),
                lambda: broker.purge(queue),
            )
        if "roundtrip" in opts.scenarios:
            results += await h.steadily(
                "raw roundtrip floor", lambda: rt_floor.rows(opts.roundtrips, prefix)
            )
    finally:
        await broker.delete(queues=[queue])
    return results
