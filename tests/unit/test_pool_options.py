"""The process pool's pure parts: task options, the frames, where a child finds things."""

from __future__ import annotations

import datetime as dt

import pytest

from taskq import App, ConfigurationError, ErrorInfo
from taskq import outcome as oc
from taskq.codec import unpack
from taskq.exceptions import DecodeError
from taskq.pool import Job, app_spec_of
from taskq.pool.frames import HEADER, decode_outcome, encode_outcome
from taskq.pool.parent import function_spec
from tests.apps import poolapp


def test_pool_and_hard_timeout_are_kept_and_a_hard_timeout_means_a_process() -> None:
    app = App("t")

    @app.task(timeout=1, hard_timeout=2)
    def limited() -> None: ...

    @app.task(pool="thread")
    def threaded() -> None: ...

    @app.task
    def default() -> None: ...

    assert (limited.config.pool, limited.config.hard_timeout) == (None, 2)
    assert limited.config.runs_in_process("thread")
    assert not threaded.config.runs_in_process("process")
    assert default.config.runs_in_process("process")
    assert not default.config.runs_in_process("thread")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pool": "thread", "hard_timeout": 1}, "a thread cannot be killed"),
        ({"timeout": 5, "hard_timeout": 1}, "must not be shorter than its timeout"),
        ({"hard_timeout": 0}, "must be > 0"),
        ({"pool": "fork"}, "'thread' or 'process'"),
    ],
)
def test_options_that_cannot_be_honoured_are_refused(
    options: dict[str, object], message: str
) -> None:
    app = App("t")
    with pytest.raises(ConfigurationError, match=message):
        app.task(**options)(lambda_free)  # type: ignore[call-overload]
    assert "lambda_free" not in app.tasks


def lambda_free() -> None:
    """A plain function to register."""


def test_an_async_task_refuses_pool_options() -> None:
    app = App("t")

    async def on_loop() -> None: ...

    with pytest.raises(ConfigurationError, match="event loop"):
        app.task(pool="process")(on_loop)


def test_a_job_survives_its_frame() -> None:
    job = Job(
        "add", [1, "x"], {"k": b"\x00"}, 3, "id-1", "q", None,
        dt.datetime(2024, 1, 1, tzinfo=dt.UTC), 2, 1.5,
    )  # fmt: skip
    data = job.to_frame()
    (size,) = HEADER.unpack(data[: HEADER.size])
    assert size == len(data) - HEADER.size
    assert Job.from_message(unpack(data[HEADER.size :])) == job


@pytest.mark.parametrize(
    "outcome",
    [
        oc.Succeeded({"a": [1, 2]}),
        oc.RetryLater(2.5, ErrorInfo("E", "m", "tb")),
        oc.RetryLater(0.0, ErrorInfo("E", "m", "tb"), priority=0),
        oc.RetryLater(1.0, ErrorInfo("E", "m", "tb"), priority=7),
        oc.Failed(ErrorInfo("E", "m", "tb"), oc.HARD_TIMEOUT),
        oc.DeadLetter(oc.REJECTED, ErrorInfo("taskq.Reject", "no", "")),
    ],
)
def test_an_outcome_survives_its_encoding(outcome: oc.Outcome) -> None:
    assert decode_outcome(unpack(_packed(encode_outcome(outcome)))) == outcome


def _packed(value: object) -> bytes:
    from taskq.codec import pack

    return pack(value)


def test_garbage_is_not_an_outcome_or_a_job() -> None:
    with pytest.raises(DecodeError):
        decode_outcome(["nope", 1, "a", "b", "c"])
    with pytest.raises(DecodeError):
        decode_outcome(["retry", 2.5, "a", "b", "c"])  # no priority beside the delay
    with pytest.raises(DecodeError):
        Job.from_message(["run", "too few"])


def test_a_child_finds_the_app_and_module_level_functions_only() -> None:
    assert app_spec_of(poolapp.app) == "tests.apps.poolapp:app"
    assert function_spec(lambda_free) == f"{__name__}:lambda_free"

    def local() -> None: ...

    with pytest.raises(ConfigurationError, match="module level"):
        function_spec(local)
    inner = App("inner")

    @inner.task
    def hidden() -> None: ...

    with pytest.raises(ConfigurationError, match="app_spec"):
        app_spec_of(inner)
