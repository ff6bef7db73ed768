"""Importing taskq changes no logging (issue 19); taskq's commands redact what they log.

Each check runs in a fresh interpreter: the test process's own loggers have been touched by
other tests already.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SECRET = "s3cret-pw"

IMPORT_ONLY = textwrap.dedent(
    """
    import json, logging
    import redis.asyncio  # a program that uses redis itself, then imports taskq
    import taskq

    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append([record.msg, list(record.args or ())])

    handler = Keep()
    logging.getLogger("redis.connection").addHandler(handler)
    logging.getLogger("redis.connection").warning("reconnecting to %s", "redis://h:6379/0")
    print(json.dumps({
        "filters": {name: [type(f).__name__ for f in logging.getLogger(name).filters]
                    for name in ("taskq", "taskq.worker", "redis", "redis.connection")},
        "record": seen[0],
    }))
    """
)

CLI_LOGGING = textwrap.dedent(
    f"""
    import logging
    import redis.asyncio
    from taskq.cli.logs import setup_logging

    setup_logging("info")
    url = "amqp://alice:{SECRET}@127.0.0.1:5672/"
    logging.getLogger("taskq.worker").warning("broker %s is down", url)
    logging.getLogger("redis.connection").warning("store %s is down", "redis://:{SECRET}@h/0")
    logging.getLogger("app.own").warning("mine %s", url)
    """
)


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )


def test_importing_taskq_leaves_every_logger_as_it_was() -> None:
    shown = json.loads(_python(IMPORT_ONLY).stdout)
    assert shown["filters"] == {
        "taskq": [],
        "taskq.worker": [],
        "redis": [],
        "redis.connection": [],
    }
    # The record reaches the program's handler as logged: message and arguments apart.
    assert shown["record"] == ["reconnecting to %s", ["redis://h:6379/0"]]


def test_the_commands_logging_redacts_passwords_of_taskq_redis_and_everyone() -> None:
    err = _python(CLI_LOGGING).stderr
    assert SECRET not in err
    assert "broker amqp://alice:***@127.0.0.1:5672/ is down" in err
    assert "store redis://:***@h/0 is down" in err
    assert "mine amqp://alice:***@127.0.0.1:5672/" in err
