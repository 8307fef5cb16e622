"""The figures tests recorded, as the Markdown table the documentation includes."""

from __future__ import annotations

import datetime
import subprocess
from collections.abc import Sequence
from pathlib import Path

import celery
import kombu

ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def markdown(figures: Sequence[tuple[str, str, object]], args: Sequence[str], when: datetime.datetime,
             rev: str, dirty: bool) -> str:
    """A table of (test, figure, value), in the order the tests ran, under a line saying how,
    when and at which commit they were measured."""
    shown: list[str] = []
    skip = False
    for arg in args:  # the command without its --figures PATH
        if not skip and not arg.startswith("--figures"):
            shown.append(arg)
        skip = arg == "--figures"
    command = " ".join(("pytest", *shown))
    lines = [
        f"Measured {when:%Y-%m-%d %H:%M} UTC at `{rev or 'unknown'}`"
        f"{' (uncommitted changes)' if dirty else ''} by `{command}` on the Pub/Sub emulator "
        f"(celery {celery.__version__}, kombu {kombu.__version__}).",
        "",
        "| test | figure | value |",
        "| --- | --- | --- |",
    ]
    for nodeid, name, value in sorted(figures, key=lambda row: row[0]):
        module, _, test = nodeid.partition("::")
        lines.append(f"| `{Path(module).name}::{test}` | {name} | {value} |")
    return "\n".join(lines) + "\n"


def write_markdown(path: str, figures: Sequence[tuple[str, str, object]], args: Sequence[str]) -> None:
    when = datetime.datetime.now(datetime.UTC)
    text = markdown(figures, args, when, _git("rev-parse", "--short", "HEAD"),
                    bool(_git("status", "--porcelain", "--untracked-files=no")))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text, encoding="utf-8")
