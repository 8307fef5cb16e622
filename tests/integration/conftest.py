from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import pubsub_v1
from kombu import Connection

import kombu_pubsub  # noqa: F401
from tests.emulator import Emulator
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test here talks to the emulator (`integration`); those that start a `celery
    worker` through start_worker are `e2e` too (the others that start one say so themselves)."""
    for item in items:
        if HERE not in item.path.resolve().parents:
            continue  # this hook sees the whole session's items
        item.add_marker(pytest.mark.integration)
        if "start_worker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def _emulator(emulator_host: str) -> str:
    return emulator_host


@pytest.fixture(autouse=True)
def _no_installed_apps(no_installed_apps: None) -> None:
    """In-process tests use bare Kombu connections: no app's checks apply."""


@pytest.fixture
def project() -> str:
    """A project id of its own per test: isolation without restarting the emulator."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def connect(project: str) -> Iterator[Callable[..., Connection]]:
    """Factory of kombu Connections to the test's project; closes them at the end."""
    made: list[Connection] = []

    def factory(**transport_options: Any) -> Connection:
        connection = Connection(f"pubsub://{project}", transport_options=transport_options)
        made.append(connection)
        return connection

    yield factory
    for connection in made:
        connection.release()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of the session's own (skipped where none is installed; .ci/run installs one)."""
    pytest.importorskip("redis", reason="Kombu's and Celery's Redis support needs the redis package "
                                        "(pip install -e '.[test]')")
    server = RedisServer()
    try:
        server.start()
    except FileNotFoundError as exc:
        server.close()
        pytest.skip(f"{exc}: the Redis reference and result-backend tests need one")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def publisher_client(emulator_host: str) -> pubsub_v1.PublisherClient:
    return pubsub_v1.PublisherClient()


@pytest.fixture(scope="session")
def subscriber_client(emulator_host: str) -> pubsub_v1.SubscriberClient:
    return pubsub_v1.SubscriberClient()


def pull_all(subscriber: pubsub_v1.SubscriberClient, path: str, ack: bool = True) -> list:
    """Every message waiting on a subscription right now (raw client)."""
    got = []
    while True:
        response = subscriber.pull(request={"subscription": path, "max_messages": 1000,
                                            "return_immediately": True}, timeout=10)
        if not response.received_messages:
            return got
        got.extend(response.received_messages)
        if ack:
            subscriber.acknowledge(request={"subscription": path,
                                            "ack_ids": [m.ack_id for m in response.received_messages]})


def wait_until(check: Callable[[], Any], timeout: float, step: float = 0.1) -> Any:
    """Call `check` until it returns something true or `timeout` s pass; return its last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(step)


def scrape(port: int) -> dict[str, float]:
    """The kombu_pubsub samples a process's Prometheus endpoint serves: name → value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("kombu_pubsub_") and " " in line:
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


class Worker:
    """A stock `celery worker` subprocess on the e2e app, with its log file."""

    def __init__(self, env: dict[str, str], args: list[str], log_path: Path,
                 app: str = "tests.apps.e2e_app") -> None:
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", app, "worker",
             "-l", os.environ.get("E2E_WORKER_LOG_LEVEL", "info"),
             "--without-gossip", "--without-mingle", *args],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_ready(self, timeout: float = 60.0) -> Worker:
        deadline = time.monotonic() + timeout
        while " ready." not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker did not become ready:\n{self.log()[-3000:]}")
            time.sleep(0.1)
        return self

    def signal(self, signum: int) -> None:
        """Signal the whole process group: the main process and its pool children."""
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass

    def warm_shutdown(self) -> None:
        """SIGTERM to the main process only, as `docker stop` or a supervisor sends it."""
        self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> None:
        if self.process.poll() is None:
            self.warm_shutdown()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.process.wait(10)
        self._log.close()


class TaskLog:
    """Reads the lines tasks write: 'start|done TOKEN PID TIME'."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def events(self, event: str) -> list[tuple[str, int, float]]:
        rows = []
        for line in self.path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[0] == event:
                rows.append((parts[1], int(parts[2]), float(parts[3])))
        return rows

    def tokens(self, event: str) -> list[str]:
        return [token for token, _, _ in self.events(event)]

    def wait_for(self, event: str, count: int, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(set(self.tokens(event))) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.tokens(event)


@pytest.fixture
def task_log(tmp_path: Path) -> TaskLog:
    return TaskLog(tmp_path / "tasks.log")


@pytest.fixture
def e2e_env(project: str, task_log: TaskLog, emulator_host: str) -> dict[str, str]:
    """Environment for e2e subprocesses (worker and producers)."""
    env = dict(os.environ)
    env.update(PUBSUB_EMULATOR_HOST=emulator_host, PUBSUB_JOB_QUEUE_PROJECT_ID=project,
               QUEUE_NAME="e2e", E2E_LOG=str(task_log.path), PYTHONPATH=str(ROOT))
    return env


@pytest.fixture
def start_worker(e2e_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def factory(*args: str, transport_options: dict | None = None, wait: bool = True,
                queues: str | None = None, **env: str) -> Worker:
        """`queues`: the worker's -Q (comma-separated); QUEUE_NAME when not given."""
        worker_env = dict(e2e_env, **env)
        if transport_options:
            worker_env["E2E_TRANSPORT_OPTIONS"] = json.dumps(transport_options)
        if "-n" not in args:  # one node name per worker, as Celery expects
            args = ("-n", f"worker{len(workers)}@%h", *args)
        worker = Worker(worker_env, ["-Q", queues or worker_env["QUEUE_NAME"], *args],
                        tmp_path / f"worker{len(workers)}.log")
        workers.append(worker)
        return worker.wait_ready() if wait else worker

    yield factory
    for worker in workers:
        worker.stop()


def run_producer(env: dict[str, str], code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run Python `code` in a fresh process, with the e2e app and its tasks imported."""
    script = "from tests.apps.e2e_app import app, flaky, kill_worker, record\n" + code
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, timeout=timeout,
                           capture_output=True, text=True)


@pytest.fixture
def private_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """An emulator of the test's own, which the test may pause (SIGSTOP: unreachable, state kept)."""
    emulator = Emulator().start()
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator.host)
    try:
        yield emulator
    finally:
        emulator.resume()
        emulator.stop()
