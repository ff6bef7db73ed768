"""The transport is one seam: nothing above taskq/transport/ reaches into it, and importing
the settings first works (the settings no longer sit in an import cycle with the transport)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import taskq
from taskq import transport

PACKAGE = Path(taskq.__file__).parent
TRANSPORT = PACKAGE / "transport"


def _module_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path) -> list[tuple[int, str]]:
    """``(line, absolute module)`` of every import in ``path``, ``from x import y`` giving
    ``x.y`` too (``from . import transport`` imports a module)."""
    module = _module_of(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            source = ".".join([*base, *([node.module] if node.module else [])])
            found.append((node.lineno, source))
            found += [(node.lineno, f"{source}.{alias.name}") for alias in node.names]
    return found


def _reaches_inside(name: str) -> bool:
    submodules = {p.stem for p in TRANSPORT.glob("*.py") if p.stem != "__init__"}
    head, _, rest = name.partition("taskq.transport.")
    return head == "" and rest.split(".")[0] in submodules


def test_no_module_outside_the_transport_imports_its_internals() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if TRANSPORT not in path.parents
        for line, name in _imported(path)
        if _reaches_inside(name)
    ]
    assert offenders == [], "import taskq.transport itself, not its modules:\n" + "\n".join(
        offenders
    )


def test_the_walk_sees_a_relative_import_of_an_internal(tmp_path: Path) -> None:
    # The rule above is only as good as the walk: it must resolve relative imports.
    probe = PACKAGE / "periodic" / "scheduler.py"
    names = [name for _, name in _imported(probe)]
    assert "taskq.transport.Lease" in names
    assert _reaches_inside("taskq.transport.connection.ChannelClosed")
    assert not _reaches_inside("taskq.transport.Lease")


def test_the_public_surface_is_complete() -> None:
    from taskq.transport import interface

    assert all(hasattr(transport, name) for name in transport.__all__)
    own = {
        name
        for name, value in vars(interface).items()
        if isinstance(value, type) and value.__module__ == interface.__name__
    }
    assert own - set(transport.__all__) == set()


def test_the_transport_never_imports_the_settings() -> None:
    # Settings import the transport (to check broker URLs): the other way round is a cycle.
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in sorted(TRANSPORT.glob("*.py"))
        for line, name in _imported(path)
        if name == "taskq.settings" or name.startswith("taskq.settings.")
    ]
    assert offenders == []


@pytest.mark.parametrize("module", ["taskq.settings", "taskq.transport", "taskq.app"])
def test_a_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
