"""The process pool: plain ``def`` tasks run in child processes that can be killed.

A child is a fresh interpreter (``python -m taskq.pool.child module:attr``) that imports the
user's App once and then runs jobs that the worker sends over its stdin pipe, replying over
a private copy of its stdout (see :mod:`taskq.pool.frames` for what travels). The worker side
is :class:`ProcessPool` (:mod:`taskq.pool.parent`).
"""

from .frames import Job
from .parent import ProcessPool, app_spec_of

__all__ = ["Job", "ProcessPool", "app_spec_of"]
