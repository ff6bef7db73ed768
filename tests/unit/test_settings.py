"""Settings precedence, validation, and keeping passwords out of reprs and logs."""

from __future__ import annotations

import logging
import os

import pydantic
import pytest

from taskq import App, Settings
from taskq.exceptions import ConfigurationError
from taskq.redact import RedactingFilter, install_log_redaction, redact_url
from taskq.settings import check_queue_name, load_settings

SECRET = "s3cr3t-pa55"
BROKER_WITH_SECRET = f"amqp://alice:{SECRET}@127.0.0.1:5672/vhost"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No TASKQ_* variable of the surrounding shell may leak into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("TASKQ_"):
            monkeypatch.delenv(name)


# -- precedence -----------------------------------------------------------------------------


def test_defaults() -> None:
    settings = load_settings()
    assert settings.broker == "amqp://guest:guest@127.0.0.1:5672/"
    assert settings.prefix == "taskq"
    assert settings.default_queue == "default"
    assert settings.max_priority == 10
    assert settings.concurrency == 16
    assert settings.effective_prefetch == 16
    assert settings.queue_type == "classic"
    assert settings.results == "amqp"


def test_environment_beats_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKQ_PREFIX", "fromenv")
    monkeypatch.setenv("TASKQ_CONCURRENCY", "3")
    monkeypatch.setenv("TASKQ_QUEUE_TYPE", "quorum")
    settings = load_settings()
    assert settings.prefix == "fromenv"
    assert settings.concurrency == 3
    assert settings.queue_type == "quorum"
    assert settings.effective_prefetch == 3


def test_keyword_arguments_beat_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKQ_PREFIX", "fromenv")
    monkeypatch.setenv("TASKQ_BROKER", "amqp://env:env@127.0.0.1:5672/")
    monkeypatch.setenv("TASKQ_CONCURRENCY", "3")
    app = App("x", broker="amqp://code:code@127.0.0.1:5672/", prefix="fromcode")
    assert app.settings.broker == "amqp://code:code@127.0.0.1:5672/"
    assert app.settings.prefix == "fromcode"
    assert app.names.exchange == "fromcode"
    assert app.settings.concurrency == 3  # not given in code: the environment still counts


def test_none_keyword_does_not_hide_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKQ_BROKER", "amqp://env:env@127.0.0.1:5672/")
    assert App("x", broker=None).settings.broker == "amqp://env:env@127.0.0.1:5672/"


def test_configure_beats_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKQ_CONCURRENCY", "3")
    app = App("x", prefix="fromcode", threads=2)
    app.configure(prefix="fromcli", concurrency=None)
    assert app.settings.prefix == "fromcli"
    assert app.names.exchange == "fromcli"
    assert app.settings.threads == 2
    assert app.settings.concurrency == 3


def test_invalid_environment_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKQ_CONCURRENCY", "lots")
    with pytest.raises(ConfigurationError, match="concurrency"):
        load_settings()


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(pydantic.ValidationError):
        settings.prefix = "other"  # type: ignore[misc]


# -- validation -------------------------------------------------------------------------------


def test_unknown_setting() -> None:
    with pytest.raises(ConfigurationError, match="brokr"):
        App("x", brokr="amqp://127.0.0.1/")


def test_unknown_setting_error_hides_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        App("x", brokr=BROKER_WITH_SECRET)
    assert SECRET not in str(info.value)
    assert "brokr: Extra inputs are not permitted" in str(info.value)


def test_a_bad_value_error_shows_no_part_of_a_password() -> None:
    # pydantic cuts long input values, and a cut URL is not recognised as one: the error
    # leaves the values out.
    url = "amqps://guest:n0t-the-real-secret@localhost:5711/?keyfile=/etc/hostname"
    with pytest.raises(ConfigurationError) as info:
        App("x", broker=url)
    assert "n0t-th" not in str(info.value)
    assert "needs a certificate file" in str(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_priority", 0),
        ("max_priority", 256),
        ("concurrency", 0),
        ("prefetch", 0),
        ("task_timeout", 0),
        ("queue_type", "stream"),
        ("prefix", "has space"),
        ("prefix", ""),
        ("prefix", "tq\n"),
    ],
)
def test_invalid_values(name: str, value: object) -> None:
    with pytest.raises(ConfigurationError):
        load_settings(**{name: value})


@pytest.mark.parametrize("name", ["", "a.b", "a*", "#", "with space", "é", "x" * 121, "a/b", "q\n"])
def test_bad_queue_names(name: str) -> None:
    with pytest.raises(ConfigurationError):
        check_queue_name(name)
    with pytest.raises(ConfigurationError):
        load_settings(default_queue=name)


@pytest.mark.parametrize("name", ["default", "emails", "a-b_c", "Q1", "x" * 120])
def test_good_queue_names(name: str) -> None:
    assert check_queue_name(name) == name
    assert load_settings(default_queue=name).default_queue == name


def test_configuration_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        check_queue_name("a.b")


# -- secrets ----------------------------------------------------------------------------------


def test_settings_repr_hides_password() -> None:
    settings = Settings(broker=BROKER_WITH_SECRET, results=f"redis://:{SECRET}@127.0.0.1:6379/0")
    for text in (repr(settings), str(settings)):
        assert SECRET not in text
        assert "amqp://alice:***@127.0.0.1:5672/vhost" in text
    assert settings.redacted_broker() == "amqp://alice:***@127.0.0.1:5672/vhost"
    assert settings.broker == BROKER_WITH_SECRET  # the real value is still there to connect


def test_app_repr_hides_password() -> None:
    app = App("shop", broker=BROKER_WITH_SECRET)
    assert SECRET not in repr(app)
    assert "alice:***@" in repr(app)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("amqp://u:p@h:5672/v", "amqp://u:***@h:5672/v"),
        ("amqps://u:p@h/", "amqps://u:***@h/"),
        ("redis://:p@h:6379/0", "redis://:***@h:6379/0"),
        ("rediss://user:p%40ss@h/0", "rediss://user:***@h/0"),
        ("amqp://h:5672/", "amqp://h:5672/"),
        ("amqp://u@h/", "amqp://u@h/"),
        ("failed amqp://u:p@a/ and redis://:q@b/", "failed amqp://u:***@a/ and redis://:***@b/"),
        ("no url here", "no url here"),
    ],
)
def test_redact_url(text: str, expected: str) -> None:
    assert redact_url(text) == expected


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_redacting_filter_on_handler() -> None:
    handler = ListHandler()
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tests.unit.redact")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logger.info("connecting to %s", BROKER_WITH_SECRET)
        logger.info("result store redis://:%s@127.0.0.1:6379/0 is down", SECRET)
        logger.info("plain %s message %d", "log", 3)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert handler.lines == [
        "connecting to amqp://alice:***@127.0.0.1:5672/vhost",
        "result store redis://:***@127.0.0.1:6379/0 is down",
        "plain log message 3",
    ]


def test_install_log_redaction_on_taskq_loggers(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("taskq")
    before = list(logger.filters)
    try:
        install_log_redaction()
        install_log_redaction()  # idempotent
        assert sum(isinstance(f, RedactingFilter) for f in logger.filters) == 1
        with caplog.at_level(logging.INFO, logger="taskq"):
            logging.getLogger("taskq").warning("broker %s unreachable", BROKER_WITH_SECRET)
    finally:
        for flt in list(logger.filters):
            if flt not in before:
                logger.removeFilter(flt)
        for name in ("redis",):
            for flt in list(logging.getLogger(name).filters):
                if isinstance(flt, RedactingFilter):
                    logging.getLogger(name).removeFilter(flt)
    assert caplog.records, "the warning was not captured"
    assert SECRET not in caplog.text
    assert "amqp://alice:***@127.0.0.1:5672/vhost" in caplog.text
    assert all(SECRET not in r.getMessage() for r in caplog.records)
