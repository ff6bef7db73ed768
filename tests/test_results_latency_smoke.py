"""benchmarks.results_latency runs end to end with tiny N on the PostgreSQL store: a row with
each figure, and the run's table dropped afterwards. Timing never decides pass or fail."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.postgres_support import POSTGRES
from tests.support import REPO

pytestmark = pytest.mark.slow


async def bench_tables() -> set[str]:
    connection = await asyncpg.connect(POSTGRES)
    try:
        query = "SELECT tablename FROM pg_tables WHERE tablename LIKE 'bench%'"
        rows = await connection.fetch(query)
        return {row[0] for row in rows}
    finally:
        await connection.close()


def test_results_latency_smoke(tmp_path: Path) -> None:
    before = asyncio.run(bench_tables())
    out = tmp_path / "stores.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.results_latency", "--stores", "postgres",
         "--roundtrips", "10", "--fanout", "30", "--json", str(out),
         "--markdown", str(tmp_path / "stores.md")],
        cwd=REPO, capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = json.loads(out.read_text())["results"]
    assert (row["store"], row["roundtrips"], row["fanout"]) == ("postgres", 10, 30)
    assert 0 < row["p50_ms"] <= row["p99_ms"] and row["fanout_tasks_per_s"] > 0
    assert "| postgres | 10 |" in (tmp_path / "stores.md").read_text()
    assert asyncio.run(bench_tables()) <= before  # its own tables are gone
