"""Broker URLs: lists and comma strings, TLS parameters and files, and their errors."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from taskq import App, ConfigurationError
from taskq.control import broker_location
from taskq.transport.endpoints import (
    TlsFiles,
    describe_tls_failure,
    parse_endpoint,
)

A = "amqp://u:pw1@node-a:5701/"
B = "amqp://u:pw2@node-b:5702/"


def test_a_list_and_a_comma_string_are_the_same_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    listed = App("a", broker=[A, B]).settings
    joined = App("b", broker=f"{A}, {B}").settings
    assert listed.broker_urls == joined.broker_urls == (A, B)
    monkeypatch.setenv("TASKQ_BROKER", f"{A},{B}")
    assert App("c").settings.broker_urls == (A, B)


def test_every_url_is_redacted() -> None:
    app = App("a", broker=[A, B])
    shown = repr(app) + repr(app.settings) + app.settings.redacted_broker()
    assert "pw1" not in shown and "pw2" not in shown
    assert "node-a" in shown and "node-b" in shown


def test_a_bad_url_in_the_list_fails_at_once() -> None:
    with pytest.raises(ConfigurationError, match="not an AMQP URL"):
        App("a", broker=[A, "http://x/"])
    with pytest.raises(ConfigurationError, match="at least one"):
        App("a", broker=" , ")


def test_broker_location_of_a_cluster_is_every_node() -> None:
    assert broker_location(f"{B},{A}") == "node-a:5701/,node-b:5702/"
    assert broker_location(A) == "node-a:5701/"


def test_plain_endpoint() -> None:
    endpoint = parse_endpoint("amqp://guest:guest@127.0.0.1/vh")
    assert (endpoint.port, endpoint.vhost, endpoint.tls) == (5672, "vh", None)


def test_tls_defaults_and_url_parameters() -> None:
    endpoint = parse_endpoint("amqps://u:p@broker.example/?server_name=rabbit.internal")
    assert endpoint.port == 5671
    assert endpoint.server_name == "rabbit.internal"
    assert endpoint.tls is not None and endpoint.tls.verify_mode == ssl.CERT_REQUIRED
    unverified = parse_endpoint("amqps://broker.example/?verify=false")
    assert unverified.tls is not None and unverified.tls.verify_mode == ssl.CERT_NONE
    assert "?" not in parse_endpoint("amqps://u:p@h/?verify=0").shown


def test_tls_parameters_need_amqps() -> None:
    with pytest.raises(ConfigurationError, match="amqps"):
        parse_endpoint("amqp://h/?cafile=/etc/ca.pem")


def test_missing_or_bad_tls_files_are_clear_and_show_no_content(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"nope\.pem not found"):
        parse_endpoint("amqps://h/", TlsFiles(ca_file=str(tmp_path / "nope.pem")))
    secret = tmp_path / "key.pem"
    secret.write_text("-----BEGIN PRIVATE KEY-----\nTOPSECRET\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigurationError) as failure:
        parse_endpoint(f"amqps://h/?certfile={secret}&keyfile={secret}")
    assert "TOPSECRET" not in str(failure.value)
    with pytest.raises(ConfigurationError, match="needs a certificate"):
        parse_endpoint("amqps://h/", TlsFiles(key_file=str(secret)))


def test_settings_tls_files_apply_to_amqps_urls(tmp_path: Path) -> None:
    app = App("a", broker="amqps://h/", tls_ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigurationError, match=r"missing\.pem"):
        app.settings.endpoints()


def test_tls_failures_are_described() -> None:
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    verify.verify_message = "unable to get local issuer certificate"
    text = describe_tls_failure(verify, "amqps://h:5671/")
    assert text is not None and "tls_ca_file" in text and "local issuer" in text
    wanted = ssl.SSLError(1, "alert")
    wanted.reason = "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    assert "client certificate" in (describe_tls_failure(wanted, "h") or "")
    plain = ssl.SSLError(1, "wrong version")
    plain.reason = "WRONG_VERSION_NUMBER"  # what a plain AMQP port answers to a ClientHello
    text = describe_tls_failure(plain, "h") or ""
    assert "not be a TLS port" in text and "client certificate" not in text
    assert describe_tls_failure(OSError("refused"), "h") is None


def test_the_parameters_aiormq_reads_too() -> None:
    endpoint = parse_endpoint("amqp://h/?heartbeat=7&name=billing")
    assert (endpoint.heartbeat, endpoint.client_name) == (7, "billing")
    assert parse_endpoint("amqp://h/?heartbeat=0").heartbeat == 0  # asked: no heartbeats
    assert parse_endpoint("amqp://h/").heartbeat is None  # not asked: negotiated
    unverified = parse_endpoint("amqps://h/?no_verify_ssl=1")
    assert unverified.tls is not None and unverified.tls.verify_mode == ssl.CERT_NONE
    verified = parse_endpoint("amqps://h/?no_verify_ssl=0")
    assert verified.tls is not None and verified.tls.verify_mode == ssl.CERT_REQUIRED


def test_an_unknown_parameter_is_named_even_when_blank() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown parameter frame_max.*accepted: "):
        parse_endpoint("amqp://u:secret@h/?frame_max=")
