"""benchmarks.workflows runs end to end with tiny N on each durable store: every figure is
there. Timing never decides pass or fail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

pytestmark = pytest.mark.slow

FIGURES = {
    "fanout_tasks_per_s", "chord_tasks_per_s", "chord_vs_fanout", "callback_delay_ms_p50",
    "chain_steps_per_s",
}  # fmt: skip


@pytest.mark.parametrize("store", ["redis", "postgres"])
def test_workflows_bench_smoke(store: str, tmp_path: Path) -> None:
    out = tmp_path / "workflows.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.workflows", "--members", "30", "--steps", "5",
         "--runs", "1", "--store", store, "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert set(figures) >= FIGURES and figures["members"] == 30
