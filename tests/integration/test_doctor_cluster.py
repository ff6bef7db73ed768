"""``taskq doctor`` on the 3-node test cluster (scripts/cluster.sh): each problem is staged on
the cluster and the doctor must report it, then it is undone. Tests that change the whole
cluster (a stopped member, alarms, consumer_timeout) are ``serial``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import aio_pika
import pytest

from taskq import App
from taskq.testing.polling import eventually
from taskq.topology import Names, every_name
from tests.doctor_support import CLUSTER_ENV, Cluster, Report, doctor_cluster, run_doctor

__all__ = ["doctor_cluster"]  # the session fixture, used by name below
pytestmark = pytest.mark.one_queue_only


@pytest.fixture
def cluster(doctor_cluster: Cluster) -> Iterator[Cluster]:
    yield doctor_cluster


@pytest.fixture
async def cleanup(cluster: Cluster, prefix: str) -> AsyncIterator[None]:
    yield
    queues, exchanges = every_name(Names(prefix), ["default", "slow"])
    async with await aio_pika.connect(cluster.urls[0]) as connection:
        channel = await connection.channel()
        for name in queues:
            await channel.queue_delete(name)
        for name in exchanges:
            await channel.exchange_delete(name)


async def doctor(
    cluster: Cluster, prefix: str, *args: str, env: dict[str, str] | None = None
) -> Report:
    """The doctor on the cluster: node 1's URL, every management URL, rabbitmqctl of node 1."""
    return await run_doctor(
        prefix,
        "--management-url",
        ",".join(cluster.management),
        "--rabbitmqctl",
        cluster.rabbitmqctl,
        *args,
        broker=cluster.urls[0],
        env={**CLUSTER_ENV, **(env or {})},
    )


async def until(cluster: Cluster, prefix: str, found: Any, what: str, *args: str) -> Report:
    """Run the doctor until ``found(report)`` (the API's node stats lag a few seconds)."""

    async def attempt() -> Report | None:  # no rabbitmqctl: consumer_timeout is not the point
        report = await doctor(cluster, prefix, "--consumer-timeout", "0", *args)
        return report if found(report) else None

    result: Report = await eventually(attempt, timeout=60, interval=1, what=what)
    return result


async def test_a_healthy_cluster_and_leaders_all_on_one_node(
    cluster: Cluster, prefix: str, cleanup: None
) -> None:
    # taskq declares quorum queues with the balanced leader locator; queues of the prefix
    # declared by another program from a client on node 1 (client-local) are all led there.
    async with App("doc", broker=cluster.urls[0], prefix=prefix, queue_type="quorum") as app:
        await app.transport.declare_work_queue("default")
    piled = [f"{prefix}.q.pile{i}" for i in range(6)]
    async with await aio_pika.connect(cluster.urls[0]) as connection:
        channel = await connection.channel()
        for name in piled:
            await channel.declare_queue(
                name,
                durable=True,
                arguments={"x-queue-type": "quorum", "x-queue-leader-locator": "client-local"},
            )
    try:
        report = await doctor(
            cluster, prefix, "--consumer-timeout", "0", env={"TASKQ_QUEUE_TYPE": "quorum"}
        )
    finally:
        async with await aio_pika.connect(cluster.urls[0]) as connection:
            channel = await connection.channel()
            for name in piled:
                await channel.queue_delete(name)
    assert report.status("management-api") == {"ok"} and report.status("cluster") == {"ok"}
    assert report.of("cluster")[0]["data"]["nodes"] == cluster.nodes
    assert report.status("feature-flags") == {"ok"} and report.status("alarms") == {"ok"}
    assert report.status("queue-arguments") == {"ok"}
    (leaders,) = report.of("quorum-leaders")
    assert leaders["status"] == "warn"
    counts = leaders["data"]["leaders"]
    assert counts[cluster.nodes[0]] >= 6 and counts[cluster.nodes[0]] > leaders["data"]["limit"]
    assert report.code == 0  # warnings only (the version and the leaders)


async def test_drift_and_ready_messages_without_consumers_fail(
    cluster: Cluster, prefix: str, cleanup: None
) -> None:
    async with App("doc", broker=cluster.urls[0], prefix=prefix) as app:  # classic queues
        await app.send("quick", 1)
        await app.send("quick", 2)
    # The operator switched to quorum queues: the existing classic queue has drifted.
    report = await doctor(
        cluster, prefix, "--consumer-timeout", "0", env={"TASKQ_QUEUE_TYPE": "quorum"}
    )
    assert report.code == 1
    drift = {f["data"]["queue"]: f for f in report.of("queue-arguments")}
    work = drift[f"{prefix}.q.default"]
    assert work["status"] == "fail"
    assert work["data"]["differences"]["x-queue-type"] == {"app": "quorum", "broker": "classic"}
    assert "x-queue-type: App declares 'quorum', broker has 'classic'" in work["detail"]
    (unconsumed,) = report.of("unconsumed-queues")
    assert unconsumed["status"] == "fail" and unconsumed["data"]["ready"] == 2


@pytest.mark.serial
@pytest.mark.timeout(300)
async def test_a_stopped_member_fails(cluster: Cluster, prefix: str) -> None:
    cluster.ctl(3, "stop_app")
    try:
        report = await until(
            cluster, prefix, lambda r: "fail" in r.status("cluster"), "node 3 reported stopped"
        )
        (down,) = report.of("cluster")
        assert down["data"]["node"] == cluster.nodes[2] and "not running" in down["detail"]
        assert report.code == 1
    finally:
        cluster.ctl(3, "start_app")
    await until(cluster, prefix, lambda r: r.status("cluster") == {"ok"}, "node 3 back")


@pytest.mark.serial
@pytest.mark.timeout(300)
async def test_memory_and_disk_alarms_fail(cluster: Cluster, prefix: str) -> None:
    cluster.ctl(2, "set_vm_memory_high_watermark", "0.00001")
    cluster.ctl(3, "set_disk_free_limit", "100000GB")
    try:
        report = await until(
            cluster, prefix, lambda r: len(r.of("alarms")) == 2, "both alarms reported"
        )
        alarms = {f["data"]["node"]: f for f in report.of("alarms")}
        assert "memory alarm" in alarms[cluster.nodes[1]]["detail"]
        assert "disk alarm" in alarms[cluster.nodes[2]]["detail"]
        assert {f["status"] for f in alarms.values()} == {"fail"} and report.code == 1
    finally:
        cluster.ctl(2, "set_vm_memory_high_watermark", "0.4")
        cluster.ctl(3, "set_disk_free_limit", "50MB")
    await until(cluster, prefix, lambda r: r.status("alarms") == {"ok"}, "alarms cleared")


@pytest.mark.serial
async def test_consumer_timeout_below_a_task_timeout_fails(cluster: Cluster, prefix: str) -> None:
    cluster.ctl(2, "eval", "application:set_env(rabbit, consumer_timeout, 1000).")
    try:
        report = await doctor(cluster, prefix)
    finally:
        cluster.ctl(2, "eval", "application:set_env(rabbit, consumer_timeout, 1800000).")
    timeouts = {f["data"]["task"]: f for f in report.of("consumer-timeout")}
    assert set(timeouts) == {"quick", "slow"}  # 5 s and 3600 s, over node 2's 1 s
    quick = timeouts["quick"]
    assert quick["status"] == "fail" and quick["data"]["consumer_timeout_ms"] == 1000
    assert cluster.nodes[1] in quick["data"]["source"]
    assert "consumer_timeout = 65000" in quick["detail"]
    assert report.code == 1
