"""Helpers for the dashboard tests: the real ``taskq dashboard`` in a subprocess, a local
webhook receiver, a reverse proxy that serves it under a sub-path, and polling with a deadline
for synchronous (browser) tests."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support import BROKER, REPO

T = TypeVar("T")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def until(check: Callable[[], T], *, timeout: float = 20.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns a truthy value; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} ({value!r})")
        time.sleep(0.05)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now: a dashboard restarted on it keeps its address (and
    a page its cookie), as in production."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def browser(world: Any) -> Iterator[Browser]:
    """Debian's Chromium driven by Playwright (no browser download), set up after the
    module's ``world`` so that the world's clean-up runs without Playwright's event loop in
    this thread."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, world: Any) -> Iterator[Page]:
    """A page logged in with ``?token=`` (the cookie it sets carries the session): ``world``
    has the dashboard's ``url`` and ``token``."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.goto(f"{world.url}/?token={world.token}")
    yield page
    context.close()


class DashboardProcess:
    """``taskq --app APP dashboard --port 0 ARGS`` in a subprocess; ``url`` once it listens."""

    def __init__(self, app_spec: str, prefix: str, state: Path, *args: str) -> None:
        self.command = [sys.executable, "-m", "taskq.cli.admin", "--app", app_spec, "dashboard",
                        "--port", "0", *args]  # fmt: skip
        self.env = {**os.environ, "TASKQ_PREFIX": prefix, "TASKQ_BROKER": BROKER,
                    "TASKQ_STATE_DIR": str(state), "PYTHONPATH": str(REPO)}  # fmt: skip
        self.log_path = state / f"dashboard-{time.monotonic_ns()}.log"
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        """Start it and wait until it listens; return its base URL (no trailing slash)."""
        log = self.log_path.open("ab")
        offset = log.tell()  # a restart appends: look only at what this run prints
        self.process = subprocess.Popen(
            self.command,
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

        def listening() -> str | None:
            assert self.process is not None
            if self.process.poll() is not None:
                code = self.process.returncode
                raise AssertionError(f"dashboard exited {code}:\n{self.output()}")
            found = re.findall(r"taskq dashboard on (http://\S+)/ ", self.output()[offset:])
            return found[-1] if found else None

        self.url = until(listening, timeout=30, what="the dashboard to listen")
        return self.url

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, then its exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


class OperatorApi:
    """A test world's calls to its dashboard's API as the operator (a mixin: the world has
    ``dashboard`` and ``token``)."""

    dashboard: DashboardProcess
    token: str

    @property
    def url(self) -> str:
        return self.dashboard.url

    def get(self, path: str) -> httpx.Response:
        """GET ``path`` of the dashboard with the token."""
        return httpx.get(self.url + path, headers={"Authorization": f"Bearer {self.token}"})

    def api(self, path: str) -> Any:
        """GET ``path``'s JSON (an HTTP error fails)."""
        response = self.get(path)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict[str, Any], token: str | None = None) -> httpx.Response:
        """POST ``body`` as JSON to ``path`` with ``token`` (the operator's by default)."""
        bearer = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.post(self.url + path, json=body, headers=bearer)


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that keeps the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.received = received
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def matching(self, status: str, rule: str, subject: str | None = None) -> list[dict[str, Any]]:
        """The bodies received for ``rule`` with ``status`` (and ``subject``)."""
        return [
            body for body in list(self.received)
            if body["status"] == status and body["alert"]["rule"] == rule
            and (subject is None or body["alert"]["subject"] == subject)
        ]  # fmt: skip

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class PrefixProxy:
    """A reverse proxy on 127.0.0.1 that serves ``upstream`` under ``prefix``, as nginx's
    ``location /taskq/ { proxy_pass http://127.0.0.1:PORT/; }`` does: it strips the prefix,
    sends ``Host: 127.0.0.1:PORT`` (not the browser's), adds ``X-Forwarded-*`` headers, passes
    the response through as it comes (server-sent events too) and redirects ``/taskq`` to
    ``/taskq/``. Anything outside the prefix gets a 404. It runs its own event loop in a
    thread (the tests are synchronous) and keeps every request target it saw (``seen``) and
    every ``Location`` it passed back (``locations``). ``port`` is known at once, so that the
    dashboard can be told its public origin before it starts; set ``upstream`` then."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.upstream: tuple[str, int] | None = None
        self.seen: list[str] = []
        self.locations: list[str] = []
        # The connections' tasks: asyncio keeps none once the browser hung up, and an event
        # stream's task then waits on the upstream alone (garbage, and a ResourceWarning).
        self.serving: set[asyncio.Task[None]] = set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> asyncio.Server:
        return await asyncio.start_server(self._serve, sock=self.listener)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One request per connection (every response says ``Connection: close``)."""
        task = asyncio.current_task()
        assert task is not None
        self.serving.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            self.seen.append(target)
            if target == self.prefix or target.startswith(self.prefix + "?"):
                rest = target[len(self.prefix) :]
                writer.write(_answer(301, f"Location: {self.prefix}/{rest}\r\n"))
            elif not target.startswith(self.prefix + "/"):
                writer.write(_answer(404))
            else:
                await self._forward(method, target[len(self.prefix) :], head, reader, writer)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass  # the browser went away (a page left, an event stream closed)
        finally:
            writer.close()
            self.serving.discard(task)

    async def _forward(
        self, method: str, target: str, head: bytes, reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:  # fmt: skip
        assert self.upstream is not None, "set the proxy's upstream first"
        host, port = self.upstream
        fields = _fields(head)
        body = await reader.readexactly(int(fields.get("content-length", "0")))
        dropped = {"host", "connection", "keep-alive", "proxy-connection"}
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close",
                 f"X-Forwarded-Host: 127.0.0.1:{self.port}", "X-Forwarded-Proto: http",
                 f"X-Forwarded-Prefix: {self.prefix}", "X-Forwarded-For: 127.0.0.1"]  # fmt: skip
        lines += [line for line in _lines(head) if line.split(":", 1)[0].lower() not in dropped]
        up_reader, up_writer = await asyncio.open_connection(host, port)
        try:
            up_writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            await up_writer.drain()
            answer = await up_reader.readuntil(b"\r\n\r\n")
            if "location" in (answered := _fields(answer)):
                self.locations.append(answered["location"])
            kept = [line for line in _lines(answer) if not line.lower().startswith("connection:")]
            status = answer.split(b"\r\n", 1)[0].decode("latin-1")
            passed = "\r\n".join([status, *kept, "Connection: close"]) + "\r\n\r\n"
            writer.write(passed.encode("latin-1"))
            while chunk := await up_reader.read(65536):  # as it comes: events are not held
                writer.write(chunk)
                await writer.drain()
        finally:
            up_writer.close()

    def outside(self) -> list[str]:
        """The request targets seen outside the prefix."""
        return [t for t in self.seen if not t.startswith(self.prefix + "/")]

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            serving = list(self.serving)
            for task in serving:
                task.cancel()
            await asyncio.gather(*serving, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _lines(head: bytes) -> list[str]:
    """The header lines of an HTTP head (without its first line)."""
    return [line for line in head.decode("latin-1").split("\r\n")[1:] if line]


def _fields(head: bytes) -> dict[str, str]:
    return {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in _lines(head))
    }


def _answer(status: int, headers: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status} -\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
    )
