"""No module of taskq reaches into another module's private names.

A name with a leading underscore belongs to the module that defines it. This walks every
module of ``taskq/`` and fails on ``x._name`` (``x`` other than ``self``/``cls``) and on
``from m import _name`` when ``_name`` is not defined in the module itself. Dunders are not
private. A module may use private names of its own (another instance of its own class).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "taskq"

ALLOWED = {
    # namedtuple's public API is underscored so that it cannot clash with field names.
    ("transport/endpoints.py", "_replace"),
    ("results/postgres.py", "_replace"),
    # os._exit is the documented way to end a process without waiting for its threads.
    ("cli/stopping.py", "_exit"),
    ("pool/child.py", "_exit"),  # an orphaned pool process ends at once
}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _own_names(tree: ast.Module) -> set[str]:
    """Names the module defines: functions, classes, assigned names, ``self.``/``cls.``
    attributes, and ``__slots__`` entries."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
    return names


def foreign_private_uses(source: str) -> list[tuple[int, str]]:
    """``(line, name)`` of each private name of another module used in ``source``."""
    tree = ast.parse(source)
    own = _own_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            receiver = node.value
            if isinstance(receiver, ast.Name) and receiver.id in ("self", "cls"):
                continue
            if node.attr not in own:
                found.append((node.lineno, node.attr))
        elif isinstance(node, ast.ImportFrom):
            found += [(node.lineno, a.name) for a in node.names if _is_private(a.name)]
    return found


def test_the_check_sees_what_it_must() -> None:
    source = (
        "from .handle import _block_on\n"
        "def send(app):\n"
        "    return app._send_task()\n"
        "class Mine:\n"
        "    def __init__(self):\n"
        "        self._state = 1\n"
        "    def same(self, other):\n"
        "        return other._state + self._state + other.__class__.__name__.__len__()\n"
    )
    assert foreign_private_uses(source) == [(1, "_block_on"), (3, "_send_task")]


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_no_module_uses_another_modules_private_names(path: Path) -> None:
    relative = path.relative_to(PACKAGE).as_posix()
    used = [
        f"{relative}:{line}: {name}"
        for line, name in foreign_private_uses(path.read_text())
        if (relative, name) not in ALLOWED
    ]
    assert used == []
