"""Result stores side by side: round-trip latency and fan-out throughput, AMQP vs Redis.

    python -m benchmarks.results_latency [--roundtrips 300] [--fanout 2000] [--redis URL]

For each store, one in-process worker (concurrency 64) and a client share one event loop
(uvloop when installed), against the local RabbitMQ and Redis:

- round trip: ``await (await echo.delay(i)).result()`` one after the other: p50/p99 in ms;
- fan-out: send N tasks at once, then wait for all N results: tasks/s from first send to
  last result.

Each run uses its own prefix and deletes its queues, exchanges and Redis keys afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from typing import Any

import aio_pika
import redis.asyncio

from taskq import App, Worker
from taskq.cli.common import run_loop
from taskq.topology import Names, every_name

BROKER = os.environ.get("BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672/")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")


def make_app(prefix: str, results: str) -> App:
    app = App("bench-results", broker=BROKER, prefix=prefix, results=results)

    @app.task
    async def echo(x: int) -> int:
        return x

    return app


async def measure(results: str, roundtrips: int, fanout: int) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:10]}"
    app = make_app(prefix, results)
    echo = app.tasks["echo"]
    worker = Worker(app, concurrency=64)
    try:
        async with app:
            running = asyncio.create_task(worker.run())
            await asyncio.wait_for(worker.ready.wait(), 30)
            for i in range(20):  # warm up connections, scripts, queues
                await (await echo.delay(i)).result(timeout=30)
            latencies = []
            for i in range(roundtrips):
                start = time.perf_counter()
                await (await echo.delay(i)).result(timeout=30)
                latencies.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            handles = await asyncio.gather(*(echo.delay(i) for i in range(fanout)))
            values = await asyncio.gather(*(h.result(timeout=120) for h in handles))
            elapsed = time.perf_counter() - start
            assert values == list(range(fanout))
            worker.stop()
            await running
    finally:
        await cleanup(prefix, results)
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "store": "redis" if results.startswith("redis") else "amqp",
        "p50_ms": statistics.median(latencies),
        "p99_ms": cuts[98],
        "fanout_tasks_per_s": fanout / elapsed,
    }


async def cleanup(prefix: str, results: str) -> None:
    names = Names(prefix)
    connection = await aio_pika.connect(BROKER)
    try:
        channel = await connection.channel()
        queue_names, exchanges = every_name(names, ["default"])
        for queue in queue_names:
            await channel.queue_delete(queue)
        for exchange in exchanges:
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()
    if results.startswith("redis"):
        client = redis.asyncio.from_url(results)
        try:
            keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
            for start in range(0, len(keys), 1000):
                await client.delete(*keys[start : start + 1000])
        finally:
            await client.aclose()


async def main(args: argparse.Namespace) -> None:
    print(f"{'store':<6} {'p50 ms':>8} {'p99 ms':>8} {'fan-out tasks/s':>16}")
    for results in ("amqp", args.redis):
        row = await measure(results, args.roundtrips, args.fanout)
        print(
            f"{row['store']:<6} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} "
            f"{row['fanout_tasks_per_s']:16.0f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roundtrips", type=int, default=300)
    parser.add_argument("--fanout", type=int, default=2000)
    parser.add_argument("--redis", default=REDIS)
    run_loop(main(parser.parse_args()))
