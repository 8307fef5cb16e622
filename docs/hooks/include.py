"""MkDocs hook: ``<!-- include results/benchmarks.md -->`` on a line of its own is replaced by
that file (a path under docs/), so a page shows the figures a run wrote without anyone
copying them. A missing file is an error: the strict build fails instead of showing stale
or no figures."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

INCLUDE = re.compile(r"^<!-- include (\S+) -->$", re.MULTILINE)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    docs = Path(config["docs_dir"])

    def included(match: re.Match[str]) -> str:
        path = docs / match.group(1)
        if not path.is_file():
            raise PluginError(f"{page.file.src_path}: included file {match.group(1)!r} does not exist")
        return path.read_text(encoding="utf-8").rstrip("\n")

    return INCLUDE.sub(included, markdown)
