"""benchmarks.workflows runs end to end with tiny N on each durable store: every figure is
there, and (on Redis, when the bench extra is installed) Celery's and Dramatiq's in the same
run, with issue 22's targets. Timing never decides pass or fail."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

pytestmark = pytest.mark.slow

FIGURES = {
    "fanout_tasks_per_s", "chord_tasks_per_s", "chord_vs_fanout", "callback_delay_ms_p50",
    "chain_steps_per_s", "peers", "targets",
}  # fmt: skip
PEER_FIGURES = {"chord_tasks_per_s", "callback_delay_ms_p50", "chain_steps_per_s"}


@pytest.mark.parametrize("store", ["redis", "postgres"])
def test_workflows_bench_smoke(store: str, tmp_path: Path) -> None:
    peers = [p for p in ("celery", "dramatiq") if importlib.util.find_spec(p) is not None]
    peers = peers if store == "redis" else []
    out = tmp_path / "workflows.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.workflows", "--members", "30", "--steps", "5",
         "--runs", "1", "--store", store, "--peers", ",".join(peers), "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert set(figures) >= FIGURES and figures["members"] == 30
    assert set(figures["peers"]) == set(peers)
    for name in peers:
        assert set(figures["peers"][name]) >= PEER_FIGURES, figures["peers"][name]
    if "celery" in peers:
        assert "chord rate >= 5x Celery's" in figures["targets"]
