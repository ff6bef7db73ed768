"""``python -m benchmarks.rt_floor``: the floor of a round trip on this machine, whatever the
task queue.

A minimal client and worker, on taskq's own AMQP client with nothing of taskq above it (no
task, no codec, no store): the client publishes a message and waits for the answer; the
worker consumes it and answers at once. What is left is the broker, Redis, the kernels and
two event loops: no task queue written in Python can go below it with the same hops. Modes:

- ``amqp``: the answer comes back through the broker. Both messages persistent and
  confirmed, the worker acks once its answer is confirmed: the hops and guarantees of
  taskq's default AMQP results.
- ``amqp-bare``: the same hops, transient and unconfirmed (what no task queue here offers).
- ``redis``: the answer is a Redis ``PUBLISH`` to the client's subscription, the worker
  acks once Redis answered; the task message persistent and confirmed. One broker hop and
  one Redis hop: the hops of taskq's Redis store, and of Dramatiq with its Redis backend.
- ``redis-bare``: the same hops, the task message persistent but unconfirmed: Dramatiq's
  default.

The work queue is durable with ``x-max-priority`` like taskq's. Each mode runs its round
trips one at a time, in turn with the others, ``--repeat`` times; the median p50 of each is
printed (and the spread). ``python -m benchmarks --scenarios roundtrip`` measures the
``amqp`` and ``redis`` modes too, as the rows of system "floor" (with ``--systems`` raw),
in each repetition next to taskq and the peers: issue 27's figures compare them with
Dramatiq's round trip.

Example: python -m benchmarks.rt_floor --roundtrips 2000 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

import hiredis
import uvloop
from pamqp import commands

from taskq.results.redis_wire import encode
from taskq.transport.connection import Channel, Connection, connect
from taskq.transport.endpoints import parse_endpoint
from taskq.transport.wire import Delivery

from . import broker
from . import harness as h
from .harness import Result

MODES = ("amqp", "amqp-bare", "redis", "redis-bare")
VARIANTS = {
    "amqp": "floor: AMQP answer, persistent + confirmed",
    "redis": "floor: Redis PUBLISH answer, task persistent + confirmed",
}
"""The modes ``python -m benchmarks`` measures, by their row's variant label."""
CONFIG = {
    "amqp": "python -m benchmarks.rt_floor --modes amqp: taskq's AMQP client alone, "
    "two broker hops (persistent, confirmed; worker acks after its answer's confirm)",
    "redis": "python -m benchmarks.rt_floor --modes redis: taskq's AMQP client alone, one "
    "broker hop (persistent, confirmed) + Redis PUBLISH to the client's subscription",
}
REDIS = ("127.0.0.1", 6379)
PERSISTENT = {"delivery_mode": 2}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.rt_floor", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--roundtrips", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--serve", help=argparse.SUPPRESS)  # the worker: "mode queue channel"
    return p.parse_args(argv)


class RedisLink(asyncio.Protocol):
    """One Redis connection, RESP by hand: commands answered in order, or a subscription
    whose messages go to ``on_message``."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: list[asyncio.Future[Any]] = []
        self.transport: asyncio.Transport | None = None
        self.on_message: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if self.on_message is not None and reply[0] == b"message":
                self.on_message(reply[2])
            elif self.waiting:
                self.waiting.pop(0).set_result(reply)

    def call(self, *args: bytes | str) -> asyncio.Future[Any]:
        assert self.transport is not None
        self.transport.write(encode(args))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        return future


async def redis_link() -> RedisLink:
    _, link = await asyncio.get_running_loop().create_connection(RedisLink, *REDIS)
    return link


async def amqp(name: str) -> tuple[Connection, Channel]:
    connection = await connect(parse_endpoint(broker.BROKER), name, 10.0)
    return connection, await connection.channel()


async def serve(mode: str, queue: str, channel_name: str) -> None:
    """The worker: answer every message of ``queue`` (see the module's docstring)."""
    connection, consuming = await amqp("floor-worker")
    publishing = await connection.channel()
    confirmed = mode == "amqp"
    if confirmed:
        await publishing.confirm_mode()
    link = await redis_link() if mode.startswith("redis") else None
    running: set[asyncio.Task[None]] = set()

    async def answer(delivery: Delivery) -> None:
        if link is not None:
            await link.call("PUBLISH", channel_name, delivery.body)
        else:
            props = PERSISTENT if confirmed else {}
            sent = publishing.publish("", delivery.reply_to or "", delivery.body, props,
                                      mandatory=False)  # fmt: skip
            if sent is not None:
                await sent
        await delivery.ack()

    def on_delivery(delivery: Delivery) -> None:
        task = asyncio.ensure_future(answer(delivery))
        running.add(task)
        task.add_done_callback(running.discard)

    await consuming.consume(queue, "floor", on_delivery, prefetch=100)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until closed
    await connection.close()


async def measure(mode: str, roundtrips: int, prefix: str = "floor") -> list[float]:
    """``roundtrips`` round trips in ``mode`` (after 100 to warm up): each one's seconds."""
    tag = uuid.uuid4().hex[:8]
    channel_name = f"{prefix}.{tag}"
    queue, replies = f"{channel_name}.work", f"{channel_name}.reply"
    connection, channel = await amqp("floor-client")
    await channel.rpc(commands.Queue.Declare(queue=queue, durable=True,
                                             arguments={"x-max-priority": 10}))  # fmt: skip
    await channel.rpc(commands.Queue.Declare(queue=replies, durable=True))
    if mode in ("amqp", "redis"):
        await channel.confirm_mode()
    waiting: dict[bytes, asyncio.Future[None]] = {}

    def answered(body: bytes) -> None:
        future = waiting.pop(body, None)
        if future is not None:
            future.set_result(None)

    link = None
    if mode.startswith("redis"):
        link = await redis_link()
        await link.call("SUBSCRIBE", channel_name)
        link.on_message = answered
    else:
        replying = await connection.channel()
        await replying.consume(replies, "reply", lambda d: answered(d.body), prefetch=0,
                               acks=False)  # fmt: skip
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.rt_floor", "--serve", f"{mode} {queue} {channel_name}",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert worker.stdout is not None and worker.stdin is not None
    loop = asyncio.get_running_loop()
    props = {**PERSISTENT, "reply_to": replies}
    times = []
    try:
        if await worker.stdout.readline() != b"ready\n":
            raise RuntimeError(f"the floor's worker ({mode}) did not start")
        async with asyncio.timeout(30 + roundtrips / 100):  # one timer: none per round trip
            for i in range(roundtrips + 100):  # the first 100 warm up
                body = b"%d" % i
                future = waiting[body] = loop.create_future()
                start = time.perf_counter()
                confirm = channel.publish("", queue, body, props, mandatory=False)
                await future
                times.append(time.perf_counter() - start)
                if confirm is not None:
                    await confirm  # a sender that needs the confirm has it by now, or soon
    finally:
        worker.stdin.close()
        await worker.wait()
        for name in (queue, replies):
            await channel.rpc(commands.Queue.Delete(queue=name))
        await connection.close()
        if link is not None and link.transport is not None:
            link.transport.close()
    return times[100:]


async def rows(roundtrips: int, prefix: str) -> list[Result]:
    """The floor of the ``amqp`` and ``redis`` modes as rows of ``python -m benchmarks``
    (system "floor", scenario "roundtrip"): what taskq's two kinds of round trip cannot beat."""
    out = []
    for mode, variant in VARIANTS.items():
        h.progress(f"raw roundtrip floor ({mode}): {roundtrips} round trips")
        started = time.perf_counter()
        samples = await measure(mode, roundtrips, f"{prefix}.floor")
        out.append(h.latency("floor", "roundtrip", variant, CONFIG[mode], samples,
                             time.perf_counter() - started, "floor"))  # fmt: skip
    return out


async def main(args: argparse.Namespace) -> None:
    modes = args.modes.split(",")
    p50s: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(args.repeat):
        for mode in modes:
            samples = await measure(mode, args.roundtrips)
            p50s[mode].append(statistics.median(samples) * 1e6)
    print(f"{args.roundtrips} round trips one at a time, {args.repeat} repetitions, "
          "p50 in µs: median (min-max)")  # fmt: skip
    for mode, values in p50s.items():
        print(f"{mode:<11} {statistics.median(values):7.0f} ({min(values):.0f}-{max(values):.0f})")


if __name__ == "__main__":
    arguments = parse(sys.argv[1:])
    if arguments.serve:
        uvloop.run(serve(*arguments.serve.split()))
    else:
        uvloop.run(main(arguments))
