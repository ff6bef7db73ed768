"""taskq app of ``benchmarks.retry_storm --worker-process``: ``flaky(i)`` fails until its last
attempt, ``fresh(i)`` is a no-op; both stamp when they start, and ``flaky`` when it fails
(one file per process in ``$BENCH_STAMPS``, see stamps)."""

from __future__ import annotations

from taskq import App, RetryPolicy, current

from .stamps import stamp

POLICY = RetryPolicy(max_attempts=3, delay=1.0, backoff=2.0, jitter=False)


class StormFailure(Exception):
    """What a flaky task raises on the attempts that must fail."""


app = App("bench-storm")


@app.task(retry=POLICY, ignore_result=True)
async def flaky(i: int) -> None:
    attempt = current().attempt
    stamp("s", f"{i}:{attempt}", buffered=True)
    if attempt < POLICY.max_attempts:
        stamp("f", f"{i}:{attempt}", buffered=True)
        raise StormFailure(f"flaky({i}) fails attempt {attempt}")


@app.task(ignore_result=True)
async def fresh(i: int) -> None:
    stamp("F", str(i), buffered=True)
