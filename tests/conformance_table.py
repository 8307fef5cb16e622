"""Run the conformance cases on every system and write their results as a markdown table.

``python -m tests.conformance_table OUT.md [pytest args…]`` runs
tests/integration/test_conformance.py (it starts its own emulator and redis-server,
as the test suite does), then writes one row per behaviour and one column per
system: pass, fail or skip, with what the case observed where it records it
(the order priorities arrived in, whether an expired message was delivered).
The exit status is pytest's, so a failing case still writes its table and fails
the command.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.redis_server import redis_version

ROOT = Path(__file__).resolve().parents[1]
MODULE = "tests/integration/test_conformance.py"
SYSTEMS = ("pubsub", "redis", "memory")


@dataclass
class Result:
    """One case on one system."""

    outcome: str  # "pass", "fail" or "skip"
    observed: str = ""
    reason: str = ""  # why it was skipped


@dataclass
class Collector:
    """A pytest plugin that keeps each case's outcome and recorded `observed` property.

    Rows are keyed by the test's name plus its parameters other than ``broker``
    (e.g. ``("a message past its time to live is not delivered", "expiration")``),
    in the order pytest ran them.
    """

    results: dict[str, dict[str, Result]] = field(default_factory=dict)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: Any) -> Iterator[None]:
        outcome = yield
        report = outcome.get_result()
        params = dict(getattr(getattr(item, "callspec", None), "params", {}))
        system = params.pop("broker", None)
        if system is None:
            return
        row = behaviour(getattr(item, "originalname", item.name), params)
        if report.when == "setup" and report.skipped:
            self.results.setdefault(row, {})[system] = Result("skip", reason=skip_reason(report))
        elif report.when == "setup" and report.failed:
            self.results.setdefault(row, {})[system] = Result("fail", reason="setup failed")
        elif report.when == "call":
            observed = dict(item.user_properties).get("observed", "")
            if report.skipped:
                result = Result("skip", observed, skip_reason(report))
            else:
                result = Result("pass" if report.passed else "fail", observed)
            self.results.setdefault(row, {})[system] = result


def behaviour(test_name: str, params: dict[str, Any]) -> str:
    """`test_a_requeued_message_comes_back`, {"how": "x"} → 'a requeued message comes back (x)'."""
    text = test_name.removeprefix("test_").replace("_", " ")
    extra = ", ".join(str(value) for value in params.values())
    return f"{text} ({extra})" if extra else text


def skip_reason(report: pytest.TestReport) -> str:
    """The reason pytest gives for a skip (its longrepr is (path, line, 'Skipped: reason'))."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def cell(result: Result | None) -> str:
    if result is None:
        return "not run"
    text = {"pass": "pass", "fail": "**FAIL**", "skip": "skip"}[result.outcome]
    detail = result.observed or result.reason
    return f"{text}: {detail}" if detail else text


def render(results: dict[str, dict[str, Result]], header: list[str]) -> str:
    """The markdown page: `header` lines, then the table, one row per behaviour."""
    lines = [*header, "", "| behaviour | " + " | ".join(SYSTEMS) + " |",
             "|---" * (len(SYSTEMS) + 1) + "|"]
    for row, by_system in results.items():
        cells = [row] + [cell(by_system.get(system)) for system in SYSTEMS]
        lines.append("| " + " | ".join(text.replace("|", "\\|") for text in cells) + " |")
    return "\n".join(lines) + "\n"


def provenance() -> list[str]:
    """Where the figures come from: command, commit, date and the versions compared."""
    import kombu

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip() or "unknown"
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    return [f"Measured by `python -m tests.conformance_table` ({MODULE}) on commit {commit}, "
            f"{today}: kombu {kombu.__version__}, redis-server {redis_version() or 'not installed'}, "
            "the Pub/Sub emulator."]


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print("usage: python -m tests.conformance_table OUT.md [pytest args…]", file=sys.stderr)
        return 2
    out, extra = Path(argv[0]), argv[1:]
    collector = Collector()
    status = pytest.main(["-q", "-p", "no:cacheprovider", str(ROOT / MODULE), *extra],
                         plugins=[collector])
    if not collector.results:
        print(f"no conformance case ran (pytest exit status {int(status)}); nothing written",
              file=sys.stderr)
        return int(status) or 1
    out.write_text(render(collector.results, provenance()))
    print(f"wrote {out}")
    return int(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
