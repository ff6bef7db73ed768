"""Helpers for the dashboard tests: the real ``taskq dashboard`` in a subprocess, a local
webhook receiver, and polling with a deadline for synchronous (browser) tests."""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
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


class Reached:
    """A mixin for a test module's world: the ``url`` of its ``dashboard`` and GETs with its
    ``token`` (the world's own fields)."""

    dashboard: DashboardProcess
    token: str

    @property
    def url(self) -> str:
        return self.dashboard.url

    def get(self, path: str) -> httpx.Response:
        """GET ``path`` of the dashboard with the token."""
        return httpx.get(self.url + path, headers={"Authorization": f"Bearer {self.token}"})
