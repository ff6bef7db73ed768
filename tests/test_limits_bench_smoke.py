"""The limits benchmark (issue 23) runs end to end with tiny N: every figure is there, every
task started, and no key ever ran more than its limit at once. Timing never decides pass or
fail (the rate figures depend on the machine's load)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

pytestmark = pytest.mark.slow

RATE_FIGURES = {"starts", "measured_s", "rate_per_s", "rate_error_pct", "max_sliding_1s",
                "max_aligned_1s", "max_window_over_pct"}  # fmt: skip


def test_limits_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "limits.json"
    scenarios = "rate,rate-kill,concurrency"
    if importlib.util.find_spec("celery") is not None:  # the bench extra
        scenarios += ",celery"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.limits", "--tasks", "60", "--rate", "20/s",
         "--seconds", "2", "--workers", "2", "--keyed", "24", "--keys", "2", "--per-key", "2",
         "--hold", "0.05", "--scenarios", scenarios, "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=170,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {row["scenario"]: row for row in report["rows"]}
    assert set(rows) == set(scenarios.split(","))
    for name in ("rate", "rate-kill"):
        assert rows[name].keys() >= RATE_FIGURES and rows[name]["starts"] == 60
    assert "killed_at_s" in rows["rate-kill"]
    assert rows["concurrency"]["starts"] == 24
    assert 1 <= rows["concurrency"]["max_overlap"] <= 2
    assert "load_before" in report and "max overlap" in proc.stdout
