"""Channel churn on one long-lived connection (issue 20, defect 2).

Every ``queue_depth`` opens and closes a throwaway channel, and so does every control
broadcast (its reply inbox). A client that never reuses channel numbers fails every new
channel after 65,535 opens on one connection. This runs ``--opens`` of them through one App
(``--concurrency`` at a time, a ``ping`` broadcast every ``--broadcast-every``), then makes the
broker refuse a publish (an exchange that does not exist: 404 closes the confirm channel),
then sends tasks, which must go through on a new channel.

    python -m benchmarks.channel_churn --opens 200000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid

from taskq import App, PublishError, control
from taskq.message import OutgoingMessage
from taskq.topology import every_name

BROKER = "amqp://guest:guest@127.0.0.1:5672/"


async def churn(
    app: App, opens: int, concurrency: int, broadcast_every: int, memory: control.LastSeen
) -> int:
    """``opens`` queue_depth calls (of the default work queue, which must exist) and ping
    broadcasts (one in ``broadcast_every``, 0: none), ``concurrency`` at a time; return how
    many broadcasts were among them."""
    queue = app.names.work_queue("default")
    broadcasts = 0
    counter = iter(range(opens))

    async def loop() -> None:
        nonlocal broadcasts
        for n in counter:
            if broadcast_every and n % broadcast_every == 0:
                broadcasts += 1
                await control.broadcast(app, "ping", timeout=0.01, memory=memory)
            else:
                assert await app.transport.queue_depth(queue) is not None

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return broadcasts


async def refuse_then_send(app: App, sends: int) -> None:
    """One publish the broker refuses (it closes the confirm channel), then ``sends`` tasks
    to the default queue, each of which must be confirmed."""
    missing = f"{app.names.prefix}.no-such-exchange"
    try:
        await app.transport.publish(missing, "x", OutgoingMessage(b"x", message_id="refused"))
    except PublishError:
        pass
    else:
        raise AssertionError("the broker accepted a publish to a missing exchange")
    for i in range(sends):
        await app.send("add", i, 1)


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opens", type=int, default=200_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--broadcast-every", type=int, default=1000)
    parser.add_argument("--channel-max", type=int, default=None)
    args = parser.parse_args(argv)
    prefix = f"churn{uuid.uuid4().hex[:8]}"
    extra = {} if args.channel_max is None else {"channel_max": args.channel_max}
    app = App("churn", broker=BROKER, prefix=prefix, **extra)
    started = time.monotonic()
    memory = control.LastSeen(BROKER, prefix, tempfile.mkdtemp(prefix="taskq-churn-"))
    async with app:
        await app.send("add", 0, 0)  # declares the default queue
        broadcasts = await churn(app, args.opens, args.concurrency, args.broadcast_every, memory)
        churned = time.monotonic() - started
        await refuse_then_send(app, 10)
        queues, exchanges = every_name(app.names, ["default"])
        for name in queues:
            await app.transport.delete_queue(name)
        for name in exchanges:
            await app.transport.delete_exchange(name)
    print(
        f"{args.opens} channel opens ({broadcasts} broadcasts, {args.concurrency} at a time) "
        f"on one connection in {churned:.1f} s ({args.opens / churned:.0f}/s); then a refused "
        f"publish and 10 sends: ok"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
