"""The 3-node test cluster of ``scripts/cluster.sh``, seen from tests and the fault suite.

``Cluster.from_env()`` reads the same settings as the script (``TASKQ_CLUSTER_NAME``,
``TASKQ_CLUSTER_PORT_BASE``, ``TASKQ_CLUSTER_DIR``); ``ensure_up`` runs ``cluster.sh up`` when
a node's AMQP port does not answer. Node numbers are 1, 2 and 3; node 1 also speaks TLS.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "cluster.sh"
NODES = (1, 2, 3)
_GUEST = "Basic " + base64.b64encode(b"guest:guest").decode()


@dataclasses.dataclass(frozen=True)
class Cluster:
    """Where the cluster's nodes listen and keep their files."""

    name: str = "taskq"
    port_base: int = 5700
    dir: Path = Path("/tmp/taskq-cluster")

    @classmethod
    def from_env(cls) -> Cluster:
        name = os.environ.get("TASKQ_CLUSTER_NAME", "taskq")
        base = int(os.environ.get("TASKQ_CLUSTER_PORT_BASE", "5700"))
        directory = Path(os.environ.get("TASKQ_CLUSTER_DIR", f"/tmp/{name}-cluster"))
        return cls(name, base, directory)

    def node(self, n: int) -> str:
        """Node ``n``'s Erlang node name, e.g. ``taskq1@localhost``."""
        return f"{self.name}{n}@localhost"

    def number(self, node: str) -> int:
        """The number of the node named ``node``."""
        for n in NODES:
            if self.node(n) == node:
                return n
        raise ValueError(f"{node} is not a node of the cluster {self.name}")

    def amqp_port(self, n: int) -> int:
        return self.port_base + n

    def mgmt_port(self, n: int) -> int:
        return self.port_base + 10000 + n

    @property
    def tls_port(self) -> int:
        return self.port_base + 11

    def url(self, n: int) -> str:
        """The AMQP URL of node ``n`` (guest works from loopback only: ``localhost``)."""
        return f"amqp://guest:guest@localhost:{self.amqp_port(n)}/"

    def urls(self, *order: int) -> list[str]:
        """The AMQP URLs of the nodes, in ``order`` (default 1, 2, 3)."""
        return [self.url(n) for n in order or NODES]

    def tls_file(self, name: str) -> Path:
        """A file of ``$DIR/tls``: ca.pem, client.pem, client.key, wrong-ca.pem, ..."""
        return self.dir / "tls" / name

    def tls_url(self, **params: str) -> str:
        """The amqps URL of node 1 with ``params`` as its query (cafile=..., verify=...)."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return f"amqps://guest:guest@localhost:{self.tls_port}/{query}"

    # -- the script ------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "TASKQ_CLUSTER_NAME": self.name,
            "TASKQ_CLUSTER_PORT_BASE": str(self.port_base),
            "TASKQ_CLUSTER_DIR": str(self.dir),
        }

    def command(self, *args: str) -> list[str]:
        """The argv of ``cluster.sh ARGS`` (run it with ``env()``)."""
        return ["bash", str(SCRIPT), *args]

    def run(self, *args: str, timeout: float = 300) -> str:
        """Run ``cluster.sh ARGS``; its stdout, or RuntimeError with its output."""
        done = subprocess.run(
            self.command(*args), env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"cluster.sh {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def answers(self) -> bool:
        """Whether every node accepts TCP connections on its AMQP port."""
        return all(_port_open(self.amqp_port(n)) for n in NODES)

    def ensure_up(self) -> bool:
        """Start the cluster unless every node answers; True if this call started it."""
        if self.answers() and self.tls_file("ca.pem").is_file():
            return False
        self.run("up")
        return True

    # -- the management API ----------------------------------------------------------------

    def api(self, path: str, nodes: Sequence[int] = NODES, *, method: str = "GET") -> Any:
        """``method /api/<path>`` on the first of ``nodes`` that answers; its JSON (None
        when the reply has no body)."""
        errors = []
        for n in nodes:
            url = f"http://localhost:{self.mgmt_port(n)}/api/{path}"
            request = urllib.request.Request(url, method=method)
            request.add_header("Authorization", _GUEST)
            try:
                with urllib.request.urlopen(request, timeout=10) as reply:
                    body = reply.read()
                    return json.loads(body) if body else None
            except urllib.error.HTTPError as exc:
                if exc.code == 404 and method == "DELETE":
                    return None  # already gone
                raise RuntimeError(f"{method} {url}: {exc}") from exc
            except (OSError, urllib.error.URLError) as exc:
                errors.append(f"node {n}: {exc}")
        raise RuntimeError(f"no management API answered for {path}: {'; '.join(errors)}")

    def named(self, kind: str, prefix: str) -> list[str]:
        """The ``kind`` ("queues" or "exchanges") named ``prefix`` or ``prefix.*``."""
        names = [str(item["name"]) for item in self.api(f"{kind}/%2F?columns=name")]
        return [name for name in names if name == prefix or name.startswith(f"{prefix}.")]

    def delete_prefix(self, prefix: str) -> None:
        """Delete every queue and exchange of ``prefix`` (one at a time: RabbitMQ 3.10 fails
        on exchanges bound to each other deleted at the same moment)."""
        for kind in ("queues", "exchanges"):
            for name in self.named(kind, prefix):
                self.api(f"{kind}/%2F/{urllib.parse.quote(name, safe='')}", method="DELETE")

    def queue_leader(self, queue: str) -> int:
        """The number of the node that leads the quorum queue ``queue`` (full name);
        RuntimeError if it is not a quorum queue."""
        info = self.api(f"queues/%2F/{urllib.parse.quote(queue, safe='')}")
        if info.get("type") != "quorum" or "leader" not in info:
            raise RuntimeError(f"{queue} is a {info.get('type')} queue, not a quorum queue")
        return self.number(str(info["leader"]))


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False
