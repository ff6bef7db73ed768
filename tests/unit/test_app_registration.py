"""@app.task registration, per-call options and scheduling; no broker involved."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
import types
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from taskq import App, RetryPolicy, SendOptions, Task, TaskCall, topology
from taskq.context import TaskContext, reset_current, set_current
from taskq.exceptions import (
    ConfigurationError,
    InvalidArguments,
    LifecycleError,
    TaskRegistrationError,
)
from taskq.sending import build_envelope, eta_and_delay

# Nothing is ever sent: 192.0.2.0/24 is TEST-NET-1 and no test opens the app.
UNREACHABLE = "amqp://guest:guest@192.0.2.1:1/"


@pytest.fixture
def app() -> App:
    return App("unit", broker=UNREACHABLE, prefix="tqunit")


def test_app_does_no_io_and_starts_closed(app: App) -> None:
    assert not app.is_open
    assert app.tasks == {}
    with pytest.raises(LifecycleError, match="not open"):
        _ = app.transport
    with pytest.raises(LifecycleError, match="not open"):
        _ = app.store


def test_app_with_unresolvable_host_constructs() -> None:
    app = App("x", broker="amqp://u:p@no-such-host.invalid:5672/")
    assert app.settings.broker.endswith("no-such-host.invalid:5672/")


# -- registration -------------------------------------------------------------------------------


def test_async_task(app: App) -> None:
    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    assert isinstance(add, Task)
    assert add.name == "add"
    assert add.config.is_async is True
    assert add.config.queue == "default"
    assert add.config.priority is None
    assert add.config.timeout is None
    assert add.config.retry is None
    assert app.tasks["add"] is add
    assert add.__name__ == "add"
    assert "add" in repr(add)


def test_sync_task_runs_directly(app: App) -> None:
    @app.task
    def upper(text: str) -> str:
        """Shout."""
        return text.upper()

    assert upper.config.is_async is False
    assert upper("hi") == "HI"
    assert upper.__doc__ == "Shout."


def test_task_options(app: App) -> None:
    policy = RetryPolicy(max_attempts=5)

    @app.task(name="mail.send", queue="emails", priority=5, timeout=30, retry=policy)
    async def send_email(to: str) -> None:
        pass

    cfg = send_email.config
    assert (cfg.name, cfg.queue, cfg.priority, cfg.timeout, cfg.retry) == (
        "mail.send",
        "emails",
        5,
        30,
        policy,
    )
    assert app.tasks["mail.send"] is send_email
    assert "send_email" not in app.tasks


def test_default_queue_from_settings() -> None:
    app = App("x", broker=UNREACHABLE, default_queue="low")

    @app.task
    async def noop() -> None:
        pass

    assert noop.config.queue == "low"


def test_duplicate_name(app: App) -> None:
    @app.task
    async def job() -> None:
        pass

    with pytest.raises(TaskRegistrationError, match="already registered"):

        @app.task
        async def job() -> None:
            pass

    async def other() -> None:
        pass

    with pytest.raises(TaskRegistrationError):
        app.task(name="job")(other)
    assert app.task(name="job2")(other).name == "job2"


async def _plain(x: int) -> int:
    return x


class Callable_:
    def __call__(self) -> None:
        pass


def _gen() -> Iterator[int]:
    yield 1


async def _agen() -> AsyncIterator[int]:
    yield 1


@pytest.mark.parametrize(
    "target",
    [
        lambda x: x,
        functools.partial(_plain, 1),
        Callable_,
        Callable_(),
        _gen,
        _agen,
        print,
        "not callable",
    ],
    ids=[
        "lambda",
        "partial",
        "class",
        "instance",
        "generator",
        "async-generator",
        "builtin",
        "str",
    ],
)
def test_cannot_register(app: App, target: Any) -> None:
    with pytest.raises(TaskRegistrationError):
        app.task(target)
    with pytest.raises(TaskRegistrationError):
        app.task(queue="q")(target)
    assert app.tasks == {}


def test_registration_error_is_a_type_error(app: App) -> None:
    with pytest.raises(TypeError):
        app.task(lambda: None)


@pytest.mark.parametrize("name", ["", "bad\nname", "x" * 256, "é" * 128])
def test_invalid_explicit_name(app: App, name: str) -> None:
    with pytest.raises(TaskRegistrationError):
        app.task(name=name)(_plain)


@pytest.mark.parametrize("queue", ["a.b", "a*", "#", "with space", "q\n"])
def test_invalid_queue_name(app: App, queue: str) -> None:
    with pytest.raises(ConfigurationError, match="queue"):
        app.task(queue=queue)(_plain)
    assert app.tasks == {}


@pytest.mark.parametrize("priority", [-1, 11, 256])
def test_out_of_range_priority(app: App, priority: int) -> None:
    with pytest.raises(ConfigurationError, match="priority"):
        app.task(priority=priority)(_plain)


@pytest.mark.parametrize("priority", [11, 256])
def test_out_of_range_retry_priority(app: App, priority: int) -> None:
    with pytest.raises(ConfigurationError, match="priority"):
        app.task(retry=RetryPolicy(priority=priority))(_plain)
    app.default_retry = RetryPolicy(priority=priority)
    with pytest.raises(ConfigurationError, match="priority"):
        app.task(_plain)
    assert app.tasks == {}


def test_a_retry_priority_needs_a_classic_queue() -> None:
    app = App("x", broker=UNREACHABLE, queue_type="quorum")
    with pytest.raises(ConfigurationError, match="quorum"):
        app.task(retry=RetryPolicy(priority=0))(_plain)
    assert app.task(retry=RetryPolicy())(_plain).config.retry == RetryPolicy()


def test_priority_range_follows_max_priority() -> None:
    app = App("x", broker=UNREACHABLE, max_priority=200)
    assert app.task(priority=200)(_plain).config.priority == 200


@pytest.mark.parametrize("timeout", [0, -1])
def test_invalid_timeout(app: App, timeout: float) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        app.task(timeout=timeout)(_plain)


# -- sending on a closed app --------------------------------------------------------------------


async def test_wrong_call_raises_invalid_arguments_even_when_closed(app: App) -> None:
    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(InvalidArguments):
        await add.delay(1)  # type: ignore[call-arg]
    with pytest.raises(InvalidArguments):
        await add.delay(1, 2, 3)  # type: ignore[call-arg]
    with pytest.raises(InvalidArguments):
        await add.options(priority=1).delay(1, z=2)  # type: ignore[call-arg]


async def test_correct_call_on_closed_app_raises_lifecycle_error(app: App) -> None:
    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(LifecycleError, match="not open"):
        await add.delay(1, 2)
    await app.close()  # closing a closed app is fine
    with pytest.raises(LifecycleError):
        await app.send("add", 1, 2)
    with pytest.raises(LifecycleError):
        app.handle("some-id")


async def test_configure_after_open_is_refused(app: App) -> None:
    app.configure(prefix="other")
    assert app.names.exchange == "other"
    transport = types.SimpleNamespace(names=app.names)
    app.attach(transport, object())  # type: ignore[arg-type]  # pretend it is open
    try:
        with pytest.raises(LifecycleError):
            app.configure(prefix="again")
    finally:
        app.detach()


# -- per-call options ---------------------------------------------------------------------------


def test_options_returns_a_frozen_view(app: App) -> None:
    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    call = add.options(priority=3, countdown=5)
    assert isinstance(call, TaskCall)
    assert call.task is add
    assert call.send_options == SendOptions(priority=3, countdown=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        call.send_options = SendOptions()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        call.send_options.priority = 9  # type: ignore[misc]
    assert add.options() is not add.options()


def test_task_call_options_refine_without_changing_the_original(app: App) -> None:
    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    first = add.options(priority=3, queue="fast")
    second = first.options(priority=7, task_id="fixed")
    assert second.send_options == SendOptions(priority=7, queue="fast", task_id="fixed")
    assert first.send_options == SendOptions(priority=3, queue="fast")
    assert second.task is add


def test_task_call_options_rejects_unknown_option(app: App) -> None:
    call = app.task(_plain).options()
    with pytest.raises(TypeError):
        call.options(prioriti=3)


def test_named_unknown_task(app: App) -> None:
    call = app.named("elsewhere.job")
    assert call.task.name == "elsewhere.job"
    assert call.task.config.queue == "default"
    # any arguments bind: the worker that knows the task validates them
    assert call.task.signature.bind((1, "a"), {"k": 2}) == ([1, "a"], {"k": 2})


def test_named_registered_task(app: App) -> None:
    task = app.task(_plain)
    assert app.named("_plain").task is task


# -- envelopes and scheduling ---------------------------------------------------------------------


def envelope_of(app: App, task: Task[Any, Any], **options: Any) -> Any:
    return build_envelope(app.settings, task, SendOptions(**options), ([1], {}), None, False)


def test_envelope_defaults(app: App) -> None:
    task = app.task(queue="emails", priority=4)(_plain)
    envelope, delay_ms = envelope_of(app, task)
    assert delay_ms == 0
    assert envelope.task_name == "_plain"
    assert envelope.queue == "emails"
    assert envelope.priority == 4
    assert envelope.attempt == 1
    assert envelope.args == [1]
    assert envelope.eta is None and envelope.expires is None
    assert envelope.parent_id is None and envelope.root_id is None
    assert len(envelope.task_id) == 36


def test_envelope_options_override_task_config(app: App) -> None:
    task = app.task(queue="emails", priority=4)(_plain)
    envelope, _ = envelope_of(app, task, priority=9, queue="urgent", task_id="my-id")
    assert (envelope.priority, envelope.queue, envelope.task_id) == (9, "urgent", "my-id")


def test_envelope_default_priority_from_settings() -> None:
    app = App("x", broker=UNREACHABLE, default_priority=2)
    envelope, _ = envelope_of(app, app.task(_plain))
    assert envelope.priority == 2


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"priority": 11}, "priority"),
        ({"queue": "a.b"}, "queue"),
        ({"eta": dt.datetime(2030, 1, 1)}, "timezone-aware"),
        ({"countdown": 5, "eta": dt.datetime(2030, 1, 1, tzinfo=dt.UTC)}, "not both"),
        ({"countdown": -1}, "countdown"),
        ({"countdown": math.inf}, "countdown"),
        ({"countdown": math.nan}, "countdown"),
        ({"countdown": topology.MAX_DELAY_SECONDS + 10}, "longest"),
        ({"expires": dt.datetime(2030, 1, 1)}, "timezone-aware"),
    ],
)
def test_invalid_send_options(app: App, options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        envelope_of(app, app.task(_plain), **options)


def test_countdowneta_and_delay() -> None:
    before = dt.datetime.now(dt.UTC)
    eta, delay_ms = eta_and_delay(SendOptions(countdown=30))
    after = dt.datetime.now(dt.UTC)
    assert eta is not None
    assert before + dt.timedelta(seconds=30) <= eta <= after + dt.timedelta(seconds=30)
    assert 29_000 <= delay_ms <= 30_000


def test_etaeta_and_delay() -> None:
    target = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    eta, delay_ms = eta_and_delay(SendOptions(eta=target))
    assert eta == target
    assert 3_590_000 <= delay_ms <= 3_600_000


def test_eta_in_another_timezone() -> None:
    target = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)).astimezone(
        dt.timezone(dt.timedelta(hours=-7))
    )
    _, delay_ms = eta_and_delay(SendOptions(eta=target))
    assert 590_000 <= delay_ms <= 600_000


def test_past_eta_means_now() -> None:
    eta, delay_ms = eta_and_delay(SendOptions(eta=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)))
    assert eta is not None
    assert delay_ms == 0


def test_noeta_and_delay() -> None:
    assert eta_and_delay(SendOptions()) == (None, 0)
    assert eta_and_delay(SendOptions(countdown=0))[1] == 0


def test_expires_in_seconds(app: App) -> None:
    before = dt.datetime.now(dt.UTC)
    envelope, _ = envelope_of(app, app.task(_plain), expires=60)
    assert envelope.expires is not None
    assert before + dt.timedelta(seconds=59) <= envelope.expires
    assert envelope.expires <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)


def test_parent_and_root_from_the_running_task(app: App) -> None:
    async def report(fraction: float, message: str | None) -> None:
        pass

    task = app.task(_plain)
    token = set_current(TaskContext("parent-id", "outer", "default", 1, None, report))
    try:
        envelope, _ = envelope_of(app, task)
    finally:
        reset_current(token)
    assert (envelope.parent_id, envelope.root_id) == ("parent-id", "parent-id")

    token = set_current(TaskContext("child-id", "outer", "default", 1, "root-id", report))
    try:
        envelope, _ = envelope_of(app, task)
    finally:
        reset_current(token)
    assert (envelope.parent_id, envelope.root_id) == ("child-id", "root-id")


def test_a_task_name_is_checked_in_bytes_of_utf8(app: App) -> None:
    # 150 characters, 300 bytes: the AMQP `type` property holds 255 bytes, not characters.
    with pytest.raises(TaskRegistrationError, match="300 bytes"):
        app.task(name="é" * 150)(_plain)
    namespace: dict[str, object] = {}
    exec("def " + "é" * 150 + "(x: int) -> int:\n    return x\n", namespace)
    (func,) = [value for key, value in namespace.items() if key != "__builtins__"]
    with pytest.raises(TaskRegistrationError, match="bytes of UTF-8"):
        app.task(func)  # type: ignore[call-overload]
    assert app.task(name="é" * 127)(_plain).name == "é" * 127  # 254 bytes fit


def test_a_task_id_longer_than_amqp_allows_fails_before_sending(app: App) -> None:
    task = app.task(name="ids")(_plain)
    with pytest.raises(ConfigurationError, match="task_id"):
        task.options(task_id="é" * 128)
