"""Periodic entries for the scheduler tests: ``BEAT_ENTRIES`` picks the set (another set is
the schedule "changed in code"; ``dashboard`` is ``stamp`` with entries of other kinds),
``BEAT_LEDGER`` is the file ``stamp`` appends to.

Settings come from the environment (``tests.support`` sets ``TASKQ_PREFIX`` per test).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from taskq import App, current
from tests.apps import noise

app = App("beatapp")
noise.register(app)
ENTRIES = os.environ.get("BEAT_ENTRIES", "tick")

if ENTRIES == "tick":

    @app.periodic(every=1, catch_up="all")
    async def tick() -> None:
        """Fired every second; every tick counts (the failover tests read the work queue)."""

elif ENTRIES == "policies":

    @app.periodic(every=1, catch_up="all")
    async def catch_all() -> None: ...

    @app.periodic(every=1, catch_up="one")
    async def catch_one() -> None: ...

    @app.periodic(every=1, catch_up="skip")
    async def catch_skip() -> None: ...

elif ENTRIES in ("v1", "v2"):
    # v2 is v1 after a deploy: `a` ticks every 2 s instead of every second, `b` is gone.

    @app.periodic(every=1 if ENTRIES == "v1" else 2, catch_up="all")
    async def a() -> None: ...

    if ENTRIES == "v1":

        @app.periodic(every=1, catch_up="all")
        async def b() -> None: ...

elif ENTRIES in ("stamp", "dashboard"):

    @app.periodic(every=1, args=("periodic",))
    async def stamp(how: str) -> None:
        """Append what the task sees of itself to the ledger file."""
        ctx = current()
        when = ctx.scheduled_for
        line = {"how": how, "id": ctx.task_id, "sf": when.isoformat() if when else None}
        with Path(os.environ["BEAT_LEDGER"]).open("a") as ledger:
            ledger.write(json.dumps(line) + "\n")

    if ENTRIES == "dashboard":  # the dashboard's Periodic page: entries of every kind

        @app.periodic(cron="0 3 * * *", timezone="Europe/Berlin", catch_up="skip")
        async def report() -> None:
            """Fires at 03:00 in Berlin: never during a test."""

        @app.periodic(cron="0 4 * * *", args=("bob",), kwargs={"password": "hunter2"})
        async def login(user: str, password: str) -> None:
            """Its password must never show."""
