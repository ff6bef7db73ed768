"""What the ``taskq doctor`` tests share: running the command, reading its findings, and the
test cluster (scripts/cluster.sh) they stage cluster-wide problems on.

The cluster is the test command's one (tests.cluster_support: ``TASKQ_CLUSTER_NAME``, default
``taskq``, ports 5701-5703, management 15701-15703), started once per session if it is not up;
scripts/test.sh removes it at the end.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from tests.cluster_support import Cluster as CommonCluster
from tests.support import BROKER, REPO, run_taskq

DOCTOR_APP = "tests.apps.doctor_app:app"
UNREACHABLE_API = "http://127.0.0.1:1"  # nothing listens on port 1: the API is down for sure

_COMMON = CommonCluster.from_env()
CLUSTER_ENV = {
    "TASKQ_CLUSTER_NAME": _COMMON.name,
    "TASKQ_CLUSTER_PORT_BASE": str(_COMMON.port_base),
    "TASKQ_CLUSTER_DIR": str(_COMMON.dir),
}
CLUSTER_SCRIPT = str(REPO / "scripts" / "cluster.sh")


@dataclasses.dataclass(frozen=True)
class Report:
    """What one ``taskq doctor --json`` run said."""

    code: int
    findings: list[dict[str, Any]]
    out: str
    err: str

    def of(self, check: str) -> list[dict[str, Any]]:
        """The findings of ``check``."""
        return [f for f in self.findings if f["check"] == check]

    def status(self, check: str) -> set[str]:
        """The statuses ``check`` reported."""
        return {f["status"] for f in self.of(check)}


async def run_doctor(
    prefix: str,
    *args: str,
    broker: str = BROKER,
    app: str | None = DOCTOR_APP,
    env: Mapping[str, str] | None = None,
) -> Report:
    """``taskq [--app APP] doctor --json ARGS`` for ``prefix`` in a subprocess."""
    done = await run_taskq(prefix, "doctor", "--json", *args, app=app, broker=broker, env=env)
    findings = json.loads(done.out) if done.out.strip() else []
    return Report(done.code, findings, done.out, done.err)


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The test cluster: its AMQP URLs, management URLs and node names."""

    urls: list[str]
    management: list[str]
    nodes: list[str]

    @property
    def broker(self) -> str:
        """Every node's URL, comma-separated (what TASKQ_BROKER takes)."""
        return ",".join(self.urls)

    def ctl(self, node: int, *args: str, check: bool = True) -> str:
        """``rabbitmqctl`` against node ``node`` (1-3) with the cluster's cookie."""
        return cluster_script("ctl", str(node), *args, check=check)

    @property
    def rabbitmqctl(self) -> str:
        """A ``--rabbitmqctl`` command for the doctor: node 1's, with the cluster's cookie."""
        return f"bash {CLUSTER_SCRIPT} ctl 1"


def all_running() -> bool:
    """Whether ``cluster.sh status`` shows every node running as a member."""
    # rabbitmqctl on 3 nodes: a minute was not enough at a load average of 10.
    status = cluster_script("status", check=False, timeout=180)
    return status.count(" running (pid") == 3 and "running:" in status


def cluster_script(*args: str, check: bool = True, timeout: float = 300) -> str:
    """Run ``scripts/cluster.sh ARGS`` for this module's cluster; its stdout."""
    done = subprocess.run(
        ["bash", CLUSTER_SCRIPT, *args],
        env={**os.environ, **CLUSTER_ENV},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"cluster.sh {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


@pytest.fixture(scope="session")
def doctor_cluster() -> Iterator[Cluster]:
    """The doctor's test cluster, started if it is not up, left running afterwards."""
    yield cluster()


def cluster() -> Cluster:
    """Start the doctor's cluster unless all its nodes run, and describe it."""
    if not all_running():
        cluster_script("up")
    base = int(CLUSTER_ENV["TASKQ_CLUSTER_PORT_BASE"])
    name = CLUSTER_ENV["TASKQ_CLUSTER_NAME"]
    return Cluster(
        urls=cluster_script("urls").strip().split(","),
        management=[f"http://localhost:{base + 10000 + n}" for n in (1, 2, 3)],
        nodes=[f"{name}{n}@localhost" for n in (1, 2, 3)],
    )
