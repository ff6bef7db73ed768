"""``taskq doctor`` on the shared broker, which has no management API: the AMQP-only checks
find what is staged (ready messages without a consumer, arguments that drifted, a growing
dead-letter queue, a task timeout over consumer_timeout), the API is reported unreachable,
and a broker that does not answer at all is exit 3 without its password in the output."""

from __future__ import annotations

import asyncio
import contextlib

import aio_pika
import pytest

from taskq import App
from taskq.topology import LEGACY_DELAY, Names
from tests.doctor_support import UNREACHABLE_API, run_doctor
from tests.support import BROKER

pytestmark = pytest.mark.one_queue_only

NO_API = ("--management-url", UNREACHABLE_API)
NO_TIMEOUT = ("--consumer-timeout", "0")  # the slow task's hour fits: nothing else fails


async def test_ready_messages_without_a_consumer_fail_and_the_api_is_reported_missing(
    prefix: str, topology_cleanup: set[str]
) -> None:
    async with App("doctor-client", broker=BROKER, prefix=prefix) as app:
        for i in range(3):
            await app.send("quick", i)
    report = await run_doctor(prefix, *NO_API)
    assert report.code == 1, report.out
    (unconsumed,) = report.of("unconsumed-queues")
    assert unconsumed["status"] == "fail"
    assert unconsumed["data"] == {"queue": f"{prefix}.q.default", "ready": 3}
    (api,) = report.of("management-api")
    assert (
        api["status"] == "warn" and "rabbitmq-plugins enable rabbitmq_management" in api["detail"]
    )
    assert report.of("cluster") == [] and report.of("quorum-leaders") == []
    (version,) = report.of("version")  # from the AMQP handshake
    assert version["data"]["rabbitmq"].startswith("3.")


async def test_drifted_queue_arguments_fail_with_the_brokers_words(
    prefix: str, topology_cleanup: set[str]
) -> None:
    topology_cleanup.add("slow")
    connection = await aio_pika.connect(BROKER)
    async with connection:
        channel = await connection.channel()
        # The App declares x-max-priority 10 and a dead-letter exchange: this one has neither.
        await channel.declare_queue(
            f"{prefix}.q.slow", durable=True, arguments={"x-max-priority": 3}
        )
    report = await run_doctor(prefix, *NO_API)
    assert report.code == 1
    (drift,) = report.of("queue-arguments")
    assert drift["status"] == "fail" and drift["data"]["queue"] == f"{prefix}.q.slow"
    assert "x-max-priority" in drift["detail"] or "x-dead-letter" in drift["detail"]
    assert "received" in drift["detail"] and "current is" in drift["detail"]


async def test_a_growing_dead_letter_queue_warns(prefix: str, topology_cleanup: set[str]) -> None:
    async with App("doctor-client", broker=BROKER, prefix=prefix) as app:
        await app.transport.declare_work_queue("default")
    dead = f"{prefix}.q.default.dead"
    stop = asyncio.Event()

    async def trickle() -> None:  # dead letters keep arriving while the doctor samples
        async with await aio_pika.connect(BROKER) as connection:
            channel = await connection.channel()
            while not stop.is_set():
                await channel.default_exchange.publish(aio_pika.Message(b"x"), routing_key=dead)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.1)

    feeder = asyncio.create_task(trickle())
    try:
        report = await run_doctor(prefix, *NO_API, "--interval", "1.5", *NO_TIMEOUT)
    finally:
        stop.set()
        await feeder
    (grows,) = report.of("dead-letters")
    assert grows["status"] == "warn" and grows["data"]["queue"] == dead
    assert grows["data"]["after"] > grows["data"]["before"]
    assert report.code == 0  # a warning alone does not fail the run...
    strict = await run_doctor(prefix, *NO_API, "--strict", *NO_TIMEOUT)
    assert strict.code == 1  # ...unless --strict (the API's warning suffices here)


async def test_task_timeout_over_consumer_timeout_fails(
    prefix: str, topology_cleanup: set[str]
) -> None:
    report = await run_doctor(prefix, *NO_API, "--consumer-timeout", "60000")
    assert report.code == 1
    (slow,) = report.of("consumer-timeout")  # quick (5 s) fits, slow (3600 s) does not
    assert slow["status"] == "fail" and slow["data"]["task"] == "slow"
    assert (
        slow["data"]["suggested_ms"] == 3_660_000 and "consumer_timeout = 3660000" in slow["detail"]
    )


async def test_consumer_timeout_is_read_with_rabbitmqctl(
    prefix: str, topology_cleanup: set[str]
) -> None:
    # Reads (never sets) the shared node's value: its default, 30 minutes.
    report = await run_doctor(prefix, *NO_API, "--node", "rabbit@localhost")
    (slow,) = report.of("consumer-timeout")
    assert slow["status"] == "fail" and slow["data"]["consumer_timeout_ms"] == 1_800_000
    assert "rabbitmqctl -n rabbit@localhost" in slow["data"]["source"]


async def test_nothing_answering_is_exit_2_and_shows_no_password(prefix: str) -> None:
    secret = "pw-never-shown-9"
    broker = f"amqp://guest:{secret}@127.0.0.1:1/"
    report = await run_doctor(prefix, *NO_API, broker=broker, env={"TASKQ_CONNECT_TIMEOUT": "2"})
    assert report.code == 3
    assert [f["check"] for f in report.findings] == ["amqp", "management-api"]
    assert report.of("amqp")[0]["status"] == "fail"
    assert secret not in report.out + report.err
    table = await run_doctor(prefix, *NO_API, broker=broker)
    assert secret not in table.out


async def test_the_table_says_healthy_on_a_healthy_prefix(prefix: str) -> None:
    from tests.support import run_taskq

    done = await run_taskq(prefix, "doctor", "--management-url", UNREACHABLE_API, app=None)
    assert done.code == 0, done.out
    lines = done.out.splitlines()
    assert lines[0].split() == ["CHECK", "STATUS", "DETAIL"]
    assert lines[-1].startswith("healthy: 0 failed")


async def test_messages_in_the_old_binary_delay_levels_are_counted_with_how_to_remove_them(
    prefix: str, topology_cleanup: set[str]
) -> None:
    """Issue 25: a version before the base-16 delay queues left a message in its binary
    levels; doctor says it waits there (it drains by itself) and how to delete the levels."""
    names, legacy = Names(prefix), LEGACY_DELAY
    plan = legacy.declarations(names, quorum=False)
    connection = await aio_pika.connect(BROKER)
    async with connection:
        channel = await connection.channel()
        exchanges = {
            name: await channel.declare_exchange(name, "topic", durable=True)
            for name in [names.delivery, *plan.exchanges]
        }
        for name, arguments in plan.queues:
            await channel.declare_queue(name, durable=True, arguments=arguments)
        for queue, exchange, key in plan.queue_bindings:
            await (await channel.get_queue(queue)).bind(exchanges[exchange], key)
        for destination, source, key in plan.exchange_bindings:
            await exchanges[destination].bind(exchanges[source], key)
        hour = legacy.routing_key(3_600_000, "default")  # waits first in level 21
        await exchanges[legacy.entry(names, 3_600_000)].publish(
            aio_pika.Message(b"old", delivery_mode=aio_pika.DeliveryMode.PERSISTENT), hour
        )
    report = await run_doctor(prefix, *NO_API, *NO_TIMEOUT)
    (old,) = report.of("old-delay-levels")
    assert old["status"] == "ok" and old["data"] == {"waiting": 1}
    assert f"rabbitmqctl delete_queue {prefix}.delay.$L" in old["detail"]
