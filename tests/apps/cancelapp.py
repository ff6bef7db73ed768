"""Tasks for the cancellation tests that run in a real ``taskq-worker``
(tests/integration/test_cancel_process.py). Settings come from the environment."""

from __future__ import annotations

import os
import time
from pathlib import Path

from taskq import App

app = App("cancelapp")


@app.task(pool="process")
def linger(marker: str) -> str:
    """Write this process's PID to ``marker``, then sleep a minute (a cancel ends it)."""
    Path(marker).write_text(str(os.getpid()))
    time.sleep(60)
    return "finished"


@app.task
async def note(marker: str) -> str:
    """Append a line to ``marker`` (so a test can tell that it ran)."""
    with open(marker, "a") as out:
        out.write("ran\n")
    return "ran"
