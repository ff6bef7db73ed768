"""The typed public API, checked by mypy (strict, with the repo's pyproject configuration)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHECKED = "tests/typing/check_api.py"


def mypy_strict(checked: str) -> str:
    """Run mypy with the repo's configuration on ``checked``; its output, asserting it passed."""
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "pyproject.toml", checked],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    output = proc.stdout + proc.stderr
    print(output)
    assert proc.returncode == 0, f"mypy failed on {checked}:\n{output}"
    return proc.stdout


def test_check_api_passes_mypy_strict() -> None:
    # check_api.py holds assert_type()s and calls that must be errors (marked with ignores
    # that warn_unused_ignores would report): exit 0 means every expectation held.
    assert "Success" in mypy_strict(CHECKED)


def test_check_workflows_passes_mypy_strict() -> None:
    # Signatures, chains, groups and chords: wrong arguments and a step that cannot take the
    # previous result are errors (the ignores in the file prove it).
    assert "Success" in mypy_strict("tests/typing/check_workflows.py")


def test_strictness_is_configured() -> None:
    # Without strict (hence warn_unused_ignores), the expected-error lines would prove nothing.
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config["strict"] is True
    assert config.get("warn_unused_ignores", True) is True


WRONG_CALL = (
    "from taskq import App\n"
    "app = App('x')\n"
    "@app.task\n"
    "async def add(x: int, y: int) -> int:\n"
    "    return x + y\n"
    "async def main() -> None:\n"
    "    await add.delay('x', 1)\n"
)


def run_mypy(checked: Path, *options: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "MYPYPATH"}
    return subprocess.run(
        [sys.executable, "-m", "mypy", *options, str(checked)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
        env=env,
    )


def test_mypy_does_flag_a_wrong_call(tmp_path: Path) -> None:
    # Guards against a vacuous pass (e.g. a config that silently skips the file).
    checked = tmp_path / "wrong_call.py"
    checked.write_text(WRONG_CALL)
    proc = run_mypy(checked, "--config-file", "pyproject.toml", cwd=REPO)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "wrong_call.py:7: error:" in proc.stdout
    assert "[arg-type]" in proc.stdout


def test_an_installed_taskq_is_typed_for_a_users_own_project(tmp_path: Path) -> None:
    # mypy run from a project of the user's own, outside this checkout, finds taskq through
    # the install (an editable one here: a .pth path entry, which mypy follows; setuptools'
    # import-hook editable install was invisible to it, and every check silently vanished).
    project = tmp_path / "userproject"
    project.mkdir()
    checked = project / "wrong_call.py"
    checked.write_text(WRONG_CALL)
    proc = run_mypy(checked, "--strict", "--no-incremental", cwd=project)
    output = proc.stdout + proc.stderr
    assert "Cannot find implementation or library stub" not in output, output
    assert proc.returncode == 1, output
    assert 'Argument 1 to "delay" of "Task" has incompatible type "str"; expected "int"' in output
