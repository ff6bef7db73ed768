"""Send eight low-priority tasks, then one urgent one, and print the order they ran in.

Start the worker first (``taskq-worker tasks:app --concurrency 1`` in this directory), then
``python send.py``. The urgent task (priority 9) runs right after the one the worker already
holds, ahead of the low-priority tasks (priority 0) sent before it.
"""

import asyncio

from tasks import app, step

from taskq import TaskHandle


async def main() -> None:
    async with app:
        handles: dict[str, TaskHandle[float]] = {}
        for i in range(8):
            label = f"low-{i}"
            handles[label] = await step.options(priority=0).delay(label)
        handles["URGENT"] = await step.options(priority=9).delay("URGENT")
        started = {label: await h.result(timeout=60) for label, h in handles.items()}
        order = sorted(started, key=started.__getitem__)
        print("sent: " + ", ".join(handles))
        print("ran:  " + ", ".join(order))
        print(f"URGENT ran {order.index('URGENT') + 1} of {len(order)}, though it was sent last")


if __name__ == "__main__":
    asyncio.run(main())
