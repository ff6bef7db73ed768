"""Send tasks that fail and print what the caller gets: TaskFailed with the remote error.

Start the worker first (``taskq-worker tasks:app`` in this directory), then ``python send.py``.
"""

import asyncio
from typing import Any

from tasks import app, fetch_price, reserve

from taskq import TaskFailed, TaskHandle


async def report(what: str, handle: TaskHandle[Any]) -> None:
    try:
        print(f"{what} = {await handle.result(timeout=30)}")
    except TaskFailed as exc:
        print(f"{what} failed: {exc.remote_type}: {exc.remote_message}")
        info = await handle.info()
        print(f"  status: {info.status.value}, attempt: {info.attempt}")
        print("  remote traceback:")
        for line in exc.remote_traceback.rstrip().splitlines():
            print(f"  | {line}")


async def main() -> None:
    async with app:
        await report("reserve('mugs', 2)", await reserve.delay("mugs", 2))
        await report("reserve('mugs', 5)", await reserve.delay("mugs", 5))
        await report("fetch_price('mugs')", await fetch_price.delay("mugs"))


if __name__ == "__main__":
    asyncio.run(main())
