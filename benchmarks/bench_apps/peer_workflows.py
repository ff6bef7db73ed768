"""A peer's chord (Celery) or group with a completion callback (Dramatiq), and its chain, through
its own client and Redis result backend, in a process of its own (BENCH_REDIS_PREFIX set, as
for peer_results; Dramatiq also needs BENCH_DRAMATIQ_GROUPS=1).

Usage: python -m benchmarks.bench_apps.peer_workflows SYSTEM MEMBERS STEPS RUNS
One small warm-up workflow is sent and awaited first, outside the measurement. Prints one
line ``RESULT {json}``: per run, the seconds from the send to the callback's result and the
callback's delay after the last member ended (both wall clock); per chain, its seconds.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

TIMEOUT = 600  # seconds for one workflow


def _measure(
    chord: Callable[[int], tuple[float, float]], chain: Callable[[int], None], args: list[int]
) -> dict[str, Any]:
    members, steps, runs = args
    chord(10)  # warm-up: worker up, connections and subscriptions open
    chords = [chord(members) for _ in range(runs)]
    chains, chain_error = [], None
    try:
        for _ in range(max(1, runs // 2)):
            began = time.perf_counter()
            chain(steps)
            chains.append(time.perf_counter() - began)
    except Exception as exc:  # Dramatiq nests a pipeline's messages: 1,000 exceed json's depth
        chain_error = f"{type(exc).__name__}: {str(exc)[:200]}"
    return {
        "chord_s": [seconds for seconds, _ in chords],
        "delay_s": [delay for _, delay in chords],
        "chain_s": chains,
        "chain_error": chain_error,
    }


def _wait(get: Callable[[], Any]) -> Any:
    """Block on a Dramatiq result in 5 s slices (one long BRPOPLPUSH outlasts its Redis
    client's socket timeout) until TIMEOUT."""
    from dramatiq.results import ResultTimeout

    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            return get()
        except ResultTimeout:
            if time.monotonic() > deadline:
                raise


def celery(args: list[int]) -> dict[str, Any]:
    from celery import chain as celery_chain
    from celery import chord as celery_chord

    from .celery_app import wf_collect, wf_member, wf_step

    def chord(n: int) -> tuple[float, float]:
        began = time.perf_counter()
        result = celery_chord(wf_member.s(i) for i in range(n))(wf_collect.s())
        count, callback_start, last_end = result.get(timeout=TIMEOUT)
        assert count == n
        return time.perf_counter() - began, callback_start - last_end

    def chain(m: int) -> None:
        flow = celery_chain(wf_step.s(0), *(wf_step.s() for _ in range(m - 1)))
        assert flow.apply_async().get(timeout=TIMEOUT) == m

    return _measure(chord, chain, args)


def dramatiq(args: list[int]) -> dict[str, Any]:
    import dramatiq as dq

    from .dramatiq_app import backend, wf_collect, wf_member, wf_step

    assert backend is not None
    timeout_ms = TIMEOUT * 1000

    def chord(n: int) -> tuple[float, float]:
        began = time.perf_counter()
        members = dq.group(wf_member.message(i) for i in range(n))
        callback = wf_collect.message()
        members.add_completion_callback(callback)
        members.run()
        callback_start = _wait(lambda: backend.get_result(callback, block=True, timeout=5000))
        seconds = time.perf_counter() - began
        # Dramatiq's completion callback gets no results: the ends are read afterwards
        ends = list(members.get_results(block=True, timeout=timeout_ms))
        assert len(ends) == n
        return seconds, callback_start - max(ends)

    def chain(m: int) -> None:
        flow = dq.pipeline([wf_step.message(0), *(wf_step.message() for _ in range(m - 1))])
        running = flow.run()
        assert _wait(lambda: running.get_result(block=True, timeout=5000)) == m

    return _measure(chord, chain, args)


def main() -> None:
    system, args = sys.argv[1], [int(arg) for arg in sys.argv[2:5]]
    out = celery(args) if system == "celery" else dramatiq(args)
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
