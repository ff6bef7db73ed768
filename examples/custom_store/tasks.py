"""An App whose results go to a store object of its own (examples/custom_store/memory_store.py).

Run it (a worker and a caller in one process): python examples/custom_store/tasks.py
"""

from __future__ import annotations

import asyncio
import os

from memory_store import MemoryStore

from taskq import App, Worker

app = App(
    "custom-store",
    broker=os.environ.get("TASKQ_BROKER", "amqp://guest:guest@127.0.0.1:5672/"),
    results=MemoryStore(result_ttl=3600),
)


@app.task
async def add(x: int, y: int) -> int:
    return x + y


async def main() -> None:
    worker = Worker(app, concurrency=4)
    running = asyncio.create_task(worker.run())
    async with app:
        await worker.ready.wait()
        handle = await add.delay(4, 6)
        print(await handle.result(timeout=10))  # 10
        print((await app.handle(handle.id).info()).status)  # SUCCESS, looked up by ID
    worker.stop()
    await running


if __name__ == "__main__":
    asyncio.run(main())
