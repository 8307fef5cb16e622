"""`python -m demo_tasks.local` for real: it keeps up with its own load, and stops everything.

Each run starts its own emulator, as a user's run does (PUBSUB_EMULATOR_HOST unset).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from demo_tasks import local
from demo_tasks.processes import GUARD_GRACE, Console
from tests.emulator import free_port, port_open
from tests.integration.conftest import ROOT, wait_until

pytestmark = pytest.mark.e2e  # starts `celery worker` subprocesses without start_worker

EXECUTING = re.compile(r"^\[(\S+ \S+): INFO/\S+\] demo_tasks\.mock_job\[([0-9a-f-]+)\]: Executing MockJob",
                       re.MULTILINE)
MORGUE = re.compile(r"^\[(\S+ \S+): WARNING/\S+\] Moved failed job demo_tasks\.mock_job\[([0-9a-f-]+)\] "
                    r"to the morgue", re.MULTILINE)
STATUS = re.compile(r"^status: sent (\d+) \| running (\d+) \| .*\| backlog (\d+)(?: \(oldest ([\d.]+)s\))?",
                    re.MULTILINE)


def demo_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "PUBSUB_EMULATOR_HOST"}
    return dict(env, PYTHONPATH=str(ROOT), QUEUE_NAME="default", MOCK_JOB_RETRY_DELAY="5")


class Demo:
    """`python -m demo_tasks.local` on a free port, its terminal output in `output`."""

    def __init__(self, tmp_path: Path, *args: str, terminal: bool = False) -> None:
        self.port = free_port()
        self.log_dir = tmp_path
        argv = [sys.executable, "-m", "demo_tasks.local", "--port", str(self.port),
                "--log-dir", str(tmp_path), *args]
        self._chunks: list[str] = []
        if terminal:  # a pseudo-terminal that controls the demo's session, as a terminal window does
            self.master, slave = os.openpty()
            self.process = subprocess.Popen(argv, cwd=ROOT, env=demo_env(), stdin=slave, stdout=slave,
                                            stderr=slave, start_new_session=True,
                                            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
            os.close(slave)
            stream = os.fdopen(self.master, "rb", buffering=0, closefd=False)
        else:
            self.master = None
            self.process = subprocess.Popen(argv, cwd=ROOT, env=demo_env(), stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, start_new_session=True)
            stream = self.process.stdout
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        try:
            while chunk := stream.read1(4096) if hasattr(stream, "read1") else stream.read(4096):
                self._chunks.append(chunk.decode(errors="replace"))
        except OSError:  # the pseudo-terminal was closed
            pass

    @property
    def output(self) -> str:
        return "".join(self._chunks).replace("\r\n", "\n")

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        if not wait_until(lambda: text in self.output or self.process.poll() is not None, timeout):
            raise AssertionError(f"no {text!r} within {timeout} s:\n{self.output[-3000:]}")
        assert text in self.output, self.output[-3000:]

    def started(self) -> dict[int, str]:
        """Every process of the demo's group now, with the demo's own pid."""
        self.wait_for("demo: spawner at")
        groups = [int(re.search(r"processes in group (\d+)", self.output).group(1)),
                  int(re.search(r"started here, process group (\d+)", self.output).group(1))]
        members = {pid: args for pgid in groups for pid, args in local.group_members(pgid)}
        assert any("cloud-pubsub-emulator" in args for args in members.values()), members
        programs = {local._program(args) for args in members.values()}
        assert {"emulator", "celery", "status", "spawner"} <= programs, members
        return members

    def worker_log(self) -> str:
        return (self.log_dir / "worker.log").read_text()

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def survivors(pids: dict[int, str], timeout: float) -> dict[int, str]:
    def left() -> dict[int, str]:
        return {pid: args for pid, args in pids.items() if os.path.exists(f"/proc/{pid}")
                and not Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")}
    wait_until(lambda: not left(), timeout, step=0.2)
    return left()


def times(log: str, pattern: re.Pattern, task_id: str) -> list[float]:
    return [datetime.strptime(at, "%Y-%m-%d %H:%M:%S,%f").timestamp()
            for at, found in pattern.findall(log) if found == task_id]


TOUR = """
import json, time
from demo_tasks import mock_job
sent = {}
sent['tour_at'] = time.time(); sent['tour'] = mock_job.delay(sleep_duration=1).id
sent['failing_at'] = time.time(); sent['failing'] = mock_job.delay(raise_error=True).id
print(json.dumps(sent))
"""


def test_the_demo_keeps_up_and_the_tour_jobs_run_on_time(tmp_path):
    demo = Demo(tmp_path, "--status-every", "2")
    try:
        members = demo.started()
        load_started = time.monotonic()
        wait_until(lambda: time.monotonic() - load_started > 12, 15, step=0.5)  # let the load build
        tour = subprocess.run([sys.executable, "-c", TOUR], cwd=ROOT, capture_output=True, text=True,
                              timeout=60, env=dict(demo_env(), PUBSUB_EMULATOR_HOST=f"127.0.0.1:{demo.port}",
                                                   MOCK_JOB_RETRY_DELAY="300"))  # the worker's counts
        sent = json.loads(tour.stdout)
        demo.wait_for(f"Moved failed job demo_tasks.mock_job[{sent['failing']}] to the morgue", 20)
        wait_until(lambda: time.monotonic() - load_started > 40, 30, step=0.5)
        demo.process.send_signal(signal.SIGTERM)
        assert demo.process.wait(60) == 0
    finally:
        demo.kill()
    log, output = demo.worker_log(), demo.output

    tour_runs = times(log, EXECUTING, sent["tour"])
    assert len(tour_runs) == 1 and tour_runs[0] - sent["tour_at"] < 1.0, (tour_runs, sent)
    runs = times(log, EXECUTING, sent["failing"])
    assert len(runs) == 3, runs
    assert all(4.9 <= later - earlier <= 7.0 for earlier, later in zip(runs, runs[1:], strict=False)), runs
    assert times(log, MORGUE, sent["failing"])[0] - sent["failing_at"] < 15.0
    assert output.count("Traceback") == 0 and "JobError" not in output  # one line per buried job

    spawned = int(re.search(r"spawner: sent (\d+) jobs in", output).group(1))
    started = {task_id for _, task_id in EXECUTING.findall(log)}
    assert spawned > 120
    assert len(started) >= spawned + 2 - 50  # all but those sent in the last ~10 s
    under_load = output.split("demo: stopping")[0]  # a worker shutting down starts no retries
    lines = [(int(sent_), int(backlog), float(oldest or 0))
             for sent_, _, backlog, oldest in STATUS.findall(under_load)]
    loaded = lines[5:]  # from 10 s into the load: the worker is warm
    assert len(loaded) >= 10, output
    assert max(oldest for _, _, oldest in loaded) < 3.0, lines
    assert max(backlog for _, backlog, _ in loaded[-5:]) <= 15, lines
    assert "FALLING BEHIND" not in output
    # The spawner counts the delay() calls that returned: one it was making when SIGTERM came
    # may have reached Pub/Sub too, so the status line can count one more.
    counted = re.search(r"status at exit: sent (\d+) \|", output)
    assert counted and spawned + 2 <= int(counted.group(1)) <= spawned + 3, output[-2000:]
    assert "demo: stopped; nothing it started is running" in output
    assert not survivors(members, 10) and not port_open("127.0.0.1", demo.port)


@pytest.mark.parametrize("how", ["terminal closed", "demo killed"])
def test_nothing_the_demo_started_survives_it(tmp_path, how):
    demo = Demo(tmp_path, terminal=how == "terminal closed")
    try:
        members = demo.started()
        if how == "terminal closed":
            os.close(demo.master)  # the kernel sends SIGHUP; the terminal is gone for writes
            assert demo.process.wait(60) == 0
        else:
            os.kill(demo.process.pid, signal.SIGKILL)  # no chance to clean up: the guard does
            demo.process.wait(10)
        left = survivors(members, GUARD_GRACE + 10)
        assert not left, left
        assert not port_open("127.0.0.1", demo.port)
    finally:
        demo.kill()


def test_an_earlier_run_that_left_processes_behind_is_cleaned_up(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(local, "STATE_DIR", tmp_path)
    # The run's shell (its pid: the group id) is gone; what it started lives on, orphaned.
    shell = subprocess.Popen(["sh", "-c", f"{sys.executable} -c 'import time; time.sleep(120)' "
                              "demo_tasks.status >/dev/null & echo $!"], stdout=subprocess.PIPE,
                             text=True, process_group=0)
    leftover = int(shell.stdout.readline())
    shell.wait()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / f"run-{dead.pid}.json").write_text(json.dumps({"pid": dead.pid, "groups": [shell.pid],
                                                               "port": 8085}))
    try:
        local.clean_stale_runs(Console(sys.stdout))
        assert not survivors({leftover: "leftover"}, 5)
    finally:
        if survivors({leftover: "leftover"}, 0):
            os.kill(leftover, signal.SIGKILL)
    said = capsys.readouterr().out
    assert f"an earlier run (pid {dead.pid}) ended without stopping its processes; stopped them" in said
    assert not list(tmp_path.glob("run-*.json"))


def test_a_taken_default_port_makes_the_demo_pick_a_free_one_and_say_so(monkeypatch, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(local, "EMULATOR_PORT", taken.getsockname()[1])
        port = local.choose_port(None, Console(sys.stdout))
        assert port != local.EMULATOR_PORT and not port_open("127.0.0.1", port)
        assert f"port {local.EMULATOR_PORT} is taken" in capsys.readouterr().out
        with pytest.raises(local.DemoError, match="pass another --port"):
            local.choose_port(local.EMULATOR_PORT, Console(sys.stdout))
