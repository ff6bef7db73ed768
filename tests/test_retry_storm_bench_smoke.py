"""The retry storm benchmark (issue 25) runs end to end with tiny numbers: every figure is
there, every retry and fresh task was counted, none started early, and the benchmark leaves no
queue of its prefix behind. Timing never decides pass or fail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.broker_control import queue_names
from tests.support import REPO

pytestmark = pytest.mark.slow

FIGURES = {
    "prefix", "storm", "fresh_rate", "load_before", "load_after", "storm_send_s",
    "fresh_tasks", "fresh_wait_p50_ms", "fresh_wait_p99_ms", "fresh_wait_max_ms",
    "fresh_sent_per_s", "retries", "retry_late_p50_ms", "retry_late_p99_ms", "retry_late_max_ms",
    "retry_late_p99_ms_after_attempt", "early", "broker_cpu_us_per_task", "process_cpu_s",
    "duration_s", "timeline",
}  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ([], {"worker": "in-process", "fresh_from": "this process", "priorities": "none"}),
        (
            ["--worker-process", "--processes", "2", "--producer-process", "--bulk-priority",
             "--send-many"],
            {"worker": "taskq-worker, 2 process(es)", "fresh_from": "a process of its own",
             "priorities": "storm 0, fresh 1", "send": "send_many"},
        ),
    ],
    ids=["in-process", "processes-bulk-priority"],
)  # fmt: skip
def test_retry_storm_benchmark_smoke(
    tmp_path: Path, extra: list[str], expected: dict[str, str]
) -> None:
    out = tmp_path / "storm.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.retry_storm", "--storm", "30", "--fresh-rate", "50",
         "--json", str(out), *extra],
        cwd=REPO, capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report.keys() >= FIGURES
    assert {key: report[key] for key in expected} == expected
    assert report["storm"] == 30 and report["retries"] == 60  # two retries per flaky task
    assert report["fresh_tasks"] >= 1
    assert report["retry_late_p99_ms_after_attempt"].keys() == {"1", "2"}
    assert report["early"] == 0
    assert report["retry_late_p50_ms"] <= report["retry_late_p99_ms"] <= report["retry_late_max_ms"]
    assert report["fresh_wait_p50_ms"] <= report["fresh_wait_p99_ms"] <= report["fresh_wait_max_ms"]
    timeline = report["timeline"]
    assert sum(row[1] for row in timeline) == report["fresh_tasks"]
    assert sum(row[4] + row[5] for row in timeline) == 90  # every attempt started in a second
    assert report["prefix"].startswith("bench-storm-")
    assert queue_names(report["prefix"]) == set()
    assert "retry_late_p99_ms" in proc.stdout
