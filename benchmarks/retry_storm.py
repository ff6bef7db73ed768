"""Retry storm (issue 25): N tasks fail and retry while fresh tasks flow on the same queue.

``--storm`` tasks ``flaky(i)`` are sent at once (a gather of ``delay()``); each fails on its
first two attempts and succeeds on the third, with ``RetryPolicy(max_attempts=3, delay=1.0,
backoff=2.0, jitter=False)``: it is retried 1 s after attempt 1 and 2 s after attempt 2.
Meanwhile a paced producer sends ``fresh(i)`` at ``--fresh-rate`` per second (by the loop
clock, in batches every 10 ms, each batch sent without waiting for the previous one's
confirms), from just before the storm until the last retry has started plus 1 s. One
in-process worker at ``--concurrency 200`` consumes the one queue (``--worker-process``: a
``taskq-worker`` process of its own, as workers and their callers are in production; the
tasks stamp their times to files, read back here). Reported:

- fresh wait = start - send, where the send time is taken just before its ``delay()`` (so the
  confirmed publish is part of it): p50 / p99 / max in ms, and how many fresh tasks ran; and
  the same for the fresh tasks sent once every first attempt had failed (``_retries_phase``):
  the storm's own first attempts are a burst of 5,000 sends on the same queue, which fresh
  tasks sent meanwhile queue behind whatever the delay path does;
- retry lateness = start of attempt k+1 - (the time attempt k raised + its backoff): p50 /
  p99 / max in ms over every retry, the p99 after attempt 1 and after attempt 2 apart, and how
  many started early (must be 0);
- the pace the fresh tasks were actually sent at (tasks / first to last send);
- a timeline, second by second from the first fresh send: the fresh tasks sent in that
  second and their wait p99 and max, and how many first attempts and retries started in it;
- the storm's send time: from the first ``delay()`` to the last broker confirm;
- broker CPU per task run (every attempt of a flaky task and every fresh task): utime + stime
  of RabbitMQ's ``beam.smp`` from before the storm until every fresh task has started, divided
  by those runs (the broker is shared: anything else it served meanwhile is in the figure);
- this process's CPU time (producer and worker share it: one core at most, for Python) and
  the total duration, and the 1-minute load average before and after.

The issue's targets: fresh wait p99 <= 100 ms and retry lateness p99 <= 1 s at 5,000 / 1,000/s.
The storm's 5,000 first attempts are a burst on a first-in, first-out queue, and fresh tasks
sent meanwhile wait behind it; ``--bulk-priority`` sends the storm at priority 0 and fresh
tasks at 1, as a bulk job beside interactive work would be sent.

    python -m benchmarks.retry_storm                     # 5,000 flaky tasks, 1,000 fresh/s
    python -m benchmarks.retry_storm --worker-process
    python -m benchmarks.retry_storm --quorum --json out.json
    python -m benchmarks.retry_storm --worker-process --bulk-priority
    python -m benchmarks.retry_storm --storm 30 --fresh-rate 50 --json out.json   # the smoke test
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import taskq
from taskq import App
from taskq.cli.common import run_loop

from . import cpu
from .bench_apps import stamps
from .bench_apps.storm_app import POLICY, StormFailure
from .bench_apps.storm_producer import produce
from .delay_accuracy import percentile, with_worker
from .delays import BROKER, POLL, add_common_options, load, print_report
from .harness import Workers, app_env, taskq_worker

TAIL = 1.0  # fresh tasks keep flowing this long after the last retry started
FRESH_PRIORITY, BULK_PRIORITY = 1, 0  # with --bulk-priority


@dataclasses.dataclass(frozen=True)
class StormSend:
    """How the storm is sent: ``bulk`` at BULK_PRIORITY, fresh tasks then at FRESH_PRIORITY
    (``--bulk-priority``); ``many`` with one ``App.send_many`` call instead of a gather
    (``--send-many``)."""

    bulk: bool = False
    many: bool = False


@dataclasses.dataclass
class Record:
    """What the tasks and the producer write down (all times from ``time.time()``)."""

    starts: dict[tuple[int, int], float] = dataclasses.field(default_factory=dict)
    """(i, attempt) -> when that attempt of ``flaky(i)`` started."""
    failures: dict[tuple[int, int], float] = dataclasses.field(default_factory=dict)
    """(i, attempt) -> when that attempt raised."""
    fresh_sent: dict[int, float] = dataclasses.field(default_factory=dict)
    fresh_started: dict[int, float] = dataclasses.field(default_factory=dict)


def make_app(prefix: str, record: Record, quorum: bool = False, bulk: bool = False) -> App:
    """The App under test: ``flaky`` fails until its last attempt, ``fresh`` is a no-op; both
    record when they start. ``bulk``: tasks are sent at priority FRESH_PRIORITY unless told
    otherwise (the storm is sent at BULK_PRIORITY)."""
    kind = "quorum" if quorum else "classic"
    priority = {"default_priority": FRESH_PRIORITY} if bulk else {}
    app = App("bench-storm", broker=BROKER, prefix=prefix, queue_type=kind, **priority)

    @app.task(retry=POLICY, ignore_result=True)
    async def flaky(i: int) -> None:
        attempt = taskq.current().attempt
        record.starts[i, attempt] = time.time()
        if attempt < POLICY.max_attempts:
            record.failures[i, attempt] = time.time()
            raise StormFailure(f"flaky({i}) fails attempt {attempt}")

    @app.task(ignore_result=True)
    async def fresh(i: int) -> None:
        record.fresh_started[i] = time.time()

    return app


def summary(name: str, values_ms: list[float]) -> dict[str, float]:
    """``name``'s p50 / p99 / max, rounded to 0.1 ms."""
    ordered = sorted(values_ms)
    return {
        f"{name}_p50_ms": round(percentile(ordered, 50), 1),
        f"{name}_p99_ms": round(percentile(ordered, 99), 1),
        f"{name}_max_ms": round(ordered[-1], 1),
    }


def retry_lateness(record: Record, storm: int) -> dict[str, Any]:
    """Lateness of every retry (start - failure - backoff), and how many started early; the
    p99 after each failed attempt apart too (after attempt 1: the 1 s backoff, ...)."""
    by_attempt = {
        k: [
            (record.starts[i, k + 1] - record.failures[i, k] - POLICY.backoff_delay(k)) * 1000
            for i in range(storm)
        ]
        for k in range(1, POLICY.max_attempts)
    }
    late = [v for values in by_attempt.values() for v in values]
    return {
        "retries": len(late),
        **summary("retry_late", late),
        "retry_late_p99_ms_after_attempt": {
            str(k): round(percentile(sorted(values), 99), 1) for k, values in by_attempt.items()
        },
        "early": sum(v < 0 for v in late),
    }


def fresh_wait(record: Record) -> dict[str, Any]:
    """How long the fresh tasks waited from send to start, and the pace they were sent at;
    apart, those sent once every first attempt of the storm had failed (``retries_phase``):
    from then on the queue holds no burst, only the retries coming back and the fresh flow."""
    waits = [(record.fresh_started[i] - sent) * 1000 for i, sent in record.fresh_sent.items()]
    span = max(record.fresh_sent.values()) - min(record.fresh_sent.values())
    first_failed = max(t for (_, attempt), t in record.failures.items() if attempt == 1)
    later = [
        (record.fresh_started[i] - sent) * 1000
        for i, sent in record.fresh_sent.items()
        if sent > first_failed
    ]
    return {
        "fresh_tasks": len(waits),
        "fresh_sent_per_s": round((len(waits) - 1) / span, 1) if span > 0 else None,
        **summary("fresh_wait", waits),
        "fresh_tasks_retries_phase": len(later),
        **(summary("fresh_wait_retries_phase", later) if later else {}),
    }


def timeline(record: Record) -> list[list[float]]:
    """Second by second from the first fresh send: ``[second, fresh tasks sent then, their
    wait p99 ms, max ms, first attempts started then, retries started then]``; which fresh
    tasks waited behind the storm's first burst and which while its retries came back."""
    origin = min(record.fresh_sent.values())
    waits: dict[int, list[float]] = {}
    for i, sent in record.fresh_sent.items():
        waits.setdefault(int(sent - origin), []).append((record.fresh_started[i] - sent) * 1000)
    starts: dict[tuple[int, bool], int] = {}
    for (_, attempt), at in record.starts.items():
        key = (int(at - origin), attempt > 1)
        starts[key] = starts.get(key, 0) + 1
    return [
        [
            second,
            len(values),
            round(percentile(sorted(values), 99), 1),
            round(max(values), 1),
            starts.get((second, False), 0),
            starts.get((second, True), 0),
        ]
        for second, values in sorted(waits.items())
    ]


async def until(
    done: Callable[[], bool], timeout: float, what: str, read: Callable[[], None] = lambda: None
) -> None:
    """Poll ``done`` every POLL seconds (after ``read``); TimeoutError naming ``what`` after
    ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        read()
        if done():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} by the deadline")
        await asyncio.sleep(POLL)


async def measure(
    app: App,
    storm: int,
    rate: float,
    record: Record,
    read_stamps: Callable[[], None] = lambda: None,
    how: StormSend = StormSend(),
    flow: Callable[[asyncio.Event], Awaitable[int]] | None = None,
) -> dict[str, Any]:
    """Start the fresh flow, send the storm, wait for every retry and fresh task; the figures.
    ``read_stamps`` fills ``record`` from a worker process's stamps (its own: a no-op);
    ``flow`` is the fresh flow, until the event it is given is set (default: sent from here).
    """
    flaky, fresh = app.tasks["flaky"], app.tasks["fresh"]
    broker = cpu.broker_pids()
    before, began, own = cpu.ticks(broker), time.time(), time.process_time()
    runs = storm * POLICY.max_attempts
    timeout = 120 + storm / 50
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        if flow is None:
            sent_at = record.fresh_sent

            def sending(i: int) -> None:
                sent_at[i] = time.time()

            flow = functools.partial(produce, fresh, rate, sending=sending)
        producer = group.create_task(flow(stop))
        t0 = time.time()
        storm_sender = flaky.options(priority=BULK_PRIORITY) if how.bulk else flaky
        if how.many:
            await app.send_many([(storm_sender, (i,)) for i in range(storm)])
        else:
            await asyncio.gather(*(storm_sender.delay(i) for i in range(storm)))
        sent = time.time() - t0
        try:
            await until(lambda: len(record.starts) >= runs, timeout, "not every retry started",
                        read_stamps)  # fmt: skip
            await asyncio.sleep(TAIL)
        finally:
            stop.set()
    fresh_count = producer.result()
    await until(
        lambda: len(record.fresh_started) >= fresh_count,
        timeout,
        "not every fresh task started",
        read_stamps,
    )
    cpu_us = (cpu.ticks(broker) - before) * cpu.TICK_US if broker else None
    return {
        "storm_send_s": round(sent, 3),
        **fresh_wait(record),
        **retry_lateness(record, storm),
        "broker_cpu_us_per_task": (
            round(cpu_us / (runs + fresh_count), 1) if cpu_us is not None else None
        ),
        "process_cpu_s": round(time.process_time() - own, 2),
        "duration_s": round(time.time() - began, 2),
        "timeline": timeline(record),
    }


async def run(
    prefix: str, storm: int, rate: float, concurrency: int, quorum: bool, how: StormSend
) -> dict[str, Any]:
    """Start a worker, measure, stop, clean up."""
    record = Record()
    app = make_app(prefix, record, quorum, how.bulk)
    backoffs = [POLICY.backoff_delay(k) for k in range(1, POLICY.max_attempts)]
    return await with_worker(
        app, concurrency, lambda: measure(app, storm, rate, record, how=how), backoffs
    )


@contextlib.asynccontextmanager
async def producer_process(
    app: App, rate: float, stamps_dir: str, read_stamps: Callable[[], None], record: Record
) -> AsyncIterator[Callable[[asyncio.Event], Awaitable[int]]]:
    """A process of its own sending the fresh flow (bench_apps/storm_producer.py), already
    sending when this enters: yields the flow for :func:`measure`, which stops the process
    once its event is set and counts the sends it stamped."""
    env = {**app_env(app, BROKER, stamps_dir),
           "TASKQ_DEFAULT_PRIORITY": str(app.settings.default_priority)}  # fmt: skip
    command = [sys.executable, "-m", "benchmarks.bench_apps.storm_producer", str(rate)]
    producer = Workers([command], env)

    async def flow(stop: asyncio.Event) -> int:
        await stop.wait()
        await producer.stop()
        read_stamps()
        return len(record.fresh_sent)

    try:
        await producer.wait_log("producing", timeout=60)
        yield flow
    finally:
        await producer.stop()


async def run_worker_process(
    prefix: str,
    storm: int,
    rate: float,
    concurrency: int,
    quorum: bool,
    how: StormSend,
    processes: int = 1,
    own_producer: bool = False,
) -> dict[str, Any]:
    """As :func:`run`, with the worker a ``taskq-worker`` of its own, of ``processes`` worker
    processes (benchmarks/bench_apps/storm_app.py); ``own_producer``: the fresh flow from a
    process of its own too."""
    record = Record()
    app = make_app(prefix, record, quorum, how.bulk)  # the client's view: signatures, priorities
    with tempfile.TemporaryDirectory(prefix="bench-storm-") as directory:
        tail = stamps.Tail(directory)

        def read_stamps() -> None:
            for kind_, key, at in tail.read():
                if kind_ == "F":
                    record.fresh_started[int(key)] = at
                elif kind_ == "S":
                    record.fresh_sent[int(key)] = at
                else:
                    i, attempt = map(int, key.split(":"))
                    (record.starts if kind_ == "s" else record.failures)[i, attempt] = at

        target = "benchmarks.bench_apps.storm_app:app"
        async with (
            taskq_worker(
                target, app, BROKER, directory, concurrency=concurrency, processes=processes
            ),
            app,
        ):
            await app.transport.declare_work_queue("default")
            for delay_s in (POLICY.backoff_delay(k) for k in range(1, POLICY.max_attempts)):
                await app.transport.declare_delay_path(int(delay_s * 1000))
            if not own_producer:
                return await measure(app, storm, rate, record, read_stamps, how)
            async with producer_process(app, rate, directory, read_stamps, record) as flow:
                return await measure(app, storm, rate, record, read_stamps, how, flow)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.retry_storm")
    parser.add_argument("--storm", type=int, default=5000, help="failing tasks sent at once (5000)")
    parser.add_argument("--fresh-rate", type=float, default=1000.0, help="fresh tasks/s (1000)")
    parser.add_argument("--concurrency", type=int, default=200, help="worker concurrency (200)")
    parser.add_argument("--quorum", action="store_true", help="quorum work queues and levels")
    add_common_options(parser, "send the storm")
    parser.add_argument(
        "--bulk-priority", action="store_true",
        help=f"send the storm at priority {BULK_PRIORITY} and fresh tasks at {FRESH_PRIORITY}",
    )  # fmt: skip
    parser.add_argument(
        "--producer-process", action="store_true",
        help="with --worker-process: fresh tasks sent by a process of their own",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.producer_process and not args.worker_process:
        parser.error("--producer-process needs --worker-process")
    if args.bulk_priority and args.quorum:
        parser.error("--bulk-priority needs classic queues: quorum queues have no priorities")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    how = StormSend(bulk=args.bulk_priority, many=args.send_many)
    prefix = f"bench-storm-{uuid.uuid4().hex[:8]}"
    load_before = load()
    work = (prefix, args.storm, args.fresh_rate, args.concurrency, args.quorum, how)
    if args.worker_process:
        result = run_loop(run_worker_process(*work, args.processes, args.producer_process))
    else:
        result = run_loop(run(*work))
    report = {
        "benchmark": "retry_storm",
        "prefix": prefix,
        "storm": args.storm,
        "fresh_rate": args.fresh_rate,
        "retry_policy": f"{POLICY.max_attempts} attempts, {POLICY.delay:g} s x{POLICY.backoff:g}",
        "send": "send_many" if how.many else "gather",
        "fresh_from": "a process of its own" if args.producer_process else "this process",
        "priorities": f"storm {BULK_PRIORITY}, fresh {FRESH_PRIORITY}"
        if args.bulk_priority
        else "none",
        "concurrency": args.concurrency,
        "queue_type": "quorum" if args.quorum else "classic",
        "worker": f"taskq-worker, {args.processes} process(es)"
        if args.worker_process
        else "in-process",
        "load_before": load_before,
        "load_after": load(),
        **result,
    }
    print_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
