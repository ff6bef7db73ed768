"""Where the broker is: one or several AMQP URLs (the nodes of a cluster) and TLS.

``Settings.broker`` holds one URL or several separated by commas (a list in code). A
connection goes to the first URL that answers; a reconnect starts at the URL after the one
it lost, so that a client leaves a dead node at once instead of waiting for it.

TLS (``amqps://``) verifies the broker's certificate against the system's CAs, or against a
CA file given in the URL (``?cafile=``) or in the ``tls_ca_file`` setting; a client
certificate comes from ``certfile``/``keyfile`` (or ``tls_cert_file``/``tls_key_file``).
``verify=false`` (or aiormq's ``no_verify_ssl=1``) turns verification off (tests only) and
``server_name=`` sets the name the certificate must carry when it is not the URL's host.

Two more query parameters are the ones aiormq/aio-pika read too, so one URL serves both
clients: ``heartbeat=`` (seconds; what taskq proposes to the broker, 0 turns heartbeats off)
and ``name=`` (put in front of the name taskq gives each connection, as the broker shows it).
Any other parameter is refused: a misspelt ``heartbeet=`` must not be silently ignored.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
import urllib.parse
from collections.abc import Iterable, Sequence

from ..exceptions import ConfigurationError
from ..redact import redact_url

DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671}
TLS_PARAMETERS = frozenset(
    {"cafile", "certfile", "keyfile", "verify", "no_verify_ssl", "server_name"}
)
CONNECTION_PARAMETERS = frozenset({"heartbeat", "name"})
PARAMETERS = TLS_PARAMETERS | CONNECTION_PARAMETERS
MAX_HEARTBEAT = 65535  # the field is a short in Connection.TuneOk
_FALSE = frozenset({"0", "false", "no", "off"})
# The alerts a TLS server sends when it wants a client certificate it did not get (or did
# not like); any other failure (WRONG_VERSION_NUMBER, an EOF) is a peer that does not speak
# TLS at all.
_CLIENT_CERTIFICATE_ALERTS = ("CERTIFICATE_REQUIRED", "HANDSHAKE_FAILURE", "BAD_CERTIFICATE",
                              "UNKNOWN_CA", "CERTIFICATE_UNKNOWN")  # fmt: skip


def split_urls(value: str | Iterable[str]) -> tuple[str, ...]:
    """The broker URLs of a setting: a comma-separated string or a sequence of URLs
    (a password holding a comma must be percent-encoded: ``%2C``)."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    urls = tuple(part.strip() for part in parts if part.strip())
    if not urls:
        raise ConfigurationError("broker: give at least one amqp:// or amqps:// URL")
    return urls


@dataclasses.dataclass(frozen=True, slots=True)
class TlsFiles:
    """The TLS files that apply to every ``amqps://`` URL that does not name its own."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoint:
    """One broker node: where to connect and how to log in."""

    host: str
    port: int
    user: str
    password: str
    vhost: str
    tls: ssl.SSLContext | None
    server_name: str | None
    shown: str
    """The URL with its password redacted, for messages."""
    heartbeat: int | None = None
    """Seconds asked for in the URL (``heartbeat=``; 0: none), or None: the broker's."""
    client_name: str | None = None
    """``name=`` of the URL: put in front of the connection names taskq gives."""

    @property
    def location(self) -> str:
        """``host:port/vhost``: which broker this is, without credentials."""
        return f"{self.host.lower()}:{self.port}/{self.vhost.lstrip('/')}"


def parse_endpoint(url: str, defaults: TlsFiles = TlsFiles()) -> Endpoint:
    """The Endpoint of one ``amqp://`` or ``amqps://`` URL; ConfigurationError if it is not
    one, or if its TLS files cannot be loaded."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        raise ConfigurationError(f"not an AMQP URL: {redact_url(url)}")
    given = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = {name: value for name, value in given if value}  # a blank one: not given
    path = urllib.parse.unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    shown = redact_url(urllib.parse.urlunsplit(parts._replace(query="")))
    unknown = sorted({name for name, _ in given} - PARAMETERS)
    if unknown:
        raise ConfigurationError(
            f"unknown parameter {', '.join(unknown)} in broker URL {shown}; "
            f"accepted: {', '.join(sorted(PARAMETERS))}"
        )
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError as exc:
        raise ConfigurationError(f"bad port in broker URL {shown}: {exc}") from None
    tls = None
    if parts.scheme == "amqps":
        tls = tls_context(
            ca_file=query.get("cafile", defaults.ca_file),
            cert_file=query.get("certfile", defaults.cert_file),
            key_file=query.get("keyfile", defaults.key_file),
            verify=_verify(query),
            where=shown,
        )
    elif TLS_PARAMETERS & query.keys():
        raise ConfigurationError(f"TLS parameters need an amqps:// URL: {shown}")
    return Endpoint(
        host=parts.hostname or "localhost",
        port=port,
        user=urllib.parse.unquote(parts.username or "guest"),
        password=urllib.parse.unquote(parts.password or "guest"),
        vhost=path or "/",
        tls=tls,
        server_name=query.get("server_name"),
        shown=shown,
        heartbeat=_heartbeat(query.get("heartbeat"), shown),
        client_name=query.get("name"),
    )


def _verify(query: dict[str, str]) -> bool:
    """Whether to verify the broker's certificate: ``verify=`` (taskq's) or ``no_verify_ssl=``
    (aiormq's spelling, inverted)."""
    if query.get("no_verify_ssl", "0").lower() not in _FALSE:
        return False
    return query.get("verify", "true").lower() not in _FALSE


def _heartbeat(value: str | None, shown: str) -> int | None:
    if value is None:
        return None
    try:
        seconds = int(value)
    except ValueError:
        seconds = -1
    if not 0 <= seconds <= MAX_HEARTBEAT:
        raise ConfigurationError(
            f"heartbeat={value!r} in broker URL {shown}: give whole seconds from 0 (no "
            f"heartbeats) to {MAX_HEARTBEAT}"
        )
    return seconds


def parse_endpoints(urls: Sequence[str], defaults: TlsFiles = TlsFiles()) -> tuple[Endpoint, ...]:
    """The Endpoints of ``urls``, in order."""
    return tuple(parse_endpoint(url, defaults) for url in urls)


def tls_context(
    *, ca_file: str | None, cert_file: str | None, key_file: str | None, verify: bool, where: str
) -> ssl.SSLContext:
    """A client TLS context: the broker's certificate checked against ``ca_file`` (the
    system's CAs if None), and a client certificate if ``cert_file`` is given."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    for path, what in ((ca_file, "CA"), (cert_file, "certificate"), (key_file, "key")):
        if path and not os.path.isfile(path):
            raise ConfigurationError(f"TLS {what} file {path} not found (for {where})")
    if key_file and not cert_file:
        raise ConfigurationError(f"a TLS key file needs a certificate file too ({where})")
    try:
        if ca_file:
            context.load_verify_locations(cafile=ca_file)
        if cert_file:
            context.load_cert_chain(cert_file, key_file or None)
    except (OSError, ssl.SSLError) as exc:
        # The message names the files and the reason, never their content.
        named = ", ".join(p for p in (ca_file, cert_file, key_file) if p)
        raise ConfigurationError(f"cannot load the TLS files {named} for {where}: {exc}") from None
    return context


def describe_tls_failure(exc: BaseException, where: str) -> str | None:
    """A clear message for a failed TLS handshake with ``where``, or None if ``exc`` is not
    one."""
    if not isinstance(exc, ssl.SSLError):
        return None
    reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate verification failed for RabbitMQ at {where}: {reason}; check "
            "the CA (cafile= in the URL or the tls_ca_file setting) and the name the "
            "broker's certificate carries (server_name= in the URL)"
        )
    if any(alert in str(reason).upper() for alert in _CLIENT_CERTIFICATE_ALERTS):
        return (
            f"TLS handshake with RabbitMQ at {where} failed: {reason}; the broker may require "
            "a client certificate (certfile=/keyfile= in the URL, or tls_cert_file/tls_key_file)"
        )
    return (
        f"TLS handshake with RabbitMQ at {where} failed: {reason}; the port may not be a TLS "
        "port (RabbitMQ listens for amqps:// on 5671 by default, for amqp:// on 5672)"
    )
