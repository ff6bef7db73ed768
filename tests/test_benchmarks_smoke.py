"""The benchmark harness runs end to end with tiny N: a row for every system and configuration
it ran, every task counted, CPU per task sampled, the targets of issue 10 stated; with
--repeat 2, rows aggregated over both repetitions and issue 27's figures.

Timing never decides pass or fail: only that each figure exists and that every task sent was
counted (in the queue for enqueue, by the workers' completion counters for drain). Dramatiq
(the quickest peer to start) runs too when the bench extra is installed; the other peers are
left to the full run to keep this test well under a minute.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support import REPO

pytestmark = pytest.mark.slow

TASKS = 50
ROUNDTRIPS = 20
EXPECTED = {  # (system, scenario) -> the roles of its rows
    ("taskq", "enqueue"): ["headline", "batch", ""],
    ("taskq", "drain"): ["headline", "c64", "no-reply"],
    ("taskq", "roundtrip"): ["headline", "redis"],
    ("raw", "enqueue"): ["ceiling", ""],
    ("raw", "drain"): ["ceiling", ""],
    ("raw", "roundtrip"): ["ceiling"],
    ("floor", "enqueue"): ["floor"],  # benchmarks.enqueue_floor
    ("floor", "roundtrip"): ["floor", "floor"],  # benchmarks.rt_floor's amqp and redis modes
}
PEER = {
    ("dramatiq", "enqueue"): ["", ""],
    ("dramatiq", "drain"): ["default", "tuned"],
    ("dramatiq", "roundtrip"): ["default", "tuned"],
}


def test_harness_smoke(tmp_path: Path) -> None:
    peer = importlib.util.find_spec("dramatiq") is not None
    expected = {**EXPECTED, **(PEER if peer else {})}
    systems = "taskq,raw,dramatiq" if peer else "taskq,raw"
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--tasks",
            str(TASKS),
            "--roundtrips",
            str(ROUNDTRIPS),
            "--sequential-cap",
            str(TASKS),
            "--systems",
            systems,
            "--scenarios",
            "enqueue,drain,roundtrip",
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
    machine = data["machine"]
    assert {"cores", "rabbitmq", "python", "date", "counter_cost_ns", "cpu"} <= machine.keys()
    rows = data["results"]
    got: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        got.setdefault((r["system"], r["scenario"]), []).append(r["role"])
    assert got == expected, (machine["notes"], proc.stderr[-3000:])
    for r in rows:
        assert not r["failed"], r
        expected_count = ROUNDTRIPS if r["scenario"] == "roundtrip" else TASKS
        assert r["tasks"] == expected_count and r["counted"] == expected_count, r
        assert r["tasks_per_s"] > 0, r
        if r["scenario"] == "drain":
            assert r["extra"]["left_in_queue"] == 0, r
            assert r["extra"]["worker_cpu_us"] is not None, r
            assert r["extra"]["broker_cpu_us"] is not None, r
        if r["scenario"] == "roundtrip":
            assert r["latency_ms"]["p50"] <= r["latency_ms"]["p99"], r
        if r["system"] == "taskq" or r["role"] == "ceiling":
            assert r["fraction_of_ceiling"] is not None, r
    assert {s for s, _ in expected} == set(machine["configurations"])
    targets = {t["target"]: t for t in machine["targets"]}
    assert len(targets) == 14
    drain_vs_raw = targets["drain, 1 process: >= 1.0x raw aio-pika at prefetch 1000"]
    assert drain_vs_raw["ratio"] is not None and drain_vs_raw["met"] is not None
    assert "| scenario" in proc.stdout and "## Targets of issue 10" in proc.stdout


def test_repeat_smoke(tmp_path: Path) -> None:
    """--repeat 2: every row holds its two repetitions' rows, and the report its medians, the
    issue 27 table and the figures it could not measure."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable, "-m", "benchmarks", "--quick", "--repeat", "2",
            "--systems", "taskq,raw", "--scenarios", "enqueue,roundtrip", "--json", str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    rows = data["results"]
    assert {(r["system"], r["scenario"]) for r in rows} == {
        ("taskq", "enqueue"), ("taskq", "roundtrip"), ("raw", "enqueue"), ("raw", "roundtrip"),
        ("floor", "enqueue"), ("floor", "roundtrip"),
    }  # fmt: skip
    for r in rows:
        assert r["repetition"] == 0 and [run["repetition"] for run in r["runs"]] == [1, 2], r
        assert not any(run["failed"] for run in r["runs"]), r
        figures = sorted(run["tasks_per_s"] for run in r["runs"])
        assert figures[0] <= r["tasks_per_s"] <= figures[1], r
    issue27 = {f["figure"]: f for f in data["machine"]["issue27"]}
    measured = issue27["round trip p50, AMQP results: taskq / raw"]
    assert measured["repetitions"] == 2 and measured["met"] is not None
    assert issue27["round trip p50, AMQP results: taskq / Dramatiq"]["median"] is None
    floor = issue27["round trip p50: the floor with the Redis store's hops"]
    assert floor["repetitions"] == 2 and floor["median"] > 0
    batch = issue27["enqueue: map() / the floor's bare publisher"]
    assert batch["repetitions"] == 2 and batch["median"] > 0 and batch["met"] is None
    assert "## Issue 27 figures" in proc.stdout and "| reps |" in proc.stdout
    assert "median of 2 repetitions" in proc.stdout


def test_counter_counts_every_hit_of_threaded_workers(tmp_path: Path) -> None:
    """Dramatiq runs tasks in threads: the last write must carry the full count."""
    from benchmarks.bench_apps import counter

    c = counter.Counter(str(tmp_path))
    threads = [threading.Thread(target=lambda: [c.hit() for _ in range(20_000)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    count, first, last = counter.read_all(str(tmp_path))
    assert count == 160_000 and 0 < first <= last
