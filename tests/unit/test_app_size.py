"""App keeps the registry's surface and the lifecycle, nothing more (issue 21: well under 400
lines); the checks of registration live in taskq.registry, sending in taskq.sending."""

from pathlib import Path

import taskq.app

LIMIT = 360


def test_app_module_stays_small() -> None:
    lines = Path(taskq.app.__file__).read_text().count("\n")
    assert lines <= LIMIT, f"taskq/app.py has {lines} lines: move a job out of App"
