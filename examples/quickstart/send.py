"""Send a few tasks and print their results (run a worker first: taskq-worker tasks:app)."""

import asyncio

from tasks import add, app, multiply


async def main() -> None:
    async with app:
        handle = await add.delay(4, 6)
        print(f"add(4, 6) = {await handle.result(timeout=30)}")
        handles = [await multiply.delay(i, i) for i in range(5)]
        squares = [await h.result(timeout=30) for h in handles]
        print(f"squares = {squares}")


if __name__ == "__main__":
    asyncio.run(main())
