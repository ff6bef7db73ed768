"""TLS to the broker: node 1 of the test cluster (scripts/cluster.sh) listens with TLS,
verify_peer, a client certificate optional, with certificates of the script's test CA.

taskq connects over amqps:// with the CA given in the URL or in the settings, with and
without a client certificate; the broker's own view of the connections (management API) says
they are TLS and which carry the client certificate. A CA that did not sign the broker's
certificate fails with a clear error. No key and no password reaches a log, an error or the
settings' repr.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from taskq import App, BrokerUnavailable, ConfigurationError
from taskq.testing.polling import eventually
from tests.cluster_support import Cluster
from tests.support import running_worker

pytestmark = pytest.mark.one_queue_only  # the subject is the connection, not the queues

SECRET = "n0t-the-real-password"


def make_app(name: str, prefix: str, broker: str, **settings: Any) -> App:
    app = App(name, broker=broker, prefix=prefix, **settings)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    return app


def key_lines(cluster: Cluster) -> list[str]:
    """The base64 lines of the private keys the tests hand to taskq."""
    lines = []
    for name in ("client.key", "server.key"):
        text = cluster.tls_file(name).read_text()
        lines += [line for line in text.splitlines() if line and not line.startswith("-----")]
    return lines


def connections_of(cluster: Cluster, prefix: str) -> list[dict[str, Any]]:
    """The broker's connections whose connection_name contains ``prefix``."""
    listing = cluster.api("connections?columns=name,ssl,port,peer_cert_subject,client_properties")
    return [
        c
        for c in listing
        if prefix in str(c.get("client_properties", {}).get("connection_name", ""))
    ]


async def test_amqps_with_the_ca_and_with_a_client_certificate(
    cluster: Cluster, cluster_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ca = str(cluster.tls_file("ca.pem"))
    # The client: the CA in the URL, no client certificate.
    client = make_app(f"tls-client-{cluster_prefix}", cluster_prefix, cluster.tls_url(cafile=ca))
    # The worker: everything in the settings, with the client certificate.
    served = make_app(
        f"tls-worker-{cluster_prefix}",
        cluster_prefix,
        cluster.tls_url(),
        tls_ca_file=ca,
        tls_cert_file=str(cluster.tls_file("client.pem")),
        tls_key_file=str(cluster.tls_file("client.key")),
    )
    async with client, running_worker(served, name=f"tls-worker-{cluster_prefix}"):
        handles = [await client.tasks["add"].delay(i, 1) for i in range(20)]
        assert [await h.result(timeout=30) for h in handles] == [i + 1 for i in range(20)]

        async def both_seen() -> bool:
            names = [c["client_properties"]["connection_name"] for c in seen()]
            return any("tls-client" in n for n in names) and any("tls-worker" in n for n in names)

        def seen() -> list[dict[str, Any]]:
            return connections_of(cluster, cluster_prefix)

        await eventually(both_seen, what="the TLS connections in the management API")
        for connection in seen():
            name = connection["client_properties"]["connection_name"]
            assert connection["ssl"] is True, connection
            assert connection["port"] == cluster.tls_port, connection
            subject = connection.get("peer_cert_subject") or ""
            if "tls-worker" in name:
                assert f"CN={cluster.name}-client" in subject, connection
            else:
                assert not subject, connection
    logged = caplog.text + repr(client.settings) + repr(served.settings) + repr(served)
    assert not [line for line in key_lines(cluster) if line in logged]


async def test_a_wrong_ca_fails_with_a_clear_error(
    cluster: Cluster, cluster_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = cluster.tls_url(
        cafile=str(cluster.tls_file("wrong-ca.pem")),
        certfile=str(cluster.tls_file("client.pem")),
        keyfile=str(cluster.tls_file("client.key")),
    ).replace("guest:guest@", f"guest:{SECRET}@")
    app = make_app(f"tls-wrong-{cluster_prefix}", cluster_prefix, url, connect_timeout=5)
    with pytest.raises(BrokerUnavailable) as failure:
        async with app:
            pass
    text = str(failure.value)
    assert "certificate verification failed" in text
    assert "tls_ca_file" in text and "cafile=" in text
    assert f"localhost:{cluster.tls_port}" in text
    shown = f"{text}\n{caplog.text}\n{app.settings!r}\n{app!r}"
    assert SECRET not in shown
    assert not [line for line in key_lines(cluster) if line in shown]


async def test_without_the_ca_the_system_store_rejects_the_test_certificate(
    cluster: Cluster, cluster_prefix: str
) -> None:
    # No cafile: the system's CAs do not know the test CA; verify=false is the only way in.
    with pytest.raises(BrokerUnavailable, match="certificate verification failed"):
        async with make_app("tls-system", cluster_prefix, cluster.tls_url(), connect_timeout=5):
            pass
    async with make_app("tls-noverify", cluster_prefix, cluster.tls_url(verify="false")) as app:
        assert app.is_open


def test_the_settings_repr_shows_file_names_and_no_password(cluster: Cluster) -> None:
    url = cluster.tls_url(
        certfile=str(cluster.tls_file("client.pem")), keyfile=str(cluster.tls_file("client.key"))
    )
    app = App(
        "tls-repr",
        broker=url.replace("guest:guest@", f"guest:{SECRET}@"),
        tls_ca_file=str(cluster.tls_file("ca.pem")),
    )
    shown = f"{app.settings!r} {app!r} {app.settings.redacted_broker()}"
    assert SECRET not in shown
    assert "client.key" in repr(app.settings)  # the path is fine to show, its content is not
    assert not [line for line in key_lines(cluster) if line in shown]


def test_a_bad_tls_setting_error_shows_no_password(cluster: Cluster) -> None:
    # A key file without a certificate file is refused while the settings are read.
    url = cluster.tls_url(keyfile=str(cluster.tls_file("client.key")))
    with pytest.raises(ConfigurationError) as failure:
        App("tls-bad", broker=url.replace("guest:guest@", f"guest:{SECRET}@"))
    assert "certificate file" in str(failure.value)
    assert SECRET[:6] not in str(failure.value)
