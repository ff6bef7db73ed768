"""The round-trip trace (issue 27) runs end to end with a few round trips: both processes'
hops are stamped, in order, and nothing of its prefix is left behind. Timing never decides
pass or fail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.broker_control import queue_names
from tests.support import REPO

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("results", ["amqp", "redis://127.0.0.1:6379/0"])
def test_roundtrip_trace_smoke(tmp_path: Path, results: str) -> None:
    out = tmp_path / "trace.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.roundtrip_trace", "--roundtrips", "30",
         "--results", results, "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    events = [row["event"].split(" [")[0] for row in report["rows"]]
    for event in ("client: send", "worker: deliver", "worker: record", "client: result() returned"):
        assert event in events, events
    assert events.index("worker: deliver") < events.index("worker: record")
    assert events[-1] == "client: result() returned"
    assert queue_names(report["prefix"]) == set()
