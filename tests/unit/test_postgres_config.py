"""The PostgreSQL store's configuration, without a server: URLs, table names, pool sizes, and
how an App picks a store."""

from __future__ import annotations

import pytest

from taskq import App, ConfigurationError
from taskq.results.postgres import PostgresResultStore, pool_size, split_url
from taskq.results.postgres_schema import Tables
from taskq.results.registry import make_store
from taskq.transport import Transport, make_transport


def _transport(app: App) -> Transport:
    return make_transport(app.settings.transport_options())


def test_taskq_options_are_taken_out_of_the_url() -> None:
    dsn, options = split_url(
        "postgres://u:pw@db:5433/app?sslmode=require&taskq_table=jobs.results&taskq_pool_size=3"
    )
    assert dsn == "postgresql://u:pw@db:5433/app?sslmode=require"
    assert options == {"taskq_table": "jobs.results", "taskq_pool_size": "3"}
    with pytest.raises(ConfigurationError, match="taskq_tabel"):
        split_url("postgresql://db/app?taskq_tabel=x")


def test_the_pool_follows_the_worker_concurrency_within_limits() -> None:
    assert pool_size(None) == 4  # a client
    assert [pool_size(c) for c in (1, 4, 16, 36, 64, 1000)] == [2, 2, 5, 10, 10, 10]


def test_table_names_are_checked_and_quoted() -> None:
    tables = Tables.named("jobs.taskq_results")
    assert (tables.results, tables.versions) == (
        '"jobs"."taskq_results"',
        '"jobs"."taskq_results_schema"',
    )
    for bad in ("Results", "a.b.c", "drop table x", "1abc", "x" * 49, ""):
        with pytest.raises(ConfigurationError):
            Tables.named(bad)
    assert Tables.for_prefix("taskq").name == "taskq_results"
    assert Tables.for_prefix("My-App.v2").name == "my_app_v2_results"
    assert Tables.for_prefix("9lives").name == "t_9lives_results"


def test_an_app_builds_the_store_from_its_settings() -> None:
    app = App("pg", prefix="shop", results="postgresql://postgres@127.0.0.1/test",
              result_ttl=60, concurrency=64)  # fmt: skip
    store = make_store(app.settings.results, _transport(app), 64, settings=app.settings)
    assert isinstance(store, PostgresResultStore)
    assert (store.tables.name, store.pool_size) == ("shop_results", 10)
    url = "postgres://postgres:s3cret@127.0.0.1/test?taskq_table=mine&taskq_pool_size=7"
    store = make_store(url, _transport(app), settings=app.settings)
    assert isinstance(store, PostgresResultStore)
    assert (store.tables.name, store.pool_size) == ("mine", 7)
    assert "s3cret" not in repr(store)


def test_results_must_be_a_known_url_or_a_store() -> None:
    app = App("x", results="mysql://db/x")
    with pytest.raises(ConfigurationError, match="unknown result store"):
        make_store(app.settings.results, _transport(app), settings=app.settings)
    with pytest.raises(ConfigurationError, match=r"lacks .*wait"):
        App("x", results=object())  # type: ignore[arg-type]
