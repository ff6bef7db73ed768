"""On-demand soak of the periodic schedulers' failover (issue 11's long run).

    python -m benchmarks.periodic_soak [--minutes 10] [--kill-every 60] [--schedulers 2]
                                       [--json PATH]

Runs ``--schedulers`` real ``taskq beat`` processes for one App with a 1-second entry
(catch_up="all") under a fresh prefix. Every ``--kill-every`` seconds the active one is
SIGKILLed and a new process started in its place. At the end every scheduler is stopped and
the work queue read: each firing is one message named ``periodic:soak_tick:{tick}``.

Prints, and writes as JSON with ``--json``:

- ``failover_s``: per kill, from the SIGKILL to the first firing sent by the next scheduler
  (the firing's sent-at; it is a tick caught up, or the next tick if none was missed);
- ``takeover_s``: per kill, from the SIGKILL to the moment the next scheduler says it became
  active (its log's "active since"): the failover itself, without the wait for a tick;
- ``duplicates``: ticks sent more than once; ``missed``: ticks between the first and the last
  one sent that were never sent;
- ``lateness_ms``: p50/p99/max of sent-at minus tick for the firings sent on time;
- ``broker_shutdowns``: times RabbitMQ shut down during the soak, from the schedulers' logs
  (on a shared broker another test run may restart it; the soak's judgement still holds).

Stops by itself; deletes its queues and exchanges afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import signal
import statistics
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.faults.broker import delete_prefix
from taskq import App, codec
from taskq.cli.common import run_loop
from tests.support import BROKER, BeatProcess, eventually

APP = "benchmarks.bench_apps.beat_soak:app"


async def _active(schedulers: list[BeatProcess], timeout: float = 60) -> BeatProcess:
    """The one live scheduler whose log says it holds the lease."""

    async def one() -> list[BeatProcess]:
        # Only a live one counts: a SIGKILLed scheduler's log still says it was active.
        active = [s for s in schedulers if s.process.poll() is None and s.active]
        return active if len(active) == 1 else []

    return (await eventually(one, timeout=timeout, interval=0.05, what="one active"))[0]


async def _soak(prefix: str, args: argparse.Namespace) -> dict[str, Any]:
    schedulers = [BeatProcess(APP, prefix) for _ in range(args.schedulers)]
    every = [*schedulers]
    kills: list[float] = []
    takeovers: list[float] = []
    end = time.monotonic() + args.minutes * 60
    shutdowns = 0
    try:
        active = await _active(schedulers)
        while time.monotonic() + args.kill_every <= end:
            await asyncio.sleep(args.kill_every)  # the soak's own rhythm, not a broker wait
            active = await _active(schedulers)  # the lease may have moved meanwhile
            active.process.kill()
            kills.append(time.time())
            await active.wait_exit(30)
            schedulers.remove(active)
            schedulers.append(BeatProcess(APP, prefix))
            every.append(schedulers[-1])
            active = await _active(schedulers)
            takeovers.append(round(active.since.timestamp() - kills[-1], 3))
            print(f"kill {len(kills)}: {active.log_path.name} took over after "
                  f"{takeovers[-1]:.3f} s", file=sys.stderr)  # fmt: skip
        await asyncio.sleep(max(0.0, end - time.monotonic()))
    finally:
        running = [s for s in every if s.process.poll() is None]
        for scheduler in running:
            scheduler.signal(signal.SIGTERM)
        for scheduler in running:
            await scheduler.wait_exit(30)
        shutdowns = _shutdowns(every)
        for scheduler in every:
            scheduler.kill()  # closes and removes its log
    return {**_judge(await _firings(prefix), kills), "takeover_s": takeovers,
            "takeover_max_s": max(takeovers, default=None),
            "broker_shutdowns": shutdowns}  # fmt: skip


def _shutdowns(schedulers: list[BeatProcess]) -> int:
    """How many times the broker shut down under the soak, as the schedulers' logs tell (on
    a shared broker, someone else's test may restart it): moments at least 5 s apart."""
    moments = sorted({
        dt.datetime.fromisoformat(line[:19]).timestamp()
        for s in schedulers
        for line in s.output().splitlines()
        if "reason 'shutdown'" in line
    })  # fmt: skip
    return sum(1 for i, t in enumerate(moments) if i == 0 or t - moments[i - 1] > 5)


async def _firings(prefix: str) -> list[tuple[dt.datetime, float]]:
    """``(tick, sent at)`` of every firing in the work queue (read and acked)."""
    firings = []
    async with App("soak-reader", broker=BROKER, prefix=prefix) as reader:
        queue = reader.names.work_queue("default")
        while (delivery := await reader.transport.get(queue)) is not None:
            _, _, _, meta = codec.unpack(delivery.body)
            firings.append((meta["sf"], meta["t"] / 1000))
            await delivery.ack()
    return firings


def _judge(firings: list[tuple[dt.datetime, float]], kills: list[float]) -> dict[str, Any]:
    counts = Counter(tick for tick, _ in firings)
    ticks = sorted(counts)
    expected = int((ticks[-1] - ticks[0]).total_seconds()) + 1 if ticks else 0
    failover = []
    for kill in kills:
        after = [sent for _, sent in firings if sent > kill]
        failover.append(round(min(after) - kill, 3) if after else None)
    lateness = sorted((sent - tick.timestamp()) * 1000 for tick, sent in firings
                      if sent - tick.timestamp() < 0.5)  # fmt: skip
    return {
        "ticks_sent": len(firings),
        "distinct_ticks": len(ticks),
        "window": [ticks[0].isoformat(), ticks[-1].isoformat()] if ticks else None,
        "duplicates": sum(n - 1 for n in counts.values()),
        "missed": expected - len(ticks),
        "kills": len(kills),
        "failover_s": failover,
        "failover_max_s": max((f for f in failover if f is not None), default=None),
        "lateness_ms": {
            "p50": round(statistics.median(lateness), 1) if lateness else None,
            "p99": round(lateness[int(len(lateness) * 0.99)], 1) if lateness else None,
            "max": round(lateness[-1], 1) if lateness else None,
        },
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    prefix = f"tqsoak{uuid.uuid4().hex[:10]}"
    try:
        result = await _soak(prefix, args)
    finally:
        await delete_prefix(prefix, ["default"])
    return {"minutes": args.minutes, "kill_every_s": args.kill_every,
            "schedulers": args.schedulers, **result}  # fmt: skip


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--kill-every", type=float, default=60.0, help="seconds between kills")
    parser.add_argument("--schedulers", type=int, default=2)
    parser.add_argument("--json", help="also write the result to this file")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = _parse()
    outcome = run_loop(main(arguments))
    text = json.dumps(outcome, indent=2)
    print(text)
    if arguments.json:
        Path(arguments.json).write_text(text + "\n")
    verdict = outcome["duplicates"] == 0 and outcome["missed"] == 0
    sys.exit(0 if verdict else 1)
