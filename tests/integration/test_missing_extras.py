"""A missing optional dependency is a ConfigurationError that names the extra to install.

Each case runs in a subprocess in which one module cannot be imported (``sys.modules[name] =
None`` makes ``import name`` raise ImportError, as an uninstalled package does), and goes
through the public way a user meets that module: a worker or client with a Redis or
PostgreSQL result store, a worker with metrics, the dashboard.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.postgres_support import POSTGRES
from tests.redis_support import REDIS_URL
from tests.support import BROKER, REPO, delete_topology, unique_prefix

OPEN_APP = """
import asyncio
from taskq import App, ConfigurationError

async def main():
    app = App("extras", broker={broker!r}, prefix={prefix!r}, results={results!r})
    try:
        async with app:
            print("OPENED")
    except ConfigurationError as exc:
        print("CONFIGURATION ERROR:", exc)

asyncio.run(main())
"""


def run_without(module: str, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter in which ``module`` cannot be imported."""
    script = f"import sys\nsys.modules[{module!r}] = None\n" + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("module", "results", "extra"),
    [
        ("redis", REDIS_URL, "redis"),
        ("hiredis", REDIS_URL, "redis"),
        ("asyncpg", POSTGRES, "postgres"),
    ],
)
async def test_a_result_store_without_its_extra_names_the_extra(
    module: str, results: str, extra: str
) -> None:
    prefix = unique_prefix()
    try:
        code = OPEN_APP.format(broker=BROKER, prefix=prefix, results=results)
        done = run_without(module, code)
    finally:
        await delete_topology(prefix, ["default"])
    assert done.returncode == 0, done.stderr
    assert "OPENED" not in done.stdout
    assert "CONFIGURATION ERROR:" in done.stdout, done.stdout + done.stderr
    assert f"pip install 'taskq[{extra}]'" in done.stdout
    assert "ModuleNotFoundError" not in done.stderr


def test_the_worker_cli_without_hiredis_exits_2_naming_the_extra() -> None:
    prefix = unique_prefix()
    code = f"""
    import os, sys
    from taskq.cli.worker import main
    os.environ.update(TASKQ_BROKER={BROKER!r}, TASKQ_PREFIX={prefix!r}, TASKQ_RESULTS={REDIS_URL!r})
    sys.argv = ["taskq-worker", "tests.apps.procapp:app"]
    raise SystemExit(main())
    """
    done = run_without("hiredis", code)
    assert done.returncode == 2, done.stderr
    assert "pip install 'taskq[redis]'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("module", ["starlette", "uvicorn", "jinja2"])
def test_the_dashboard_without_its_extra_names_the_extra(module: str) -> None:
    done = run_without(
        module,
        """
        from taskq import ConfigurationError
        try:
            import taskq.dashboard
        except ConfigurationError as exc:
            print("CONFIGURATION ERROR:", exc)
        """,
    )
    assert "CONFIGURATION ERROR:" in done.stdout, done.stdout + done.stderr
    assert "pip install 'taskq[dashboard]'" in done.stdout
    assert module in done.stdout


def test_the_dashboard_cli_without_its_extra_exits_2_naming_the_extra() -> None:
    code = """
    import sys
    from taskq.cli.admin import main
    sys.argv = ["taskq", "--app", "tests.apps.procapp:app", "dashboard"]
    raise SystemExit(main())
    """
    done = run_without("starlette", code)
    assert done.returncode == 2, done.stderr
    assert "pip install 'taskq[dashboard]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_metrics_without_prometheus_client_name_the_extra() -> None:
    done = run_without(
        "prometheus_client",
        """
        from taskq import App, ConfigurationError, Worker
        from taskq.metrics import WorkerMetrics
        app = App("extras")
        try:
            WorkerMetrics(Worker(app))
        except ConfigurationError as exc:
            print("CONFIGURATION ERROR:", exc)
        """,
    )
    assert "CONFIGURATION ERROR:" in done.stdout, done.stdout + done.stderr
    assert "pip install 'taskq[metrics]'" in done.stdout
