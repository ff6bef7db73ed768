"""Result stores side by side: round-trip latency and fan-out throughput.

    python -m benchmarks.results_latency [--stores amqp,redis,postgres,celery-db]
        [--roundtrips 300] [--fanout 2000] [--json PATH] [--markdown PATH]

taskq's stores (``amqp``, ``redis``, ``postgres``): one in-process worker (concurrency 64) and
a client share one event loop (uvloop when installed), against the local RabbitMQ, Redis and
PostgreSQL:

- round trip: ``await (await echo.delay(i)).result()`` one after the other: p50/p99 in ms;
- fan-out: send N tasks at once, then wait for all N results: tasks/s from first send to
  last result.

``celery-db``: Celery's database result backend (SQLAlchemy + psycopg 3) on the same
PostgreSQL, a prefork worker (2 processes, prefetch 64) and a client process: ``delay().get()``
one after the other, then N ``delay()`` in a loop joined with ``ResultSet.get()``. Its client
polls the backend every 1 ms, and both processes pool their database connections: Celery's
best case (``celery-db-default`` measures its defaults: a poll every 0.5 s, and a connection
per query; round trips only). Each run uses its own prefix and deletes its queues, exchanges,
Redis keys and tables afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import redis.asyncio

from taskq import App, Worker
from taskq.cli.common import run_loop
from taskq.topology import Names, every_name

BROKER = os.environ.get("BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672/")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REPO = Path(__file__).resolve().parent.parent
CELERY_PROCESSES = 2
"""Celery's default pool (prefork, one process a core here). Not solo: Celery's database
backend pools connections only in forked children; elsewhere (a solo worker, the client) it
opens a connection per query (SQLAlchemy NullPool)."""
STORES = ("amqp", "redis", "postgres", "celery-db", "celery-db-default")
CONFIG = {
    "amqp": "taskq, AMQP replies, worker concurrency 64",
    "redis": "taskq, Redis store, worker concurrency 64",
    "postgres": "taskq, PostgreSQL store (asyncpg), worker concurrency 64",
    "celery-db": "Celery 5.7 database backend (SQLAlchemy, psycopg 3), prefork worker "
    "(2 processes), prefetch 64; pooled connections, client polls every 1 ms",
    "celery-db-default": "the same with Celery's defaults: a new connection per query, "
    "client polls every 0.5 s",
}


def make_app(prefix: str, results: str) -> App:
    app = App("bench-results", broker=BROKER, prefix=prefix, results=results)

    @app.task
    async def echo(x: int) -> int:
        return x

    return app


async def measure(store: str, roundtrips: int, fanout: int) -> dict[str, Any]:
    results = {"amqp": "amqp", "redis": REDIS, "postgres": POSTGRES}[store]
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
        await delete_queues(Names(prefix), ["default"])
        await cleanup_store(prefix, results)
    return row(store, latencies, fanout, elapsed)


def row(store: str, latencies_ms: list[float], fanout: int, elapsed: float) -> dict[str, Any]:
    cuts = statistics.quantiles(latencies_ms, n=100)
    return {
        "store": store,
        "config": CONFIG[store],
        "roundtrips": len(latencies_ms),
        "p50_ms": statistics.median(latencies_ms),
        "p99_ms": cuts[98],
        "fanout": fanout,
        "fanout_tasks_per_s": fanout / elapsed if fanout else None,
    }


async def delete_queues(names: Names | None, queues: list[str], exchanges: tuple[str, ...] = ()
                        ) -> None:  # fmt: skip
    connection = await aio_pika.connect(BROKER)
    try:
        channel = await connection.channel()
        queue_names, exchange_names = every_name(names, queues) if names else (queues, [])
        for queue in queue_names:
            await channel.queue_delete(queue)
        for exchange in [*exchange_names, *exchanges]:
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()


async def cleanup_store(prefix: str, results: str) -> None:
    if results.startswith("redis"):
        client = redis.asyncio.from_url(results)
        try:
            keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
            for start in range(0, len(keys), 1000):
                await client.delete(*keys[start : start + 1000])
        finally:
            await client.aclose()
    elif results.startswith("postgres"):
        await drop_tables(f"{prefix}_results")


async def drop_tables(*tables: str) -> None:
    import asyncpg

    from taskq.results.postgres_schema import Tables

    connection = await asyncpg.connect(POSTGRES)
    try:
        for table in tables:  # each results table with its schema and workflow tables
            every = ", ".join(Tables.named(table).every_table())
            await connection.execute(f"DROP TABLE IF EXISTS {every}")
    finally:
        await connection.close()


async def measure_celery_db(
    store: str, roundtrips: int, fanout: int, interval: float
) -> dict[str, Any]:
    """Celery's database backend: a worker process and a client process (see the module)."""
    default = store == "celery-db-default"
    interval = 0.5 if default else interval
    prefix = f"bench{uuid.uuid4().hex[:10]}"
    queue = f"{prefix}.celerydb"
    env = {**os.environ, "BENCH_QUEUE": queue, "BENCH_BROKER": BROKER, "BENCH_DB_PREFIX": prefix,
           "PYTHONPATH": str(REPO), "BENCH_CELERY_POOLED": "0" if default else "1"}  # fmt: skip
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "celery", "-A", "benchmarks.bench_apps.celery_db", "worker",
        "-P", "prefork", "-c", str(CELERY_PROCESSES), "--without-gossip", "--without-mingle",
        "--without-heartbeat", "-Q", queue, "-l", "warning", cwd=REPO, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.bench_apps.celery_db", str(roundtrips),
            str(fanout), str(interval), cwd=REPO, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(client.communicate(), 600 + roundtrips + fanout / 10)
    finally:
        worker.terminate()
        await worker.wait()
        await delete_queues(None, [queue], (queue,))
        await drop_tables(f"{prefix}_taskmeta", f"{prefix}_groupmeta")
    text = out.decode(errors="replace")
    lines = [line for line in text.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"the Celery client failed ({client.returncode}):\n{text[-3000:]}")
    data = json.loads(lines[-1][len("RESULT ") :])
    assert not fanout or data["counted"] == fanout, data
    samples = [s * 1000 for s in data["samples"]]
    return row(store, samples, fanout, data["fanout_s"])


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average_1_5_15": [round(x, 2) for x in load],
    }


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Result stores: round trip and fan-out",
        "",
        f"{meta['date']}, {meta['cores']} cores, Python {meta['python']}, load average "
        f"{meta['load_average_1_5_15']} at the start (a shared machine: noisy figures). "
        "`python -m benchmarks.results_latency`.",
        "",
        "| store | round trips | p50 ms | p99 ms | fan-out tasks | fan-out tasks/s | setup |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        rate = f"{r['fanout_tasks_per_s']:.0f}" if r["fanout_tasks_per_s"] else "-"
        lines.append(
            f"| {r['store']} | {r['roundtrips']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['fanout'] or '-'} | {rate} | {r['config']} |"
        )
    return "\n".join(lines) + "\n"


async def main(args: argparse.Namespace) -> None:
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = set(stores) - set(STORES)
    if unknown:
        raise SystemExit(f"unknown store(s) {sorted(unknown)}: use {', '.join(STORES)}")
    meta = machine()
    rows = []
    print(f"{'store':<18} {'p50 ms':>8} {'p99 ms':>8} {'fan-out tasks/s':>16}", flush=True)
    for store in stores:
        if store.startswith("celery"):
            default = store == "celery-db-default"
            r = await measure_celery_db(
                store,
                min(args.roundtrips, 20) if default else args.roundtrips,
                0 if default else args.fanout,
                args.celery_interval,
            )
        else:
            r = await measure(store, args.roundtrips, args.fanout)
        rows.append(r)
        rate = f"{r['fanout_tasks_per_s']:16.0f}" if r["fanout_tasks_per_s"] else f"{'-':>16}"
        print(f"{store:<18} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {rate}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": meta, "results": rows}, indent=2))
    if args.markdown:
        Path(args.markdown).write_text(markdown(rows, meta))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="amqp,redis,postgres,celery-db")
    parser.add_argument("--roundtrips", type=int, default=300)
    parser.add_argument("--fanout", type=int, default=2000)
    parser.add_argument(
        "--celery-interval",
        type=float,
        default=0.001,
        help="seconds between the Celery client's polls (celery-db)",
    )
    parser.add_argument("--json", help="write the figures and the machine here")
    parser.add_argument("--markdown", help="write a table here")
    run_loop(main(parser.parse_args()))
