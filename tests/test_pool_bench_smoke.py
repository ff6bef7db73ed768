"""``python -m benchmarks.pool`` runs end to end at tiny size: a row for every taskq pool
configuration (the peers are left to the full run, to keep this short), every task counted, the
queue empty afterwards, the speed-up of 2 processes over 1 computed, and the shutdown
measurement done with no pool process left.

Timing never decides pass or fail: the shutdown's seconds are reported, not bounded here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

pytestmark = pytest.mark.slow

TASKS = 20
CPU_TASKS = 2
EXPECTED = {  # (system, scenario) -> (family, processes) of its rows, in order
    ("taskq", "no-op"): [("taskq threads", 1), ("taskq processes", 2)],
    ("taskq", "cpu"): [("taskq threads", 1), ("taskq processes", 1), ("taskq processes", 2)],
}


def test_pool_benchmark_smoke(tmp_path: Path) -> None:
    expected = EXPECTED
    out = tmp_path / "pool.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.pool",
            "--systems",
            "taskq",
            "--tasks",
            str(TASKS),
            "--cpu-tasks",
            str(CPU_TASKS),
            "--iterations",
            "1000",
            "--shutdown-repeats",
            "1",
            "--shutdown-timeout",
            "0.5",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert {"load_start", "load_end", "cores", "date"} <= data["machine"].keys()
    got: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for r in data["results"]:
        got.setdefault((r["system"], r["scenario"]), []).append(
            (r["role"], r["extra"]["processes"])
        )
        assert not r["failed"] and not r["invalid"], r
        count = TASKS if r["scenario"] == "no-op" else CPU_TASKS
        assert r["tasks"] == count and r["counted"] == count, r
        assert r["extra"]["left_in_queue"] == 0 and r["tasks_per_s"] > 0, r
    assert got == expected, (data["machine"]["notes"], proc.stderr[-3000:])
    assert set(data["speedups"]) == {f for rows in expected.values() for f, p in rows if p == 2}
    shutdown = data["shutdown"]
    [attempt] = shutdown["tries"]
    assert attempt["exit_code"] == 0 and attempt["pool_processes"] == 1, shutdown
    assert shutdown["pool_processes_left"] == 0 and attempt["seconds"] > 0, shutdown
    assert "## CPU-bound" in proc.stdout and "speed-up 2 vs 1" in proc.stdout
