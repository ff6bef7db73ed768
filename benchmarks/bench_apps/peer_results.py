"""Round trip and fan-out through a peer's own client and result backend (Redis), in a
process of its own (each peer's module-level configuration comes from the environment, with
BENCH_REDIS_PREFIX set so its app stores results).

Usage: python -m benchmarks.bench_apps.peer_results SYSTEM ROUNDTRIPS FANOUT
One warm-up task (worker up, connections open) is sent and awaited first, outside the
measurement. Prints one line ``RESULT {json}``: round-trip samples (seconds), fan-out seconds
and the number of results gathered that matched their argument.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any

WARM_TIMEOUT = 120  # seconds for the first result: worker start, imports, connects
TIMEOUT = 60  # seconds for any later result


def _measure(
    n: int, fanout: int, call: Callable[[int], Any], gather: Callable[[int], list[Any]]
) -> dict[str, Any]:
    samples = []
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        assert call(i) == i
        samples.append(time.perf_counter() - t0)
    roundtrip_s = time.perf_counter() - start
    fanout_s, counted = 0.0, 0
    if fanout:
        start = time.perf_counter()
        values = gather(fanout)
        fanout_s = time.perf_counter() - start
        counted = sum(v == i for i, v in enumerate(values))
    return {
        "samples": samples,
        "roundtrip_s": roundtrip_s,
        "fanout_s": fanout_s,
        "counted": counted,
    }


def celery(n: int, fanout: int) -> dict[str, Any]:
    from celery.result import ResultSet

    from .celery_app import noop

    assert noop.delay(-1).get(timeout=WARM_TIMEOUT) == -1

    def call(i: int) -> Any:
        return noop.delay(i).get(timeout=TIMEOUT)

    def gather(k: int) -> list[Any]:
        # the client is synchronous: send k in a loop (each delay() also subscribes to the
        # task's result channel), then join them through the backend's native bulk path
        results = [noop.delay(i) for i in range(k)]
        return list(ResultSet(results).get(timeout=TIMEOUT * 2))

    return _measure(n, fanout, call, gather)


def dramatiq(n: int, fanout: int) -> dict[str, Any]:
    from .dramatiq_app import backend, noop

    assert backend is not None
    assert backend.get_result(noop.send(-1), block=True, timeout=WARM_TIMEOUT * 1000) == -1

    def call(i: int) -> Any:
        return backend.get_result(noop.send(i), block=True, timeout=TIMEOUT * 1000)

    def gather(k: int) -> list[Any]:
        # synchronous client: send k in a loop, then block on each result in order
        messages = [noop.send(i) for i in range(k)]
        return [backend.get_result(m, block=True, timeout=TIMEOUT * 1000) for m in messages]

    return _measure(n, fanout, call, gather)


async def taskiq(n: int, fanout: int, interval: float) -> dict[str, Any]:
    from .taskiq_app import broker, noop

    async def result(task: Any, timeout: float = TIMEOUT) -> Any:
        # taskiq polls the backend (default every 200 ms); 1 ms is its best latency here
        res = await task.wait_result(check_interval=interval, timeout=timeout)
        return res.return_value

    await broker.startup()
    try:
        assert await result(await noop.kiq(-1), WARM_TIMEOUT) == -1
        samples = []
        start = time.perf_counter()
        for i in range(n):
            t0 = time.perf_counter()
            assert await result(await noop.kiq(i)) == i
            samples.append(time.perf_counter() - t0)
        roundtrip_s = time.perf_counter() - start
        fanout_s, counted = 0.0, 0
        if fanout:
            start = time.perf_counter()
            tasks = await asyncio.gather(*(noop.kiq(i) for i in range(fanout)))
            # awaited in send order: concurrent pollers (one per task, every 1 ms) would
            # flood Redis; by the time one is ready most of the next ones are too
            values = [await result(task) for task in tasks]
            fanout_s = time.perf_counter() - start
            counted = sum(v == i for i, v in enumerate(values))
        return {
            "samples": samples,
            "roundtrip_s": roundtrip_s,
            "fanout_s": fanout_s,
            "counted": counted,
        }
    finally:
        await broker.shutdown()


def main() -> None:
    system, n, fanout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if system == "celery":
        out = celery(n, fanout)
    elif system == "dramatiq":
        out = dramatiq(n, fanout)
    else:
        out = asyncio.run(taskiq(n, fanout, float(sys.argv[4]) if sys.argv[4:] else 0.001))
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
