"""mkdocs hook: the settings table of docs/guide/settings.md, generated from ``Settings``.

The page holds the marker ``<!-- settings-table -->``; this hook replaces it with one row per
field of ``taskq.settings.Settings`` (name, type, default, environment variable, description),
so the page cannot drift from the code. A field without a description fails the build.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic.fields import FieldInfo

from taskq.settings import Settings

MARKER = "<!-- settings-table -->"


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace the marker, where a page has it, with the table."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, settings_table())


def settings_table() -> str:
    """The Markdown table of every setting, in declaration order."""
    prefix = Settings.model_config.get("env_prefix", "")
    rows = [
        "| setting | type | default | environment variable | meaning |",
        "|---|---|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        if not field.description:
            raise ValueError(f"Settings.{name} has no description: the settings page needs one")
        env = f"{prefix}{name}".upper()
        rows.append(
            f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} | `{env}` "
            f"| {_cell(field.description)} |"
        )
    return "\n".join(rows)


def _type_name(annotation: Any) -> str:
    """The annotation as Markdown: each type in backticks, alternatives joined by "or"."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " or ".join(f"`{arg!r}`" for arg in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(getattr(arg, "__name__", str(arg)) for arg in typing.get_args(annotation))
        return f"`{origin.__name__}[{args}]`"
    if annotation is type(None):
        return "`None`"
    return f"`{getattr(annotation, '__name__', annotation)}`"


def _default(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if isinstance(value, frozenset):
        value = sorted(value)
        return "`[]`" if not value else f"`{value}`"
    return f"`{value!r}`" if not isinstance(value, str) else f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
