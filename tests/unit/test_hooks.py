"""The hook chain without a broker: which methods it calls, in which order, and how it keeps
errors; the headers a received message carries for the hooks."""

from __future__ import annotations

import logging

import pytest

from taskq import ConfigurationError, Hook, Sending, SendRefused
from taskq.hooks import Hooks
from taskq.message import Envelope, user_headers


class Before(Hook):
    def __init__(self, name: str, seen: list[str]) -> None:
        self.name, self.seen = name, seen

    async def before_send(self, send: Sending) -> None:
        self.seen.append(f"{self.name}.before")

    async def after_send(self, send: Sending) -> None:
        self.seen.append(f"{self.name}.after")


def sending() -> Sending:
    return Sending(Envelope("id", "task", "default", [], {}), {}, None)


def test_an_empty_chain_has_nothing_to_call() -> None:
    chain = Hooks([Hook(), Hook()])  # the base class overrides nothing
    assert len(chain) == 2
    for method in ("before_send", "after_send", "on_process_init", "on_worker_start",
                   "on_worker_stop", "on_received", "before_run", "after_run", "on_success",
                   "on_failure", "on_retry", "on_dead_letter", "on_cancel"):  # fmt: skip
        assert getattr(chain, method) == (), method


async def test_before_in_order_after_in_reverse() -> None:
    seen: list[str] = []
    chain = Hooks([Before("a", seen)])
    chain.add(Before("b", seen))
    assert len(chain.on_success) == 0
    await chain.before_sending(sending())
    await chain.notify(chain.after_send, sending())
    assert seen == ["a.before", "b.before", "b.after", "a.after"]


async def test_errors_are_counted_and_logged_refusals_pass_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Hook):
        async def after_send(self, send: Sending) -> None:
            raise KeyError("bug")

        async def before_send(self, send: Sending) -> None:
            if send.envelope.task_name == "refused":
                raise SendRefused("no")
            raise KeyError("bug")

    seen: list[str] = []
    chain = Hooks([Broken(), Before("after-broken", seen)])
    await chain.before_sending(sending())
    await chain.notify(chain.after_send, sending())
    assert chain.errors == 2
    assert seen == ["after-broken.before", "after-broken.after"]
    assert [r.getMessage() for r in caplog.records if r.name == "taskq.hooks"] == [
        "hook test_errors_are_counted_and_logged_refusals_pass_through.<locals>.Broken"
        f".{method} failed; carrying on without it"
        for method in ("before_send", "after_send")
    ]
    assert all(r.levelno == logging.ERROR for r in caplog.records if r.name == "taskq.hooks")
    refused = Sending(Envelope("id", "refused", "default", [], {}), {}, None)
    with pytest.raises(SendRefused):
        await chain.before_sending(refused)
    assert chain.errors == 2  # a refusal is not an error of the hook


def test_only_hooks_join_a_chain_and_removal_updates_it() -> None:
    chain = Hooks()
    with pytest.raises(ConfigurationError, match="not a taskq"):
        chain.add(object())  # type: ignore[arg-type]
    hook = Before("a", [])
    chain.add(hook)
    assert len(chain.before_send) == 1
    chain.remove(hook)
    assert chain.before_send == () and len(chain) == 0


def test_received_headers_leave_out_taskqs_and_the_brokers() -> None:
    headers = {
        "traceparent": "00-abc",
        "x-request-id": "r1",
        "x-taskq-reason": "rejected",
        "x-death": [{"count": 1}],
        "x-first-death-queue": "q",
        "x-last-death-reason": "expired",
    }
    assert user_headers(headers) == {"traceparent": "00-abc", "x-request-id": "r1"}
