"""The whole demo without Docker: `python -m demo_tasks.local`.

Starts a Pub/Sub emulator (unless PUBSUB_EMULATOR_HOST points at one), the status line
(``demo_tasks.status``), a worker on QUEUE_NAME sized for sleeping jobs and the spawner
at 5 jobs/s. Ctrl-C, SIGTERM or closing the terminal (SIGHUP) stops them in order:
spawner, worker (warm shutdown: running jobs finish, prefetched ones are released),
status (a last line), emulator. All of them run in one process group that a guard
stops if the demo itself dies, and an earlier run that left processes behind is
cleaned up at the next start.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from demo_tasks.processes import Child, Console, ProcessGroup, WarningsOnly, group_members, stop_group
from demo_tasks.status import READY_LINE

EMULATOR_PORT = 8085
START_TIMEOUT = 60.0
#: How the demo worker runs, here and in docker-compose.yml: jobs mostly sleep, so threads
#: (not one process per CPU) and enough of them for 5 jobs/s of 0–5 s sleeps, a quarter
#: of them run three times (about 19 busy on average).
WORKER_OPTIONS = ("-E", "-P", "threads", "-c", "32", "--without-gossip", "--without-mingle")
#: Seconds a warm worker shutdown may take: the longest job sleeps 5 s.
WORKER_STOP_TIMEOUT = 30.0
STATE_DIR = Path(tempfile.gettempdir()) / f"kombu-pubsub-demo-{os.getuid()}"


class DemoError(Exception):
    """The demo cannot start; the message says why and what to do."""


class Stop(Exception):
    """A signal asked the demo to stop."""


class Signals:
    """SIGINT, SIGTERM and SIGHUP: the first stops the demo, the next ones hurry the stop."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.hurry = False
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_signal)

    def stopping(self) -> None:
        """From now on a signal only hurries the stop under way."""
        if self.received is None:
            self.received = 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
            raise Stop
        self.hurry = True


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_runs(console: Console) -> None:
    """Stop what earlier demo runs that died without cleaning up left running; say what."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    for state_file in STATE_DIR.glob("run-*.json"):
        try:
            state = json.loads(state_file.read_text())
            pid, groups = int(state["pid"]), [int(pgid) for pgid in state["groups"]]
        except (OSError, ValueError, KeyError, TypeError):
            state_file.unlink(missing_ok=True)
            continue
        if pid_alive(pid):
            continue  # another demo run, still going
        for pgid in groups:
            members = group_members(pgid)
            # Only a group that still runs our programs: its id may have been reused since.
            if members and any("demo_tasks" in args or "pubsub" in args for _, args in members):
                names = ", ".join(sorted({_program(args) for _, args in members}))
                stopped = stop_group(pgid)
                console.line(f"demo: an earlier run (pid {pid}) ended without stopping its processes; "
                             f"{'stopped' if stopped else 'could not stop all of'} them: process group "
                             f"{pgid} ({names}){_port_note(state, names)}")
        state_file.unlink(missing_ok=True)
        shutil.rmtree(STATE_DIR / f"run-{pid}", ignore_errors=True)


def _program(args: str) -> str:
    for known in ("demo_tasks.status", "demo_tasks.spawner", "celery", "cloud-pubsub-emulator"):
        if known in args:
            return "emulator" if known == "cloud-pubsub-emulator" else known.removeprefix("demo_tasks.")
    return Path(args.split(" ", 1)[0]).name or "?"


def _port_note(state: dict, names: str) -> str:
    if "emulator" in names and state.get("port"):
        return f"; port {state['port']} is free again"
    return ""


def choose_port(asked: int | None, console: Console) -> int:
    """The emulator's port: the one asked for, else 8085, else a free one (said so)."""
    if asked is not None:
        if port_open(asked):
            raise DemoError(f"port {asked} is taken; pass another --port, or leave --port out to "
                            "let the demo pick a free one")
        return asked
    if not port_open(EMULATOR_PORT):
        return EMULATOR_PORT
    port = free_port()
    console.line(f"demo: port {EMULATOR_PORT} is taken by a program this demo did not start; "
                 f"the emulator listens on {port} instead")
    return port


def emulator_argv(port: int) -> list[str]:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise DemoError("gcloud not found: install the Google Cloud CLI and its pubsub-emulator "
                        "component, or set PUBSUB_EMULATOR_HOST to a running emulator")
    return [gcloud, "beta", "emulators", "pubsub", "start", f"--host-port=127.0.0.1:{port}", "--quiet"]


def wait_for_emulator(group: ProcessGroup, port: int, log_path: Path) -> Child:
    """Start the emulator in `group` and wait until it listens on `port`."""
    # gcloud moves itself into a process group of its own before it starts Java.
    emulator = group.start_quiet("emulator", emulator_argv(port), log_path, own_group=True)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        output = log_path.read_text(errors="replace")
        if f"listening on {port}" in output:
            return emulator
        if "BindException" in output or not emulator.alive() or time.monotonic() > deadline:
            raise DemoError(f"the Pub/Sub emulator did not start on port {port} (is Java 17+ "
                            f"installed?); its log: {log_path}")
        time.sleep(0.2)


def wait_ready(child: Child, what: str, log_path: Path | None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not child.ready.wait(0.2):
        if not child.alive() or time.monotonic() > deadline:
            where = f"; its log: {log_path}" if log_path else ""
            raise DemoError(f"the {what} did not start{where}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m demo_tasks.local", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, help="emulator port (default 8085, or a free one if taken)")
    parser.add_argument("--rate", type=float, default=5.0, help="jobs per second (default 5)")
    parser.add_argument("--status-every", type=float, default=5.0, metavar="SECONDS",
                        help="seconds between status lines (default 5)")
    parser.add_argument("--log-dir", type=Path, help="where worker.log and emulator.log go "
                        f"(default {STATE_DIR}/run-<pid>)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show the worker's whole log here, not only warnings and errors")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(sys.stdout)
    signals = Signals()
    log_dir = args.log_dir or STATE_DIR / f"run-{os.getpid()}"
    state_file = STATE_DIR / f"run-{os.getpid()}.json"
    group: ProcessGroup | None = None
    try:
        clean_stale_runs(console)
        log_dir.mkdir(parents=True, exist_ok=True)
        group = ProcessGroup()
        run(args, console, group, log_dir, state_file)
        return 1  # a child exited on its own: run() said which
    except Stop:
        return 0
    except DemoError as exc:
        console.line(f"demo: {exc}")
        return 1
    finally:
        signals.stopping()
        if group is not None:
            shut_down(group, console, signals, log_dir)
        state_file.unlink(missing_ok=True)


def remember(state_file: Path, group: ProcessGroup, port: int | None) -> None:
    """Write down this run's process groups, for a next start to clean up if the run dies."""
    state_file.write_text(json.dumps({"pid": os.getpid(), "groups": [group.pgid, *group.other_groups],
                                      "port": port}))


def run(args: argparse.Namespace, console: Console, group: ProcessGroup, log_dir: Path,
        state_file: Path) -> None:
    """Start everything in `group`, then wait until a child exits (or a signal raises Stop)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    port = None
    if not env.get("PUBSUB_EMULATOR_HOST"):
        port = choose_port(args.port, console)
        env["PUBSUB_EMULATOR_HOST"] = f"127.0.0.1:{port}"
    remember(state_file, group, port)
    console.line(f"demo: processes in group {group.pgid}; Ctrl-C, SIGTERM or closing the terminal "
                 f"stops them all. Logs: {log_dir}")
    if port is not None:
        emulator = wait_for_emulator(group, port, log_dir / "emulator.log")
        remember(state_file, group, port)
        console.line(f"demo: emulator on {env['PUBSUB_EMULATOR_HOST']} (started here, process "
                     f"group {emulator.process.pid})")
    else:
        console.line(f"demo: emulator on {env['PUBSUB_EMULATOR_HOST']} (PUBSUB_EMULATOR_HOST)")
    py = sys.executable
    status = group.start("status", [py, "-m", "demo_tasks.status", "--every", f"{args.status_every:g}"],
                         env, console, ready_text=READY_LINE)
    wait_ready(status, "status watcher", None)
    queue = env.get("QUEUE_NAME", "default")
    worker_log = log_dir / "worker.log"
    worker = group.start("worker", [py, "-m", "celery", "-A", "demo_tasks", "worker", "-Q", queue,
                                    *WORKER_OPTIONS, "-l", "info"],
                         env, console, log_path=worker_log,
                         show=(lambda line: True) if args.verbose else WarningsOnly(), ready_text=" ready.")
    wait_ready(worker, "worker", worker_log)
    console.line(f"demo: worker ready on queue {queue!r} ({' '.join(WORKER_OPTIONS[1:5])}); retries "
                 f"after {env.get('MOCK_JOB_RETRY_DELAY', '300')}s (MOCK_JOB_RETRY_DELAY, read by the "
                 f"worker); its warnings and errors show here, all of it in {worker_log}")
    group.start("spawner", [py, "-m", "demo_tasks.spawner", "--rate", f"{args.rate:g}", "--progress", "0"],
                env, console)
    console.line(f"demo: spawner at {args.rate:g} jobs/s. From another shell: "
                 f"export PUBSUB_EMULATOR_HOST={env['PUBSUB_EMULATOR_HOST']} QUEUE_NAME={queue}")
    while all(child.alive() for child in group.children):
        time.sleep(0.5)
    gone = next(child for child in group.children if not child.alive())
    console.line(f"demo: the {gone.name} exited (code {gone.process.returncode}); stopping the rest")


def shut_down(group: ProcessGroup, console: Console, signals: Signals, log_dir: Path) -> None:
    """Stop the children in order, then whatever is left in the group; say what happened."""
    console.line("demo: stopping: spawner, worker (warm shutdown: running jobs finish; "
                 "Ctrl-C again to stop at once), status, emulator")
    by_name = {child.name: child for child in group.children}
    for name, timeout in (("spawner", 10.0), ("worker", WORKER_STOP_TIMEOUT), ("status", 10.0)):
        if name in by_name and not by_name[name].terminate(timeout, lambda: signals.hurry):
            console.line(f"demo: the {name} did not stop in time and was killed")
    if group.close():
        console.line(f"demo: stopped; nothing it started is running. Logs: {log_dir}")
    else:
        groups = " ".join(f"-{pgid}" for pgid in (group.pgid, *group.other_groups))
        console.line(f"demo: some processes it started are still running; stop them with: "
                     f"kill -KILL -- {groups}")


if __name__ == "__main__":
    sys.exit(main())
