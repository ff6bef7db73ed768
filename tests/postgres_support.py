"""PostgreSQL for tests: the shared server's URL, tables of a test's own, and their removal.

Never stops the shared server: outages go through tests/tcp_proxy.py.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import asyncpg

from taskq.results.postgres_schema import Tables

POSTGRES = os.environ.get("TASKQ_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
POSTGRES_PORT = urlsplit(POSTGRES).port or 5432


def table_of(prefix: str) -> str:
    """The results table of a test's prefix (what App picks for that prefix)."""
    return f"{prefix}_results"


def via_proxy(port: int, table: str | None = None) -> str:
    """POSTGRES through a TCP proxy listening on ``port`` (optionally naming the table)."""
    url = POSTGRES.replace(f":{POSTGRES_PORT}/", f":{port}/", 1)
    return url if table is None else f"{url}?taskq_table={table}"


async def drop_tables(*tables: str) -> None:
    """Drop each results table, its schema-version table and its workflow tables, if they
    exist."""
    connection = await asyncpg.connect(POSTGRES)
    try:
        for table in tables:
            every = ", ".join(Tables.named(table).every_table())
            await connection.execute(f"DROP TABLE IF EXISTS {every}")
    finally:
        await connection.close()


async def count_rows(table: str, where: str = "true", *args: object) -> int:
    """Rows of ``table`` matching ``where``."""
    connection = await asyncpg.connect(POSTGRES)
    try:
        value = await connection.fetchval(f'SELECT count(*) FROM "{table}" WHERE {where}', *args)
        return int(value)
    finally:
        await connection.close()
