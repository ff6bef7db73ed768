"""Producer fuzz (issue 20): hypothesis-drawn raw AMQP messages (tests/fuzz_messages.py)
published by foreign producers into the work queue of a real ``taskq-worker``, with ordinary
tasks between them. Every message the broker confirmed must run once (the probe task writes
``probe-TAG`` to the ledger) or be parked in the ``.dead`` queue with a reason; the worker's
consuming connection must be the same at the end. Messages the broker itself refused (it
closed the producer's channel or connection, or did not answer) are counted apart."""

from __future__ import annotations

import asyncio
import collections

from taskq import dlq
from tests.foreign_producer import RefusalTolerantProducer
from tests.fuzz_messages import PROBE, FuzzMessage, generate

from . import broker
from .report import Row
from .run import Run
from .sizes import Sizes

PRODUCERS = 8  # in parallel: a broker that leaves a refused publish unanswered costs 5 s
ORDINARY_EVERY = 50


async def _publish(
    exchange: str, share: list[tuple[int, FuzzMessage]], refused: collections.Counter[str]
) -> list[int]:
    published = []
    async with RefusalTolerantProducer() as producer:
        for tag, message in share:
            why = await producer.publish(exchange, "default", message.body, message.properties)
            if why is None:
                published.append(tag)
            else:
                refused[why.split(" - ")[0]] += 1
    return published


async def producer_fuzz(sizes: Sizes) -> list[Row]:
    """Publish ``sizes.fuzz_messages`` fuzzed messages and count where each ended."""
    messages = generate(sizes.fuzz_messages, seed=20, exclude=["work"])
    async with Run("producer fuzz", concurrency=8) as run:
        await run.start_worker()
        before = await _worker_connections(run.prefix)
        refused: collections.Counter[str] = collections.Counter()
        tagged = list(enumerate(messages))
        ordinary = [(run.client.tasks["work"], 0.0, tag) for tag, _ in tagged[::ORDINARY_EVERY]]
        sent = asyncio.ensure_future(run.send(ordinary))
        shares = [tagged[i::PRODUCERS] for i in range(PRODUCERS)]
        results = await asyncio.gather(*(_publish(run.prefix, s, refused) for s in shares))
        await sent
        published = [tag for share in results for tag in share]
        settled = await run.settle(sizes.settle_timeout)
        dead = await _dead_reasons(run)
        drops = len(set(before.items()) - set((await _worker_connections(run.prefix)).items()))
        row = await run.count(settle_timeout=sizes.settle_timeout, grace=sizes.grace)
        row.settled = row.settled and settled
        return [_with_fuzz(row, run, published, refused, dead, drops)]


async def _worker_connections(prefix: str) -> dict[str, str]:
    """``{pid: name}`` of the worker's connections (consume, publish...)."""
    return {pid: name for pid, name in (await broker.connections_of(prefix)).items()
            if name.startswith("taskq-worker:")}  # fmt: skip


async def _dead_reasons(run: Run) -> collections.Counter[str]:
    """Reasons of the messages in the ``.dead`` queue, then purged (aio-pika, which the
    suite reads queues with, cannot read a copy whose short strings are not UTF-8): the
    worker's ``x-taskq-reason``, or ``broker:`` and the broker's own ``x-death`` reason."""
    dead_queue = run.client.names.dead_queue("default")
    reasons: collections.Counter[str] = collections.Counter(
        m.reason if m.worker else f"broker:{m.reason}"
        for m in await dlq.list_dead(run.client.transport, "default")
    )
    await broker.rabbitmqctl("purge_queue", dead_queue)
    return reasons


def _with_fuzz(
    row: Row, run: Run, published: list[int], refused: collections.Counter[str],
    dead: collections.Counter[str], drops: int,
) -> Row:  # fmt: skip
    """``row`` (the ordinary tasks) with the fuzzed messages added: each confirmed one ran
    once or was parked; a message that did neither is lost."""
    runs = collections.Counter(
        task_id for task_id, n in run.ledger.read().done_by_id().items()
        if task_id.startswith(f"{PROBE}-") for _ in range(n)
    )  # fmt: skip
    ran, parked = sum(runs.values()), sum(dead.values())
    row.confirmed += len(published)
    row.executed += len(runs)
    row.twice += sum(1 for n in runs.values() if n > 1)
    row.lost += max(0, len(published) - ran - parked)
    row.notes.append(
        f"{len(published) + sum(refused.values())} drawn, {len(published)} published, "
        f"{ran} ran, {parked} dead-lettered ({_listed(dead)}), "
        f"{sum(refused.values())} refused by the broker ({_listed(refused)}), "
        f"worker connections dropped: {drops}"
    )
    if ran + parked != len(published):
        row.failures.append(f"ran {ran} + dead-lettered {parked} != published {len(published)}")
    if drops:
        row.failures.append(f"{drops} worker connection(s) dropped")
    return row


def _listed(counts: collections.Counter[str]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in counts.most_common()) or "none"
