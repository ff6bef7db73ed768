"""``taskq-worker`` with the round-trip trace points installed (benchmarks.roundtrip_trace).

Usage: python -m benchmarks.bench_apps.traced_worker APP [taskq-worker options]; the events
are written to $TRACE_OUT when the worker exits.
"""

from __future__ import annotations

import os
import sys

from taskq.cli import worker

from . import trace_points

if __name__ == "__main__":
    trace_points.install()
    try:
        code = worker.main()
    finally:
        trace_points.dump(os.environ["TRACE_OUT"])
    sys.exit(code)
