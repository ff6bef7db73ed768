"""mkdocs hook: links from a page to repository files outside docs/ work on the site too.

The pages link to files such as ``../../examples/quickstart/tasks.py`` or
``../benchmarks/results/latest.png`` by relative paths, so that the links work where the
Markdown is read on its own (GitHub). mkdocs only knows the files under docs/: this hook copies
each such target into the site under ``_repo/`` (as a plain file, never rendered as a page)
and points the link there. A target that does not exist is left alone, so that the strict
build reports it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

# [text](target) and ![alt](target), without a scheme; the target ends at ')', space or '#'.
LINK = re.compile(r"(?P<head>!?\[[^\]]*\]\()(?P<target>[^)\s#:]+)(?P<tail>[^)]*\))")
COPIED = "_repo"


class RepoFile(File):
    """A repository file copied into the site as it is (a .md file too)."""

    def is_documentation_page(self) -> bool:
        return False


def _repo_target(page_src: str, target: str, docs_dir: Path) -> str | None:
    """The repository path ``target`` points to from page ``page_src``, if outside docs/."""
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(page_src), target))
    if not joined.startswith("../"):
        return None
    repo_path = posixpath.normpath(posixpath.join(docs_dir.name, joined))
    if repo_path.startswith("../") or not (docs_dir.parent / repo_path).is_file():
        return None
    return repo_path


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add every repository file a page links to as a copied file under ``_repo/``."""
    docs_dir = Path(config.docs_dir)
    for page in list(files.documentation_pages()):
        for match in LINK.finditer(Path(page.abs_src_path or "").read_text(encoding="utf-8")):
            repo_path = _repo_target(page.src_uri, match["target"], docs_dir)
            uri = f"{COPIED}/{repo_path}"
            if repo_path is not None and files.get_file_from_path(uri) is None:
                files.append(
                    RepoFile.generated(config, uri, abs_src_path=str(docs_dir.parent / repo_path))
                )
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, **_: Any) -> str:
    """Point each link to a repository file at its copy."""
    docs_dir = Path(config.docs_dir)

    def rewrite(match: re.Match[str]) -> str:
        repo_path = _repo_target(page.file.src_uri, match["target"], docs_dir)
        if repo_path is None:
            return match[0]
        depth = page.file.src_uri.count("/")
        target = "../" * depth + f"{COPIED}/{repo_path}"
        return f"{match['head']}{target}{match['tail']}"

    return LINK.sub(rewrite, markdown)
