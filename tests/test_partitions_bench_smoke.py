"""The partition benchmark runs end to end with tiny N, on the 3-node test cluster (quorum
partitions, workers on different nodes: the short version of its full run) and on the local
broker: a row per partition count, every task drained, nothing left in any partition. Timing
never decides pass or fail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster_support import Cluster
from tests.support import BROKER, REPO

pytestmark = pytest.mark.slow


def test_partition_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "partitions.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.partitions", "--tasks", "300", "--partitions", "1,4",
         "--workers", "2", "--brokers", BROKER, "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["partitions"], r["tasks"], r["left"]) for r in rows] == [(1, 300, 0), (4, 300, 0)]
    assert all(r["tasks_per_s"] > 0 for r in rows)
    assert "| 4 | 2 | 300 |" in proc.stdout


def test_partition_benchmark_on_the_cluster(cluster: Cluster, tmp_path: Path) -> None:
    out = tmp_path / "partitions.json"
    nodes = ",".join(cluster.node(n) for n in (1, 2, 3))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.partitions", "--tasks", "300", "--partitions", "1,4",
         "--workers", "3", "--brokers", ",".join(cluster.urls()), "--nodes", nodes,
         "--ctl", " ".join(cluster.command("ctl", "1")), "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=110, env=cluster.env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["partitions"], r["tasks"], r["left"]) for r in rows] == [(1, 300, 0), (4, 300, 0)]
    left = [q["name"] for q in cluster.api("queues/%2F?columns=name")]
    assert not [n for n in left if n.startswith("benchpart")], "the benchmark left queues"


def test_the_verdict_of_a_run_too_short_to_count_cpu() -> None:
    from benchmarks.partitions import Row, verdict

    idle = Row(4, 2, 300, 0.1, 3000.0, 0.0, 0.0, node_cpu_us={"n1": 0.0})
    counted = Row(1, 2, 300, 0.1, 3000.0, 30.0, 10.0, node_cpu_us={"n1": 10.0})
    text = verdict([idle, counted], cores=2)
    assert "k=4: 3,000 tasks/s; too short to count CPU" in text
    assert "k=1: 3,000 tasks/s; 40 us of CPU per task" in text
