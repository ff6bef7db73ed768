"""``taskq-worker --processes N`` warns when N processes would crowd the machine's cores."""

from __future__ import annotations

import os

import pytest

from taskq.cli.supervisor import cores, crowding


@pytest.mark.parametrize(
    ("processes", "available", "warns"),
    [(1, 1, False), (1, 2, False), (2, 4, False), (3, 4, False), (2, 2, True), (4, 2, True)],
)
def test_as_many_processes_as_cores_warn(processes: int, available: int, warns: bool) -> None:
    warning = crowding(processes, available)
    assert (warning is not None) == warns
    if warning is not None:
        assert f"--processes {processes} on {available} core" in warning


def test_cores_are_those_this_process_may_use() -> None:
    assert cores() == len(os.sched_getaffinity(0))
