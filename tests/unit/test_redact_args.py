"""Arguments shown by the dashboard, events and integrations: secrets redacted however passed."""

from __future__ import annotations

import inspect

from taskq.redact import call_repr


def login(user: str, password: str, *tokens: str, retries: int = 1) -> None:
    """A function with a secret parameter, a secret *args and a plain keyword."""


SIGNATURE = inspect.signature(login)


def test_a_secret_passed_by_position_is_redacted_when_the_signature_is_given() -> None:
    shown = call_repr(("bob", "hunter2"), {}, signature=SIGNATURE)
    assert shown == "'bob', '***'"
    assert "hunter2" not in shown


def test_a_secret_passed_by_keyword_is_redacted() -> None:
    shown = call_repr(("bob",), {"password": "hunter2", "retries": 3}, signature=SIGNATURE)
    assert shown == "'bob', password='***', retries=3"


def test_a_secret_var_positional_redacts_every_extra_argument() -> None:
    shown = call_repr(("bob", "pw", "t1", "t2"), {}, 200, SIGNATURE)
    assert shown == "'bob', '***', '***', '***'"


def test_without_a_signature_positional_arguments_are_hidden() -> None:
    # A sender binds keywords to positions: without the signature any of them may be a secret.
    assert call_repr(("bob", "hunter2"), {"token": "t", "n": 1}) == "'***', '***', token='***', n=1"


def test_a_task_s_arguments_are_redacted_through_its_signature() -> None:
    from taskq import App
    from taskq.task import args_repr

    app = App("redact")

    @app.task
    async def connect(user: str, api_key: str) -> None:
        """A task with a secret parameter."""

    bound, _ = connect.signature.bind(("bob",), {"api_key": "k-123"})  # keywords travel by position
    assert args_repr(connect, bound, {}) == "'bob', '***'"
    assert args_repr(None, bound, {}) == "'***', '***'"  # a task this process lacks
