"""Helpers shared by the tests: unique names, polling with a deadline, cleanup, workers, the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import (
    AsyncIterator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import aiormq

from benchmarks.broker import names_starting_with
from taskq import App, Worker, codec
from taskq.cli.common import UsageError, load_app
from taskq.control import presence_queue
from taskq.message import Envelope
from taskq.testing.polling import eventually
from taskq.testing.worker import running
from taskq.topology import DELAY, LEGACY_DELAY, Names, every_name
from taskq.transport.endpoints import Endpoint, parse_endpoint
from tests.apps import noise
from tests.tcp_proxy import TcpProxy, tcp_proxy

BROKER = os.environ.get("TASKQ_TEST_BROKER", "amqp://guest:guest@127.0.0.1:5672/")
REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")

# Presence queues of worker processes that did not stop gracefully (killed by a test), by
# prefix: they would outlive the test for an hour; delete_topology removes them.
ABANDONED: dict[str, set[str]] = {}


PREFIXES_USED: set[str] = set()
"""Every prefix this process handed out: swept at the end of the session (``sweep_prefixes``)."""


def unique_prefix() -> str:
    """A prefix no other test run uses."""
    prefix = f"tq{uuid.uuid4().hex[:12]}"
    PREFIXES_USED.add(prefix)
    return prefix


def sweep_prefixes(prefixes: Iterable[str]) -> list[str]:
    """Delete every queue and exchange of ``prefixes`` still on the broker (what a test's own
    cleanup missed: a reply queue of a killed subprocess, a name declared after the cleanup
    ran); return their names."""
    queues, exchanges = names_starting_with(*prefixes)
    if queues or exchanges:
        asyncio.run(_delete(queues, exchanges))
    return queues + exchanges


async def _delete(queues: list[str], exchanges: list[str]) -> None:
    connection = await aio_pika.connect(BROKER)
    try:
        channel = await connection.channel()  # deletes without conditions never fail
        for name in queues:
            await channel.queue_delete(name)
        for name in exchanges:
            await channel.exchange_delete(name)
    finally:
        await connection.close()


# -- the broker, seen from outside taskq ------------------------------------------------------


def broker_endpoint() -> Endpoint:
    """Where the test broker (``BROKER``) is and how to log in: for a test that needs its host
    and port apart (a raw socket, a proxy)."""
    return parse_endpoint(BROKER)


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def with_query(url: str, **params: str) -> str:
    """``url`` with ``params`` added to its query string."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.urlencode([*urllib.parse.parse_qsl(parts.query), *params.items()])
    return urllib.parse.urlunsplit(parts._replace(query=query))


@contextlib.asynccontextmanager
async def broker_proxy() -> AsyncIterator[TcpProxy]:
    """A TCP proxy to the test broker; its ``amqp_url()`` is ``BROKER`` through the proxy."""
    endpoint = broker_endpoint()
    async with tcp_proxy(endpoint.port, endpoint.host, BROKER) as proxy:
        yield proxy


@contextlib.asynccontextmanager
async def event_listener(names: Names, key: str = "#") -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    """An exclusive queue bound to the events exchange of ``names`` with ``key``, on a
    connection of its own (closed at the end)."""
    connection = await aio_pika.connect(BROKER)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            names.events, aio_pika.ExchangeType.TOPIC, durable=True
        )
        listener = await channel.declare_queue(exclusive=True)
        await listener.bind(exchange, key)
        yield listener
    finally:
        await connection.close()


async def delete_topology(prefix: str, queues: Iterable[str]) -> None:
    """Delete every exchange and queue a test with ``prefix`` may have declared."""
    names = Names(prefix)
    queue_names, exchanges = every_name(names, queues)
    # Exchanges bound to each other (delay position P to P-1, 0 to the delivery exchange)
    # must not be deleted at the same moment: RabbitMQ 3.10 then fails with INTERNAL_ERROR.
    # Two rounds, each without neighbours: even positions with the others, then odd ones
    # with the delivery exchange (of both schemes: the binary levels of older versions too).
    odd = {
        scheme.exchange(names, p)
        for scheme in (DELAY, LEGACY_DELAY)
        for p in range(1, scheme.digits, 2)
    } | {names.delivery}
    connection = await aio_pika.connect(BROKER)
    try:
        # Spread over a few channels (a channel runs one synchronous method at a time), the
        # deletes take a fraction of the time one channel needs.
        channels = [await connection.channel() for _ in range(8)]

        async def delete_all(kind: str, targets: list[str]) -> None:
            async def share(i: int) -> None:
                for name in targets[i :: len(channels)]:
                    await getattr(channels[i], f"{kind}_delete")(name)

            await asyncio.gather(*(share(i) for i in range(len(channels))))

        await delete_all("queue", [*queue_names, *ABANDONED.pop(prefix, ())])
        await delete_all("exchange", [name for name in exchanges if name not in odd])
        await delete_all("exchange", [name for name in exchanges if name in odd])
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


async def delay_level_messages(prefix: str) -> list[int]:
    """Ready messages in each delay queue of ``prefix`` (see :func:`delay_queue_messages`)."""
    return list((await delay_queue_messages(prefix)).values())


async def delay_queue_messages(prefix: str) -> dict[str, int]:
    """Ready messages in each delay queue of ``prefix``: those of the base-16 scheme, then the
    binary levels of older versions; zeros for queues never declared (a queue is declared
    on the first use of a delay whose path it is on). Each queue is asked on a channel of
    its own, all at once (a passive declare of a missing queue closes its channel); a
    message moving between two queues is briefly in neither."""
    names = Names(prefix)
    every = [*DELAY.queue_names(names), *LEGACY_DELAY.queue_names(names)]
    connection = await aio_pika.connect(BROKER)

    async def ready(name: str) -> int:
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return 0
        await channel.close()
        return queue.declaration_result.message_count or 0

    try:
        return dict(zip(every, await asyncio.gather(*map(ready, every)), strict=True))
    finally:
        await connection.close()


# -- the two-queue variant (see tests/conftest.py) ---------------------------------------------


@dataclasses.dataclass
class Variant:
    """The worker configuration of the test that runs now (set by tests/conftest.py)."""

    extra_queue: str | None = None
    """A queue every worker of the test consumes besides its own (the two-queue variant)."""
    busy: bool = False
    """Whether noise tasks are fed to ``extra_queue`` while the test runs."""


VARIANT = Variant()


def noise_message(milliseconds: int) -> aio_pika.Message:
    """A taskq message for the noise task, as a client would send it (no reply wanted)."""
    envelope = Envelope(
        task_id=f"noise-{uuid.uuid4()}",
        task_name=noise.NOISE_TASK,
        queue=noise.EXTRA_QUEUE,
        args=[milliseconds],
        kwargs={},
        sent_at=time.time(),
    )
    message = envelope.to_message()
    return aio_pika.Message(
        message.body,
        message_id=message.message_id,
        type=message.type,
        headers=dict(message.headers),
        content_type=message.content_type,
    )


async def feed_noise(prefix: str, stop: asyncio.Event) -> int:
    """Publish a short noise task to the extra queue every ~20 ms while something consumes it
    and fewer than 5 wait there, until ``stop`` is set; return how many were published.

    Survives the broker going away (the restart and reconnect tests): it connects again.
    """
    names = Names(prefix)
    queue_name = names.work_queue(noise.EXTRA_QUEUE)
    rng = random.Random(prefix)
    sent = 0
    while not stop.is_set():
        try:
            connection = await aio_pika.connect(BROKER)
        except (OSError, aiormq.exceptions.AMQPError):
            await _pause(stop, 0.2)  # the broker is down: try again
            continue
        try:
            channel = await connection.channel()
            exchange = await channel.get_exchange(names.exchange, ensure=False)
            while not stop.is_set():
                try:
                    queue = await channel.declare_queue(queue_name, passive=True)
                except aiormq.exceptions.ChannelNotFoundEntity:
                    channel = await connection.channel()  # the failed declare closed it
                    exchange = await channel.get_exchange(names.exchange, ensure=False)
                else:
                    result = queue.declaration_result
                    if result.consumer_count and (result.message_count or 0) < 5:
                        message = noise_message(rng.randint(0, 30))
                        await exchange.publish(message, noise.EXTRA_QUEUE, mandatory=False)
                        sent += 1
                await _pause(stop, 0.02)  # pacing the noise, not waiting for the broker
        except (TimeoutError, OSError, aiormq.exceptions.AMQPError, RuntimeError):
            await _pause(stop, 0.2)  # the connection dropped: connect again
        finally:
            with contextlib.suppress(Exception):
                await connection.close()
    return sent


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def adding_app(name: str, prefix: str, runs: list[tuple[int, int]]) -> App:
    """An App with one task, ``add(x, y)``, that appends each call's arguments to ``runs``."""
    app = App(name, broker=BROKER, prefix=prefix)

    @app.task
    async def add(x: int, y: int) -> int:
        runs.append((x, y))
        return x + y

    return app


def make_worker(app: App, **options: Any) -> Worker:
    """A Worker for ``app``; in the two-queue variant it also consumes the extra queue."""
    extra = VARIANT.extra_queue
    if extra is None:
        return Worker(app, **options)
    noise.register(app)
    queues = options.pop("queues", None) or Worker(app).queues
    return Worker(app, queues=[*queues, extra], **options)


@contextlib.asynccontextmanager
async def running_worker(app: App, **options: Any) -> AsyncIterator[Worker]:
    """Run an in-process Worker for ``app`` until the block ends (graceful stop).

    In the busy two-queue variant it yields once the worker has run a noise task, so that
    the test's own deliveries interleave with noise from the start.
    """
    async with running(make_worker(app, **options), ready_timeout=20) as worker:
        if VARIANT.busy:

            async def noisy() -> bool:
                return worker.counters.succeeded > 0

            await eventually(noisy, what="the worker to run a noise task")
        yield worker


def _with_extra_queue(app_spec: str, args: Sequence[str], extra: str) -> list[str]:
    """``taskq-worker`` arguments that add ``extra`` to the queues the worker consumes."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg in ("-Q", "--queues"):
            out[i + 1] += f",{extra}"
            return out
        if arg.startswith("--queues="):
            out[i] += f",{extra}"
            return out
    try:
        queues = Worker(load_app(app_spec)).queues  # what the worker consumes without -Q
    except UsageError:
        return out  # the worker cannot import its app either, and exits at once
    return [*out, "--queues", ",".join([*queues, extra])]


class WorkerProcess:
    """A real ``taskq-worker`` subprocess, for signal and crash tests.

    In the two-queue variant it also consumes the extra queue.
    """

    # What the log says once the process is up: taskq's own line, "worker NAME consuming
    # QUEUES ...". Not just "consuming": aio-pika logs "Start to consuming queue" at DEBUG
    # for the reply queue, long before the work queues are declared or consumed (a poison
    # message published then was returned unroutable: 1 run in 6 of the fault suite).
    READY = re.compile(r"worker \S+ consuming ")
    SERVES_QUEUES = True  # a worker: in the two-queue variant it also consumes the extra queue

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
        if VARIANT.extra_queue is not None and self.SERVES_QUEUES:
            args = tuple(_with_extra_queue(app_spec, args, VARIANT.extra_queue))
        self.prefix = prefix
        self.log_path = Path(f"/tmp/{prefix}-worker-{uuid.uuid4().hex[:6]}.log")
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command(app_spec, args),
            cwd=cwd or REPO,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def command(self, app_spec: str, args: tuple[str, ...]) -> list[str]:
        # debug: the tests read per-task outcome lines, which a worker logs at DEBUG
        return [sys.executable, "-m", "taskq.cli.worker", app_spec, "--log-level", "debug", *args]

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    async def wait_ready(self, timeout: float = 30) -> None:
        """Wait until the worker consumes (and, in the busy two-queue variant, has run a noise
        task)."""

        async def consuming() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"worker exited with {self.process.returncode}:\n{self.output()}"
                )
            output = self.output()
            return self.READY.search(output) is not None and (
                not (VARIANT.busy and self.SERVES_QUEUES) or f"{noise.NOISE_TASK}[" in output
            )

        await eventually(consuming, timeout=timeout, what=f"{self.READY.pattern!r} in the log")

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    async def wait_exit(self, timeout: float = 60) -> int:
        async def exited() -> bool:
            return self.process.poll() is not None

        await eventually(exited, timeout=timeout, interval=0.05, what="worker to exit")
        return self.process.returncode

    def worker_names(self) -> list[str]:
        """The names of the workers this process ran (from their "consuming" log lines)."""
        return re.findall(r"worker (\S+) consuming", self.output())

    def kill(self) -> None:
        """Stop the worker if it still runs, and delete its log.

        Two signals, so it stops at once without waiting for its running tasks, but through
        its own shutdown, which lets coverage write the process's data; SIGKILL if it hangs.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process.returncode != 0:
            ABANDONED.setdefault(self.prefix, set()).update(
                presence_queue(self.prefix, name) for name in self.worker_names()
            )
        self._log.close()
        if not os.environ.get("TASKQ_TEST_KEEP_LOGS"):  # set it to read the logs of a failure
            self.log_path.unlink(missing_ok=True)


# -- the ``taskq`` command --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Cli:
    """What one ``taskq`` command did."""

    code: int
    out: str
    err: str

    def __iter__(self) -> Iterator[Any]:  # code, out, err = await run_taskq(...)
        return iter((self.code, self.out, self.err))


async def run_taskq(
    prefix: str,
    *args: str,
    app: str | None = None,
    env: Mapping[str, str] | None = None,
    stdin: int | None = None,
    broker: str = BROKER,
) -> Cli:
    """Run ``taskq [--app APP] ARGS`` for ``prefix`` in a subprocess (stdin /dev/null unless a
    file descriptor is given). A traceback on stderr always fails the test."""
    full_env = {
        **os.environ,
        "TASKQ_PREFIX": prefix,
        "TASKQ_BROKER": broker,
        "PYTHONPATH": str(REPO),
        **(env or {}),
    }
    full_env.pop("CI", None)  # commands that ask for confirmation refuse outright under CI
    app_args = ["--app", app] if app else []
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "taskq.cli.admin", *app_args, *args,
        cwd=REPO, env=full_env,
        stdin=asyncio.subprocess.DEVNULL if stdin is None else stdin,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    code = await process.wait()
    assert b"Traceback" not in err, err.decode()
    return Cli(code, out.decode(), err.decode())


class BeatProcess(WorkerProcess):
    """A real ``taskq --app APP beat`` scheduler subprocess."""

    READY = re.compile("bidding for")
    SERVES_QUEUES = False

    @property
    def active(self) -> bool:
        """Whether the log's latest word on the lease is that this scheduler holds it (a
        broker restart can take it away without a kill)."""
        text = self.output()
        return text.rfind("is active since") > text.rfind("lost the lease")

    @property
    def since(self) -> dt.datetime:
        """When the scheduler last became active, as its log says."""
        found = re.findall(r"is active since (\S+)", self.output())
        assert found, self.output()
        return dt.datetime.fromisoformat(found[-1].replace("Z", "+00:00"))

    def command(self, app_spec: str, args: tuple[str, ...]) -> list[str]:
        return [sys.executable, "-m", "taskq.cli.admin", "--app", app_spec, "beat",
                "--log-level", "info", *args]  # fmt: skip


def meta_of(body: bytes) -> dict[str, Any]:
    """The schema 2 metadata map of a task message's body (attempt ``a``, deliveries ``d``...;
    a key is absent when it has its default)."""
    schema, _args, _kwargs, meta = codec.unpack(body)
    assert schema == 2, f"not a schema 2 body: {body!r}"
    return dict(meta)
