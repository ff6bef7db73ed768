"""The fault suite's ledger: the order of its lines says whether a cancelled task started
after its cancel was confirmed (what the cancel storm judges)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.faults.ledger import Ledger


def test_a_start_after_the_confirmed_cancel_is_late_one_during_it_is_racing(
    tmp_path: Path,
) -> None:
    ledger = Ledger(tmp_path / "ledger")
    lines = [
        "start early 10", "cancelling early 1", "stopped early 10", "cancelled early 1",
        "cancelling racy 1", "start racy 11", "cancelled racy 1", "done racy 11",
        "cancelling late 1", "cancelled late 1", "start late 12",
        "start other 12", "done other 12",
    ]  # fmt: skip
    ledger.path.write_text("".join(line + "\n" for line in lines))
    snapshot = ledger.read()
    assert snapshot.late == {"late"} and snapshot.racing == {"racy"}
    assert snapshot.done_by_id() == {"racy": 1, "other": 1}
    # A stopped run is not running any more; the cancel lines are not runs.
    assert snapshot.running({10, 11, 12}) == ["late"]
