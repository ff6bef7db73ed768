"""``taskq inspect``: two real ``taskq-worker`` processes answer over the control plane.

One test drives both workers through every question (starting worker processes is the slow
part): ping, active while a task runs and not after, reserved behind a busy worker, stats,
and a SIGKILLed worker reported missing.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest

from taskq import App
from taskq.control import LastSeen, broadcast
from tests.support import BROKER, WorkerProcess, eventually, run_taskq

APP = "tests.apps.ops_app:app"


async def run_cli(prefix: str, state: Path, *args: str) -> tuple[int, str]:
    """Run ``taskq --app APP ARGS`` in a subprocess; return its exit code and stdout."""
    done = await run_taskq(prefix, *args, app=APP, env={"TASKQ_STATE_DIR": str(state)})
    return done.code, done.out


@pytest.mark.idle_extra_queue  # it asserts what each worker runs, holds and has done
async def test_inspect_two_workers(prefix: str, topology_cleanup: set[str], tmp_path: Path) -> None:
    topology_cleanup.add("busy")
    busy = WorkerProcess(APP, prefix, "--name", "w1", "-Q", "busy", "-c", "1", "--prefetch", "3")
    idle = WorkerProcess(APP, prefix, "--name", "w2")
    memory = LastSeen(BROKER, prefix, str(tmp_path))
    release = tmp_path / "release"
    app = App("ops-client", broker=BROKER, prefix=prefix)
    try:
        await asyncio.gather(busy.wait_ready(), idle.wait_ready())
        async with app:

            async def ask(command: str, **kw: Any) -> Any:
                return await broadcast(app, command, timeout=10, memory=memory, **kw)

            pong = await ask("ping", expect=["w1", "w2"])
            assert [r.worker for r in pong.replies] == ["w1", "w2"]
            assert [r.answer for r in pong.replies] == ["pong", "pong"]
            assert pong.missing == []

            hold = app.named("hold").options(queue="busy")
            held = [await hold.delay(str(release)) for _ in range(3)]
            adds = [await app.send("add", i, 1) for i in range(2)]
            assert [await h.result(timeout=30) for h in adds] == [1, 2]

            async def running() -> list[dict[str, Any]]:
                (reply,) = (await ask("active", worker="w1")).replies
                return list(reply.answer)

            (active,) = await eventually(running, what="the long task to show as active")
            assert active["task_id"] == held[0].id
            assert active["task"] == "hold" and active["attempt"] == 1
            assert repr(str(release)).startswith(active["args"].removesuffix("..."))  # cut at 80

            async def waiting() -> list[str]:
                (reply,) = (await ask("reserved", worker="w1")).replies
                ids = [t["task_id"] for t in reply.answer]
                return ids if len(ids) == 2 else []

            assert sorted(await eventually(waiting, what="2 reserved")) == sorted(
                h.id for h in held[1:]
            )
            w2_active = (await ask("active", worker="w2")).replies[0].answer
            assert w2_active == []

            release.touch()
            assert [await h.result(timeout=30) for h in held] == [str(release)] * 3

            async def none_running() -> bool:
                reply = (await ask("active", worker="w1")).replies[0]
                return reply.answer == []

            await eventually(none_running, what="no active task after the release")

            stats = {r.worker: r.answer for r in (await ask("stats")).replies}
            assert stats["w1"]["succeeded"] == 3 and stats["w1"]["processed"] == 3
            assert stats["w1"]["failed"] == 0 and stats["w1"]["concurrency"] == 1
            assert stats["w1"]["prefetch"] == 3 and stats["w1"]["broker_connected"] is True
            assert stats["w2"]["succeeded"] == 2 and stats["w2"]["received"] == 2
            assert stats["w2"]["pid"] == idle.process.pid

        code, out = await run_cli(prefix, tmp_path, "inspect", "stats", "--timeout", "10")
        assert code == 0
        lines = out.splitlines()
        assert lines[0].split()[:3] == ["WORKER", "HOST", "PID"]
        assert any(line.startswith("w1 ") and str(busy.process.pid) in line for line in lines)

        idle.signal(signal.SIGKILL)
        await idle.wait_exit()
        # The command waits its whole timeout for the missing worker: far longer than a
        # live worker ever needs to answer.
        code, out = await run_cli(prefix, tmp_path, "inspect", "ping", "--json", "--timeout", "10")
        result = json.loads(out)
        assert code == 1  # somebody is missing
        assert [r["worker"] for r in result["replies"]] == ["w1"]
        assert [m["worker"] for m in result["missing"]] == ["w2"]
        assert result["missing"][0]["state"] in ("gone", "not answering")

        code, out = await run_cli(prefix, tmp_path, "control", "shutdown", "--worker", "w1")
        assert code == 0 and "stopping gracefully" in out
        assert await busy.wait_exit() == 0
    finally:
        busy.kill()
        idle.kill()
