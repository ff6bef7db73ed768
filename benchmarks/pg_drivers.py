"""asyncpg vs psycopg 3 (async) for the PostgreSQL result store, on the store's own statements.

    python -m benchmarks.pg_drivers [--dsn postgresql://postgres@127.0.0.1:5432/test]

For each driver, twice, alternating: a read by primary key, p50; a record (an upsert whose
terminal write NOTIFYs its waiters, as the store's), p50 and p99, one after the other; records
from 16 concurrent callers on a pool of 8 (per second); and fan-out: one statement NOTIFYing
5,000 times, until one LISTENing connection received them all (ms). A table of its own,
dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from taskq.cli.common import run_loop

N = 1000
_TABLE = "drv_" + uuid.uuid4().hex[:8]
_DDL = (f"CREATE TABLE {_TABLE} (task_id text PRIMARY KEY, status text, result bytea, "
        "waiters text[] NOT NULL DEFAULT '{}')")  # fmt: skip
_UPSERT = f"""WITH up AS (INSERT INTO {_TABLE} AS t (task_id, status, result) VALUES ($1, $2, $3)
ON CONFLICT (task_id) DO UPDATE SET status = EXCLUDED.status, result = EXCLUDED.result
RETURNING t.waiters)
SELECT count(pg_notify(c, $4)) FROM up, unnest(up.waiters) c"""
_READ = f"SELECT * FROM {_TABLE} WHERE task_id = $1"
_FAN = (
    "SELECT count(pg_notify('drv_fan', 'x' || g || repeat('y', 150))) "
    "FROM generate_series(1, 5000) g"
)

Call = Callable[[str, tuple[Any, ...]], Awaitable[Any]]


Listen = Callable[[asyncio.Event], Awaitable[Any]]


async def _figures(call: Call, listen: Listen) -> dict[str, float]:
    await call(_DDL, ())
    records, reads = [], []
    for i in range(N):
        start = time.perf_counter()
        await call(_UPSERT, (f"a{i}", "SUCCESS", b"x" * 50, "p"))
        records.append(time.perf_counter() - start)
    for i in range(N):
        start = time.perf_counter()
        await call(_READ, (f"a{i}",))
        reads.append(time.perf_counter() - start)
    start = time.perf_counter()

    async def writer(k: int) -> None:
        for i in range(200):
            await call(_UPSERT, (f"c{k}-{i}", "SUCCESS", b"x" * 50, "p"))

    await asyncio.gather(*(writer(k) for k in range(16)))
    concurrent = 16 * 200 / (time.perf_counter() - start)
    got = asyncio.Event()
    stop = await listen(got)
    start = time.perf_counter()
    await call(_FAN, ())
    await got.wait()
    fan_ms = (time.perf_counter() - start) * 1000
    await stop()
    await call(f"DROP TABLE {_TABLE}", ())
    return {"read_p50_us": statistics.median(reads) * 1e6,
            "record_p50_us": statistics.median(records) * 1e6,
            "record_p99_us": statistics.quantiles(records, n=100)[98] * 1e6,
            "records_per_s_16": concurrent, "fanout_5000_ms": fan_ms}  # fmt: skip


async def with_asyncpg(dsn: str) -> dict[str, float]:
    import asyncpg

    pool = await asyncpg.create_pool(dsn, min_size=8, max_size=8)
    listener = await asyncpg.connect(dsn)

    async def call(sql: str, args: tuple[Any, ...]) -> Any:
        return await pool.fetch(sql, *args)

    async def listen(got: asyncio.Event) -> Callable[[], Awaitable[None]]:
        seen = 0

        def on_notify(*_: Any) -> None:
            nonlocal seen
            seen += 1
            if seen == 5000:
                got.set()

        await listener.add_listener("drv_fan", on_notify)
        return listener.close

    try:
        return await _figures(call, listen)
    finally:
        await pool.close()


async def with_psycopg(dsn: str) -> dict[str, float]:
    import psycopg
    import psycopg_pool

    pool = psycopg_pool.AsyncConnectionPool(
        dsn, min_size=8, max_size=8, open=False, kwargs={"autocommit": True}
    )
    await pool.open()
    listener = await psycopg.AsyncConnection.connect(dsn, autocommit=True)

    async def call(sql: str, args: tuple[Any, ...]) -> Any:
        for n in range(len(args), 0, -1):
            sql = sql.replace(f"${n}", "%s")
        async with pool.connection() as connection:
            cursor = await connection.execute(sql, args)
            return await cursor.fetchall() if cursor.description else None

    async def listen(got: asyncio.Event) -> Callable[[], Awaitable[None]]:
        await listener.execute("LISTEN drv_fan")

        async def read() -> None:
            seen = 0
            async for _ in listener.notifies():
                seen += 1
                if seen == 5000:
                    got.set()
                    return

        reader = asyncio.ensure_future(read())

        async def stop() -> None:
            await reader
            await listener.close()

        return stop

    try:
        return await _figures(call, listen)
    finally:
        await pool.close()


async def main(dsn: str) -> None:
    print(f"{'driver':<8} {'read p50 us':>11} {'record p50 us':>13} {'p99 us':>8} "
          f"{'16 callers rec/s':>16} {'5,000 NOTIFY ms':>15}")  # fmt: skip
    for name, run in (("asyncpg", with_asyncpg), ("psycopg", with_psycopg)) * 2:
        f = await run(dsn)
        print(f"{name:<8} {f['read_p50_us']:11.0f} {f['record_p50_us']:13.0f} "
              f"{f['record_p99_us']:8.0f} {f['records_per_s_16']:16.0f} "
              f"{f['fanout_5000_ms']:15.0f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    run_loop(main(parser.parse_args().dsn))
