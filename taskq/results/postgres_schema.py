"""The PostgreSQL store's schema: table names, the versioned DDL, and its upgrade on first use.

Two tables per store: the results table (``taskq_results`` by default: the App's prefix with
``_results``) and ``{table}_schema``, which holds one row: the schema ``version`` of the
results table and ``compatible_from``, the oldest schema version whose code can still use it.

The first store that opens creates or upgrades both, in one transaction, under an advisory
lock keyed by the table name, so that workers starting together do it once. A store whose
code knows schema version N uses a table at version V when V == N; it upgrades a table with
V < N by running the steps V+1..N of :data:`MIGRATIONS`; it refuses (ConfigurationError) a
table with V > N whose ``compatible_from`` is above N (a newer taskq changed it in a way this
one cannot read). Upgrades only add (columns, indexes): processes on the old code keep
working while the new one rolls out, as long as ``compatible_from`` says they can.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from ..exceptions import ConfigurationError

VERSION = 2
"""The schema version this code writes and reads (2 added the workflow tables and the
CANCELLED status)."""

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")


@dataclasses.dataclass(frozen=True, slots=True)
class Tables:
    """The quoted SQL names of one store's tables and index (``schema.table`` allowed)."""

    name: str
    """The results table as given, e.g. ``taskq_results`` or ``jobs.taskq_results``."""
    results: str
    versions: str
    expires_index: str
    joins: str = ""
    """The chords' join state: one row per member that joined (version 2)."""
    join_heads: str = ""
    """How many members of each join have joined (version 2)."""
    claims: str = ""
    """Which publish of a workflow step may run it (version 2)."""

    def every_table(self) -> list[str]:
        """Every table of the store, quoted (what to drop to remove it)."""
        return [self.results, self.versions, self.joins, self.join_heads, self.claims]

    @classmethod
    def named(cls, name: str) -> Tables:
        """The tables of results table ``name``: 1-48 lowercase letters, digits or ``_``,
        optionally after ``schema.`` (which must exist); ConfigurationError otherwise."""
        *schema, table = name.split(".")
        if len(schema) > 1 or not all(_NAME.fullmatch(part) for part in (*schema, table)):
            raise ConfigurationError(
                f"invalid result table name {name!r}: use 1-48 lowercase letters, digits or "
                "'_' (not first), optionally as schema.table"
            )
        qualify = f'"{schema[0]}".' if schema else ""
        return cls(
            name=name,
            results=f'{qualify}"{table}"',
            versions=f'{qualify}"{table}_schema"',
            expires_index=f'"{table}_expires"',
            joins=f'{qualify}"{table}_joins"',
            join_heads=f'{qualify}"{table}_join_heads"',
            claims=f'{qualify}"{table}_claims"',
        )

    @classmethod
    def for_prefix(cls, prefix: str) -> Tables:
        """The default tables of an App's prefix: ``{prefix}_results``, made a valid name."""
        base = re.sub(r"[^a-z0-9_]", "_", prefix.lower())[:40]
        if not base[:1].isalpha():
            base = f"t_{base}"[:40]
        return cls.named(f"{base}_results")


def _version_1(t: Tables) -> list[str]:
    # A task's row is written 3-4 times (PENDING, STARTED, the outcome, a waiter): the
    # fillfactor leaves room on its page for the new versions. ``status`` NULL marks a row
    # that only holds waiters for a task not recorded yet (reads treat it as unknown).
    return [
        f"""CREATE TABLE IF NOT EXISTS {t.results} (
            task_id text PRIMARY KEY,
            status text CHECK (status IN ('PENDING', 'STARTED', 'RETRYING', 'SUCCESS',
                                          'FAILURE')),
            terminal boolean NOT NULL DEFAULT false,
            attempt integer NOT NULL DEFAULT 0,
            rank smallint NOT NULL DEFAULT 0,
            task_name text NOT NULL DEFAULT '',
            worker text,
            result bytea,
            error_type text,
            error_message text,
            error_traceback text,
            progress double precision,
            progress_message text,
            sent_at timestamptz,
            started_at timestamptz,
            finished_at timestamptz,
            updated_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz,
            terminal_writes integer NOT NULL DEFAULT 0,
            waiters text[] NOT NULL DEFAULT '{{}}'
        ) WITH (fillfactor = 80)""",
        # The TTL cleanup finds expired rows by this index, a batch at a time.
        f"""CREATE INDEX IF NOT EXISTS {t.expires_index} ON {t.results} (expires_at)
            WHERE expires_at IS NOT NULL""",
    ]


def _version_2(t: Tables) -> list[str]:
    # Workflows: a chord's members join in rows of their own (a member that ran twice
    # inserts nothing), counted in the join's head row (whose update serialises them), and
    # a step sent again by a worker runs only for the publish that claimed its task ID.
    # Only additions: version 1 code keeps working (compatible_from 1).
    # CANCELLED joins the statuses. The CHECK of version 1 has PostgreSQL's default name,
    # ``{table}_status_check``. Code of version 1 can still use the table: it only fails to
    # read the state of a cancelled task (which it could not have cancelled).
    check = '"' + t.name.rsplit(".", 1)[-1] + '_status_check"'
    return [
        f"""CREATE TABLE IF NOT EXISTS {t.joins} (
            join_id text NOT NULL,
            idx integer NOT NULL,
            value bytea NOT NULL,
            expires_at timestamptz,
            PRIMARY KEY (join_id, idx)
        )""",
        f"""CREATE TABLE IF NOT EXISTS {t.join_heads} (
            join_id text PRIMARY KEY,
            joined integer NOT NULL,
            expires_at timestamptz
        )""",
        f"""CREATE TABLE IF NOT EXISTS {t.claims} (
            claim_key text PRIMARY KEY,
            token text NOT NULL,
            expires_at timestamptz
        )""",
        f"""ALTER TABLE {t.results} DROP CONSTRAINT IF EXISTS {check},
            ADD CONSTRAINT {check} CHECK (status IN ('PENDING', 'STARTED', 'RETRYING',
                                                     'SUCCESS', 'FAILURE', 'CANCELLED'))""",
    ]


MIGRATIONS: dict[int, Callable[[Tables], list[str]]] = {1: _version_1, 2: _version_2}
"""Version -> a function of the Tables giving the statements that upgrade V-1 to V."""

COMPATIBLE_FROM = 1
"""The oldest schema version whose code can use a table at :data:`VERSION`."""


def version_query(t: Tables) -> str:
    """The query of the version row (an UndefinedTableError means: no schema yet)."""
    return f"SELECT version, compatible_from FROM {t.versions}"


async def ensure_schema(connection: Any, t: Tables) -> None:
    """Create or upgrade the tables on an asyncpg ``connection`` (see the module's doc)."""
    import asyncpg

    try:
        row = await connection.fetchrow(version_query(t))
    except asyncpg.UndefinedTableError:
        row = None
    if row is not None and _usable(t, row["version"], row["compatible_from"]):
        return
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))", t.results)
        await connection.execute(
            f"""CREATE TABLE IF NOT EXISTS {t.versions} (
                single boolean PRIMARY KEY DEFAULT true CHECK (single),
                version integer NOT NULL,
                compatible_from integer NOT NULL,
                upgraded_at timestamptz NOT NULL DEFAULT now()
            )"""
        )
        row = await connection.fetchrow(version_query(t) + " FOR UPDATE")
        current = 0 if row is None else row["version"]
        if row is not None and _usable(t, current, row["compatible_from"]):
            return  # another process upgraded it while this one waited for the lock
        for version in range(current + 1, VERSION + 1):
            for statement in MIGRATIONS[version](t):
                await connection.execute(statement)
        await connection.execute(
            f"""INSERT INTO {t.versions} (version, compatible_from) VALUES ($1, $2)
                ON CONFLICT (single) DO UPDATE SET version = $1, compatible_from = $2,
                upgraded_at = now()""",
            VERSION,
            COMPATIBLE_FROM,
        )


def _usable(t: Tables, version: int, compatible_from: int) -> bool:
    """Whether this code can use a table at ``version`` as it is (False: upgrade it)."""
    if version == VERSION:
        return True
    if version > VERSION:
        if compatible_from > VERSION:
            raise ConfigurationError(
                f"result table {t.name} has schema version {version}, which needs a taskq "
                f"that knows version {compatible_from} or later (this one knows {VERSION}): "
                "upgrade taskq here"
            )
        return True
    return False
