"""Every `celery pubsub` command, and Celery's purge, inspect ping and status, report a
configuration or connection problem as one line on stderr (what is wrong, what to do),
exit non-zero, and print no traceback.

Each command runs as an operator runs it (``python -m celery -A tests.apps.ops_app …``)
under three conditions: Pub/Sub unreachable (the emulator address is a closed port), no
Google credentials (no emulator address, so the client would go to Google Cloud), and a
bad configuration (with the session's emulator reachable). The cases run a few processes
at a time, once per module; each test reads its own case's result.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from kombu_pubsub.ops.cli import pubsub
from tests.integration.conftest import ROOT

APP = "tests.apps.ops_app"
#: Short bounds so an unreachable Pub/Sub fails in seconds: rpc_timeout is ours,
#: connect_retries_timeout is how long Kombu retries a connect.
QUICK = {"rpc_timeout": 1, "connect_retries_timeout": 1}
LONG_NAME = "q" * 300  # maps to a Pub/Sub id over 255 characters

#: Each command, as run here; ids name it for the tests.
COMMANDS: dict[str, list[str]] = {
    "pubsub morgue list": ["pubsub", "morgue", "list"],
    "pubsub morgue show": ["pubsub", "morgue", "show", "some-task-id"],
    "pubsub morgue replay": ["pubsub", "morgue", "replay", "--all"],
    "pubsub morgue purge": ["pubsub", "morgue", "purge"],
    "pubsub queues": ["pubsub", "queues"],
    "pubsub countdowns": ["pubsub", "countdowns", "--timeout", "0.5"],
    "pubsub provision": ["pubsub", "provision"],
    "pubsub delete": ["pubsub", "delete", "reports", "--yes"],
    "purge": ["purge", "-f"],
    "inspect ping": ["inspect", "ping", "--timeout", "0.5"],
    "status": ["status", "--timeout", "0.5"],
}

UNREACHABLE = ["Pub/Sub did not answer", "PUBSUB_EMULATOR_HOST"]
NO_CREDENTIALS = ["no Google Cloud credentials", "gcloud auth application-default login",
                  "PUBSUB_EMULATOR_HOST"]


@dataclasses.dataclass(frozen=True)
class Case:
    condition: str
    command: str
    hints: list[str]
    args: list[str] = dataclasses.field(default_factory=list)
    """The command's arguments, when not COMMANDS[command]."""
    globals: list[str] = dataclasses.field(default_factory=list)
    """Options before the command (-b URL)."""
    app: str = APP

    @property
    def id(self) -> str:
        return f"{self.condition}: {self.command}"

    @property
    def argv(self) -> list[str]:
        return ["-A", self.app, *self.globals, *(self.args or COMMANDS[self.command])]


CASES = [
    *[Case("unreachable", command, UNREACHABLE) for command in COMMANDS],
    *[Case("no credentials", command, [*NO_CREDENTIALS, "fix GOOGLE_APPLICATION_CREDENTIALS"])
      for command in COMMANDS],
    # A newcomer's first try: no emulator, no credentials anywhere, the demo app.
    *[Case("no credentials at all", command, NO_CREDENTIALS, app="demo_tasks")
      for command in ["pubsub morgue list", "purge"]],
    *[Case("bad transport option", command, ["ack_deadline=5.0 is out of range", "10 to 600"])
      for command in COMMANDS],
    *[Case("bad project id", command, ["project id", "PUBSUB_JOB_QUEUE_PROJECT_ID"])
      for command in ["pubsub morgue list", "purge"]],
    *[Case("bad broker URL", command, ["has a port but no project", "pubsub://localhost:8085/<project-id>"],
           globals=["-b", "pubsub://localhost:8085"])
      for command in ["pubsub queues", "purge"]],
    *[Case("queue name too long", command, ["Pub/Sub allows 255", "shorter name"], args=args)
      for command, args in [("purge", ["purge", "-f", "-Q", LONG_NAME]),
                            ("pubsub queues", ["pubsub", "queues", "-Q", LONG_NAME]),
                            ("pubsub delete", ["pubsub", "delete", LONG_NAME, "--yes"])]],
    *[Case("another broker", command, ["not pubsub://", "broker_url='pubsub://<project-id>'"],
           globals=["-b", "memory://"])
      for command in ["pubsub morgue list", "pubsub countdowns"]],
]


def closed_port() -> int:
    """A local port nothing listens on (just freed by us)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(case: Case, emulator_host: str, project: str, home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("PUBSUB_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS",
                          "KOMBU_PUBSUB_TRACEBACK", "CELERY_BROKER_URL")}
    # The bad configurations run against the session's emulator with the default bounds:
    # a queue name is checked only once the connect got an answer.
    env.update(PYTHONPATH=str(ROOT), PUBSUB_JOB_QUEUE_PROJECT_ID=project,
               PUBSUB_EMULATOR_HOST=emulator_host)
    if case.condition == "unreachable":
        env.update(PUBSUB_EMULATOR_HOST=f"127.0.0.1:{closed_port()}",
                   OPS_TRANSPORT_OPTIONS=json.dumps(QUICK))
    elif case.condition.startswith("no credentials"):
        # Nowhere for google.auth to find credentials, and no metadata server to ask;
        # short bounds in case anything reached for the network all the same.
        del env["PUBSUB_EMULATOR_HOST"]
        nowhere = f"127.0.0.1:{closed_port()}"
        env.update(HOME=str(home), CLOUDSDK_CONFIG=str(home / "gcloud"), NO_GCE_CHECK="true",
                   GCE_METADATA_HOST=nowhere, GCE_METADATA_IP=nowhere,
                   OPS_TRANSPORT_OPTIONS=json.dumps(QUICK))
        if case.condition == "no credentials":
            env["GOOGLE_APPLICATION_CREDENTIALS"] = str(home / "missing-key.json")
    elif case.condition == "bad transport option":
        env["OPS_TRANSPORT_OPTIONS"] = json.dumps({"ack_deadline": 5})
    elif case.condition == "bad project id":
        env["PUBSUB_JOB_QUEUE_PROJECT_ID"] = "Bad!Project"
    return env


def run(case: Case, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "celery", *case.argv], cwd=ROOT, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def results(request: pytest.FixtureRequest, emulator_host: str, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[dict[str, subprocess.CompletedProcess]]:
    """The result of each case selected in this session (``-k`` runs fewer), run 4 at a time."""
    selected = [params["case"] for item in request.session.items if item.module is request.module
                for params in [getattr(getattr(item, "callspec", None), "params", {})] if "case" in params]
    home = tmp_path_factory.mktemp("empty-home")
    project = f"test-cli-errors-{os.getpid()}"
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = {case.id: pool.submit(run, case, environment(case, emulator_host, project, home))
                   for case in selected}
        yield {case_id: future.result() for case_id, future in futures.items()}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_the_problem_is_one_line_saying_what_to_do(case: Case, results):
    result = results[case.id]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for hint in case.hints:
        assert hint in lines[0]


def leaf_commands(group: click.Group, prefix: str) -> set[str]:
    names: set[str] = set()
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            names |= leaf_commands(command, f"{prefix} {name}")
        else:
            names.add(f"{prefix} {name}")
    return names


def test_every_pubsub_command_is_run_under_each_condition():
    pubsub_commands = {command for command in COMMANDS if command.startswith("pubsub ")}
    assert pubsub_commands == leaf_commands(pubsub, "pubsub")
    for condition in ["unreachable", "no credentials", "bad transport option"]:
        assert {case.command for case in CASES if case.condition == condition} == set(COMMANDS)
