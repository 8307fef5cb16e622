"""The documentation names tests that exist (the strict MkDocs build checks its links)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tests_by_file() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found.setdefault(path.name, set()).update(
            node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_"))
    return found


def test_every_test_the_docs_name_exists():
    tests = _tests_by_file()
    missing = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(r"`(?:tests/(?:integration|unit)/)?(test_\w+\.py)(?:::(\w+))?`", text):
            module, name = match.groups()
            if module not in tests or (name and name not in tests[module]):
                missing.append(f"{page.name}: {match.group(0)}")
        # "`test_x.py::a`, `::b`": a name after '::' alone belongs to the module named before it
        pattern = r"`(?:tests/(?:integration|unit)/)?(test_\w+\.py)::\w+`((?:, `::\w+`)+)"
        for match in re.finditer(pattern, text):
            for name in re.findall(r"`::(\w+)`", match.group(2)):
                if name not in tests.get(match.group(1), set()):
                    missing.append(f"{page.name}: {match.group(1)}::{name}")
    assert not missing, missing


def test_the_readme_gives_the_exact_command_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert ci in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert ci in (ROOT / "docs" / "development.md").read_text(encoding="utf-8").splitlines()
