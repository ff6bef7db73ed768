"""The App the dashboard cost benchmark serves: no tasks, named by TASKQ_BENCH_APP_NAME (its
connections carry the name, so the benchmark counts them)."""

from __future__ import annotations

import os

from taskq import App

app = App(os.environ.get("TASKQ_BENCH_APP_NAME", "dashboard-bench"))
