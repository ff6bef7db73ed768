"""The benchmark harness runs end to end with tiny N: JSON shape and every task counted.

Timing never decides pass or fail: only that each figure exists and that every task sent was
counted (in the queue for enqueue, by the workers' completion counters for drain).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

pytestmark = pytest.mark.slow

TASKS = 50


def test_harness_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--tasks", str(TASKS), "--roundtrips", "20",
         "--systems", "taskq,raw", "--scenarios", "enqueue,drain,roundtrip", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=110,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    machine = data["machine"]
    assert {"cores", "rabbitmq", "python", "date", "counter_cost_ns"} <= machine.keys()
    rows = {(r["system"], r["scenario"], r["variant"]): r for r in data["results"]}
    assert {(s, sc) for s, sc, _ in rows} == {
        (s, sc) for s in ("taskq", "raw") for sc in ("enqueue", "drain", "roundtrip")
    }
    assert ("taskq", "enqueue", "batch map()") in rows
    for (system, scenario, _), r in rows.items():
        expected = 20 if scenario == "roundtrip" else TASKS
        assert r["tasks"] == expected and r["counted"] == expected, r
        assert r["tasks_per_s"] > 0, r
        if scenario == "drain":
            assert r["extra"]["left_in_queue"] == 0, r
        if scenario == "roundtrip":
            assert r["latency_ms"]["p50"] <= r["latency_ms"]["p99"], r
        if system == "raw":
            assert r["fraction_of_ceiling"] is not None or r["variant"] == "await each"
        else:
            assert r["fraction_of_ceiling"] is not None, r
    assert "| scenario" in proc.stdout  # the terminal table
