"""The result-store contract (taskq.testing.contract), run against every store: AMQP (the
checks that apply to a store only the sender can read), Redis, PostgreSQL, and an in-memory
store written as a user would (examples/custom_store/memory_store.py)."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Callable
from types import ModuleType

import pytest
import redis.asyncio

from taskq.results.postgres import PostgresResultStore
from taskq.results.redis import RedisResultStore
from taskq.settings import load_settings
from taskq.testing.contract import Check, Contract, StoreFactory, checks
from taskq.testing.join_contract import join_checks
from taskq.transport import make_transport
from tests.postgres_support import POSTGRES, drop_tables, table_of
from tests.redis_support import REDIS_URL
from tests.support import BROKER, REPO

REDIS = REDIS_URL


async def delete_redis_keys(prefix: str, url: str = REDIS) -> int:
    """Delete every key of ``prefix`` (the Redis store's keys start with it); return how many."""
    client = redis.asyncio.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
        if keys:
            await client.delete(*keys)
        return len(keys)
    finally:
        await client.aclose()


def load_example(name: str) -> ModuleType:
    """A module of examples/custom_store by file name (examples are not a package)."""
    path = REPO / "examples" / "custom_store" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


memory_store = load_example("memory_store")


def amqp(prefix: str) -> StoreFactory:
    def make(*, result_ttl: float | None) -> str:
        return "amqp"

    return make


def redis_store(prefix: str) -> StoreFactory:
    def make(*, result_ttl: float | None) -> RedisResultStore:
        settings = load_settings(prefix=prefix, result_ttl=result_ttl, broker=BROKER)
        return RedisResultStore(
            REDIS, make_transport(settings.transport_options()), result_ttl=settings.result_ttl
        )

    return make


def postgres_store(prefix: str) -> StoreFactory:
    def make(*, result_ttl: float | None) -> PostgresResultStore:
        return PostgresResultStore(POSTGRES, table=table_of(prefix), result_ttl=result_ttl)

    return make


def in_memory(prefix: str) -> StoreFactory:
    memory = memory_store.Memory()

    def make(*, result_ttl: float | None) -> object:
        return memory_store.MemoryStore(memory, result_ttl=result_ttl)

    return make  # type: ignore[return-value]


STORES: dict[str, tuple[Callable[[str], StoreFactory], list[Check]]] = {
    "amqp": (amqp, checks(durable=False, levels=("app",))),
    "redis": (redis_store, checks() + join_checks()),
    "postgres": (postgres_store, checks() + join_checks()),
    "memory": (in_memory, checks()),
}


@pytest.fixture
async def storage_cleanup(prefix: str) -> AsyncIterator[None]:
    yield
    await delete_redis_keys(prefix)
    await drop_tables(table_of(prefix))


@pytest.mark.usefixtures("storage_cleanup")
@pytest.mark.parametrize(
    ("store", "check"),
    [(store, check) for store, (_, selected) in STORES.items() for check in selected],
    ids=lambda value: str(value),
)
async def test_contract(store: str, check: Check, prefix: str) -> None:
    factory = STORES[store][0](prefix)
    await check(Contract(factory, broker=BROKER, prefix=prefix))
