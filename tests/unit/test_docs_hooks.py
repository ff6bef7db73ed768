"""The mkdocs hooks of docs/hooks: the generated settings table and links to repository files."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from taskq.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def load_hook(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"docs_hook_{name}", DOCS / "hooks" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_settings_table_has_a_row_per_setting_with_its_env_variable() -> None:
    table = load_hook("settings_table").settings_table()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == list(Settings.model_fields)
    assert "| `prefetch` | `int` or `None` | `None` | `TASKQ_PREFETCH` |" in table
    assert "`'classic'` or `'quorum'`" in table
    assert "`frozenset[str]` | `[]` | `TASKQ_QUORUM_QUEUES`" in table


def test_the_settings_page_holds_the_marker_the_hook_replaces() -> None:
    hook = load_hook("settings_table")
    page = (DOCS / "guide" / "settings.md").read_text(encoding="utf-8")
    assert hook.MARKER in page
    assert hook.MARKER not in hook.on_page_markdown(page)


def test_a_setting_without_a_description_fails_the_build(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hook = load_hook("settings_table")
    field = Settings.model_fields["threads"]
    monkeypatch.setattr(field, "description", None)
    with pytest.raises(ValueError, match="threads"):
        hook.settings_table()


def test_links_out_of_docs_point_at_existing_repository_files_only() -> None:
    target = load_hook("repo_links")._repo_target
    assert target("benchmarks.md", "../benchmarks/README.md", DOCS) == "benchmarks/README.md"
    assert (
        target("operations/x.md", "../../examples/quickstart/tasks.py", DOCS)
        == "examples/quickstart/tasks.py"
    )
    assert target("guide/tasks.md", "results.md", DOCS) is None  # inside docs/
    assert target("benchmarks.md", "../no/such/file.md", DOCS) is None  # left for --strict
    assert target("benchmarks.md", "../../outside.md", DOCS) is None  # outside the repository
