"""Sentry reporting (taskq.integrations.sentry) against the real broker and a fake Sentry
ingestion endpoint on 127.0.0.1 (never the network): a final failure becomes one event with
the exception type and the task's tags, retries only when asked, and a secret argument never
appears in what is sent, whether it was passed by position or by keyword."""

from __future__ import annotations

import gzip
import http.server
import json
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk

from taskq import App, Retry, RetryPolicy, TaskFailed, current
from taskq.integrations.sentry import SentryHook
from tests.support import BROKER, running_worker

SECRET = "hunter2-s3cr3t"


class Ingest(http.server.BaseHTTPRequestHandler):
    """Records the body of every envelope posted to it (decompressed)."""

    received: list[bytes]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding:
            raise AssertionError(f"unexpected Content-Encoding {encoding}")
        self.received.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: no line per request on stderr."""


@pytest.fixture
def ingest() -> Iterator[list[bytes]]:
    """A Sentry SDK initialised with a DSN of a local fake endpoint; yields what it received."""
    received: list[bytes] = []
    handler = type("Handler", (Ingest,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    dsn = f"http://public@127.0.0.1:{server.server_address[1]}/1"
    # Only the hook reports: the default integrations patch logging, threads and http.client
    # for the rest of this test process.
    sentry_sdk.init(dsn=dsn, default_integrations=False)
    try:
        yield received
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)
        server.shutdown()
        server.server_close()
        thread.join()


def events(received: list[bytes]) -> list[dict[str, Any]]:
    """The events of the envelopes received (an envelope: a header line, then items, each an
    item header line and a payload line)."""
    sentry_sdk.flush(timeout=10)
    found = []
    for envelope in received:
        lines = envelope.split(b"\n")
        for header, payload in zip(lines[1::2], lines[2::2], strict=False):
            if json.loads(header).get("type") == "event":
                found.append(json.loads(payload))
    return found


def make_app(prefix: str, hook: SentryHook) -> App:
    app = App("sentry", broker=BROKER, prefix=prefix)
    app.add_hook(hook)

    @app.task(retry=RetryPolicy(max_attempts=2, delay=0, jitter=False))
    async def login(user: str, password: str) -> None:
        raise PermissionError(f"no entry for {user}")

    return app


@pytest.mark.parametrize("by_keyword", [False, True], ids=["positional", "keyword"])
async def test_a_final_failure_is_reported_with_the_task_and_without_the_secret(
    prefix: str, topology_cleanup: set[str], ingest: list[bytes], by_keyword: bool
) -> None:
    app = make_app(prefix, SentryHook())
    async with app, running_worker(app):
        if by_keyword:
            handle = await app.send("login", "bob", password=SECRET)
        else:
            handle = await app.send("login", "bob", SECRET)
        with pytest.raises(TaskFailed):
            await handle.result(timeout=20)
    found = events(ingest)
    ours = [e for e in found if e.get("tags", {}).get("taskq.task") == "login"]
    assert len(ours) == 1, found  # the final failure only: the retried attempt is not reported
    event = ours[0]
    assert event["level"] == "error"
    assert event["exception"]["values"][0]["type"] == "PermissionError"
    assert event["exception"]["values"][0]["value"] == "no entry for bob"
    assert event["tags"] | {"taskq.task_id": handle.id} == {
        "taskq.outcome": "failed",
        "taskq.task": "login",
        "taskq.task_id": handle.id,
        "taskq.queue": "default",
        "taskq.attempt": "2",
    }
    # The sender binds the call to the signature: a keyword argument travels by position.
    assert event["contexts"]["taskq"]["args"] == "'bob', '***'"
    assert ingest and all(SECRET.encode() not in raw for raw in ingest)


async def test_retries_are_reported_when_asked(
    prefix: str, topology_cleanup: set[str], ingest: list[bytes]
) -> None:
    app = App("sentry", broker=BROKER, prefix=prefix)
    app.add_hook(SentryHook(report_retries=True))

    @app.task
    async def flaky(token: str) -> int:
        if current().attempt == 1:
            raise Retry(delay=0)
        return current().attempt

    async with app, running_worker(app):
        assert await (await flaky.delay(SECRET)).result(timeout=20) == 2
    ours = [e for e in events(ingest) if e.get("tags", {}).get("taskq.task") == "flaky"]
    assert [(e["level"], e["tags"]["taskq.outcome"], e["tags"]["taskq.attempt"]) for e in ours] == [
        ("warning", "retried", "1")
    ]
    assert ours[0]["exception"]["values"][0]["type"] == "Retry"
    assert all(SECRET.encode() not in raw for raw in ingest)
