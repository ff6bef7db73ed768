"""Periodic tasks with schedulers that have no single point of failure.

Run a worker with an embedded scheduler, and as many extra schedulers as you like, from this
directory (``TASKQ_BROKER`` defaults to the local RabbitMQ)::

    taskq-worker tasks:app --beat          # a worker, and a scheduler beside it
    taskq --app tasks:app beat             # another scheduler (standing by)
    taskq --app tasks:app beat list        # entries, next and last ticks, who is active

Exactly one scheduler is active; kill it (even with ``kill -9``) and another takes over
within a second, catching up on what came due meanwhile as each entry's ``catch_up`` says.
Every firing's task ID is ``periodic:{entry}:{tick}`` and each tick is sent once.

- ``heartbeat`` ticks on every multiple of 10 s since the Unix epoch, so every scheduler
  agrees on the ticks whenever it started; ``taskq.current().scheduled_for`` is the tick.
- ``nightly_report`` runs at 02:30 Berlin time: once a day, also on the nights the clocks
  change (see docs/operations/periodic.md for which instant that is).
- ``purge_old`` runs every hour on the hour with fixed arguments, on its own queue (run a
  worker with ``--queues default,maintenance``); it is a normal task too:
  ``await purge_old.delay(1)`` sends it now.
"""

from __future__ import annotations

import datetime as dt
import logging
import os

import taskq
from taskq import App

log = logging.getLogger("periodic-example")

app = App("periodic", broker=os.environ.get("TASKQ_BROKER", "amqp://guest:guest@127.0.0.1:5672/"))


@app.periodic(every=10)
async def heartbeat() -> dt.datetime | None:
    """Fired every 10 s: returns the tick it fired for."""
    tick = taskq.current().scheduled_for
    if tick is not None:
        delay = (dt.datetime.now(dt.UTC) - tick).total_seconds()
        log.info("heartbeat for %s, started %.3f s after its tick", tick.isoformat(), delay)
    return tick


@app.periodic(cron="30 2 * * *", timezone="Europe/Berlin", catch_up="skip")
async def nightly_report() -> str:
    """A report that is pointless once the night is over: missed nights are skipped."""
    return f"report for {dt.date.today().isoformat()}"


@app.periodic(every=dt.timedelta(hours=1), args=(7,), queue="maintenance", catch_up="all")
def purge_old(days: int) -> int:
    """A plain def (runs in the worker's thread pool): every missed hour is caught up."""
    log.info("purging what is older than %d days", days)
    return days
