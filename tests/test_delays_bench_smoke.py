"""The delays benchmark (issue 25) runs end to end with tiny N: one countdown through the hold
queues (with the worker in this process, and as a taskq-worker process sent to by one
send_many) and a spread through the binary levels alone (the comparison); every figure is
there, none started early, and the benchmark leaves no queue behind. Timing never decides
pass or fail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

pytestmark = pytest.mark.slow

FIGURES = {
    "send_s", "late_p50_ms", "late_p99_ms", "late_max_ms", "early", "broker_cpu_us_per_task",
    "own_late_p50_ms", "own_late_p99_ms", "own_late_max_ms", "own_early",
    "broker_rss_peak_mib", "worker_rss_peak_mib", "client_rss_peak_mib",
    "queue_hops_mean", "queue_hops_max", "exchange_hops_mean", "exchange_hops_max",
}  # fmt: skip


@pytest.mark.parametrize(
    ("args", "scheme"),
    [
        (["--countdown", "0.3"], "base 16"),
        (["--countdown", "0.3", "--worker-process", "--send-many"], "base 16"),
        (["--spread", "0.05", "0.6", "--digit-bits", "1"], "base 2"),
    ],
    ids=["hold", "hold-worker-process", "binary-levels-alone"],
)
def test_delays_benchmark_smoke(tmp_path: Path, args: list[str], scheme: str) -> None:
    out = tmp_path / "delays.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.delays", "--tasks", "40", *args, "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report.keys() >= FIGURES and report["tasks"] == 40
    assert report["early"] == 0
    assert report["scheme"].startswith(scheme)
    assert report["send"] == ("send_many" if "--send-many" in args else "gather")
    assert report["late_p50_ms"] <= report["late_p99_ms"] <= report["late_max_ms"]
    assert report["own_early"] == 0
    if report["hold_queues"]:  # 0.3 s: straight to the hold queue, by the default exchange
        assert (report["queue_hops_max"], report["exchange_hops_max"]) == (0, 1)
    else:
        assert 1 <= report["queue_hops_max"] < report["exchange_hops_max"]
    assert "load_before" in report and "late_p99_ms" in proc.stdout
