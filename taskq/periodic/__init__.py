"""Periodic tasks, fired by schedulers of which exactly one is active.

- ``schedule``: when an entry ticks (intervals since the epoch, cron in a time zone). Pure.
- ``entry``: a periodic entry and the task ID of each firing. Pure.
- ``state``: the state record the schedulers hand on (how far each entry is settled). Pure.
- ``plan``: which ticks fire now, given the state and the clock. Pure.
- ``scheduler``: the Scheduler, which holds the lease (taskq.transport.lease) and sends.
- ``status``: what ``taskq beat list`` shows, read from the broker.

See docs/operations/periodic.md for the failover model and its limits.
"""

from .entry import CatchUp, PeriodicEntry
from .schedule import Cron, Every, Schedule
from .scheduler import Scheduler, SchedulerState

__all__ = ["CatchUp", "Cron", "Every", "PeriodicEntry", "Schedule", "Scheduler", "SchedulerState"]
