"""Helpers shared by the tests: unique names, polling with a deadline, cleanup, workers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any, TypeVar

import aio_pika

from taskq import App, Worker, codec
from taskq.testing.polling import eventually
from taskq.topology import Names, every_name

BROKER = os.environ.get("TASKQ_TEST_BROKER", "amqp://guest:guest@127.0.0.1:5672/")
REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def unique_prefix() -> str:
    """A prefix no other test run uses."""
    return f"tq{uuid.uuid4().hex[:12]}"


async def delete_topology(prefix: str, queues: Iterable[str]) -> None:
    """Delete every exchange and queue a test with ``prefix`` may have declared."""
    names = Names(prefix)
    connection = await aio_pika.connect(BROKER)
    try:
        channel = await connection.channel()
        queue_names, exchanges = every_name(names, queues)
        for queue in queue_names:
            await channel.queue_delete(queue)
        for exchange in exchanges:
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()


async def queue_messages(
    prefix: str, queue_name: str
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Read every message of a queue (full name) and put them back (for assertions)."""
    connection = await aio_pika.connect(BROKER)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        messages = []
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            messages.append(message)
        for message in messages:
            await message.nack(requeue=True)
        return messages
    finally:
        await connection.close()


async def queue_length(queue_name: str) -> int:
    """Ready messages in a queue (full name)."""
    connection = await aio_pika.connect(BROKER)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        return queue.declaration_result.message_count or 0
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def running_worker(app: App, **options: Any) -> AsyncIterator[Worker]:
    """Run an in-process Worker for ``app`` until the block ends (graceful stop)."""
    worker = Worker(app, **options)
    task = asyncio.create_task(worker.run())
    ready = asyncio.create_task(worker.ready.wait())
    await asyncio.wait({task, ready}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()  # raise the worker's error
    assert worker.ready.is_set(), "worker did not become ready within 20 s"
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=60)


class WorkerProcess:
    """A real ``taskq-worker`` subprocess, for signal and crash tests."""

    def __init__(
        self,
        app_spec: str,
        prefix: str,
        *args: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        full_env = {
            **os.environ,
            "TASKQ_PREFIX": prefix,
            "TASKQ_BROKER": BROKER,
            "PYTHONPATH": os.pathsep.join([str(REPO), str(cwd or REPO)]),
        }
        full_env.update(env or {})
        self.log_path = Path(f"/tmp/{prefix}-worker-{uuid.uuid4().hex[:6]}.log")
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "taskq.cli.worker", app_spec, "--log-level", "info", *args],
            cwd=cwd or REPO,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    async def wait_ready(self, timeout: float = 30) -> None:
        async def consuming() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"worker exited with {self.process.returncode}:\n{self.output()}"
                )
            return "consuming" in self.output()

        await eventually(consuming, timeout=timeout, what="worker to start consuming")

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    async def wait_exit(self, timeout: float = 60) -> int:
        async def exited() -> bool:
            return self.process.poll() is not None

        await eventually(exited, timeout=timeout, interval=0.05, what="worker to exit")
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()
        self.log_path.unlink(missing_ok=True)


def meta_of(body: bytes) -> dict[str, Any]:
    """The schema 2 metadata map of a task message's body (attempt ``a``, deliveries ``d``...;
    a key is absent when it has its default)."""
    schema, _args, _kwargs, meta = codec.unpack(body)
    assert schema == 2, f"not a schema 2 body: {body!r}"
    return dict(meta)
