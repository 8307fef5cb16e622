"""The local demo's child processes: one process group, a guard, and their output.

Every child runs in one process group of its own, so Ctrl-C in the terminal reaches only
the demo, which stops them in order. The group's leader is a guard shell that reads
a pipe only the demo holds: when the demo dies in any way (even SIGKILL), the pipe
closes and the guard stops the whole group (SIGTERM, then SIGKILL after
``GUARD_GRACE`` seconds). A child that moves itself into a process group of its own
(``gcloud`` does, before it starts the emulator's Java process) is started with
``own_group=True``: the demo tells the guard its group id through the same pipe.
Child output is read line by line and written whole, so lines of different processes
never run into each other.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

#: Seconds the guard gives the group between SIGTERM and SIGKILL: a warm worker
#: shutdown lets running jobs (up to 5 s) finish.
GUARD_GRACE = 10
#: Ignores the signals meant for its group; collects group ids (one a line) until EOF; then
#: stops its own group (0) and those. `kill` goes on past a group that is already gone.
GUARD_SCRIPT = ('trap "" INT TERM HUP; groups=0; while read -r pgid; do groups="$groups -$pgid"; done; '
                f'kill -s TERM -- $groups 2>/dev/null; sleep {GUARD_GRACE}; '
                'kill -s KILL -- $groups 2>/dev/null')
#: A Celery log record's first line: "[2024-01-01 12:00:00,000: WARNING/MainProcess] ...".
LOG_RECORD = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+: (\w+)/")
SHOWN_LEVELS = frozenset({"WARNING", "ERROR", "CRITICAL"})


class Console:
    """Whole lines to the terminal from any thread; a closed terminal (SIGHUP) is ignored."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()  # one line at a time

    def line(self, text: str) -> None:
        with self._lock:
            try:
                self._out.write(text.rstrip("\n") + "\n")
                self._out.flush()
            except (OSError, ValueError):  # the terminal is gone: nothing to show it on
                pass


class WarningsOnly:
    """Decides which lines of a Celery worker's log reach the terminal.

    A record at WARNING or above is shown with its continuation lines (a traceback);
    the banner and INFO/DEBUG records are not.
    """

    def __init__(self) -> None:
        self._showing = False

    def __call__(self, line: str) -> bool:
        match = LOG_RECORD.match(line)
        if match:
            self._showing = match.group(1) in SHOWN_LEVELS
        return self._showing


def _pump(stream: TextIO, log: TextIO | None, console: Console, show: Callable[[str], bool],
          prefix: str, watch_for: str, seen: threading.Event) -> None:
    """Copy a child's output: every line to `log`, the shown ones to the console (own thread)."""
    for line in stream:
        if log is not None:
            log.write(line)
            log.flush()
        if watch_for and watch_for in line:
            seen.set()
        if show(line):
            console.line(prefix + line)
    if log is not None:
        log.close()


class Child:
    """One process of the group, with an event set when its output shows `ready_text`."""

    def __init__(self, name: str, process: subprocess.Popen) -> None:
        self.name = name
        self.process = process
        self.ready = threading.Event()

    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self, timeout: float, hurry: Callable[[], bool] = lambda: False) -> bool:
        """SIGTERM this process only; SIGKILL it after `timeout` s or once `hurry()`; True if it
        exited in time."""
        if not self.alive():
            return True
        self.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline and not hurry():
            try:
                self.process.wait(0.2)
            except subprocess.TimeoutExpired:
                pass
        if self.alive():
            self.process.kill()
            self.process.wait()
            return False
        return True


class ProcessGroup:
    """The guard and every child the demo starts, in one process group."""

    def __init__(self) -> None:
        read_end, self._guard_pipe = os.pipe()
        try:
            self._guard = subprocess.Popen(["/bin/sh", "-c", GUARD_SCRIPT], stdin=read_end,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                           process_group=0)
        finally:
            os.close(read_end)
        #: the process group id: the guard's pid
        self.pgid = self._guard.pid
        #: groups of children that left ours for one of their own (own_group=True)
        self.other_groups: list[int] = []
        self.children: list[Child] = []

    def start(self, name: str, argv: Sequence[str], env: dict[str, str], console: Console,
              log_path: Path | None = None, show: Callable[[str], bool] = lambda line: True,
              prefix: str = "", ready_text: str = "") -> Child:
        """Start `argv` in the group; its output goes to `log_path` and, where `show`, the console."""
        process = subprocess.Popen(list(argv), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, bufsize=1,
                                   process_group=self.pgid)
        child = Child(name, process)
        log = open(log_path, "w") if log_path is not None else None  # noqa: SIM115 - closed by the pump
        threading.Thread(target=_pump, name=f"demo-output-{name}", daemon=True,
                         args=(process.stdout, log, console, show, prefix, ready_text, child.ready)).start()
        self.children.append(child)
        return child

    def start_quiet(self, name: str, argv: Sequence[str], log_path: Path, own_group: bool = False) -> Child:
        """Start `argv` in the group with its output to `log_path` only (the emulator).

        `own_group`: the program makes itself the leader of a new process group, which is
        then stopped with ours.
        """
        with open(log_path, "w") as log:
            process = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, process_group=self.pgid)
        if own_group:
            os.write(self._guard_pipe, f"{process.pid}\n".encode())
            self.other_groups.append(process.pid)
        child = Child(name, process)
        self.children.append(child)
        return child

    def close(self, timeout: float = 10.0) -> bool:
        """Stop whatever is left in the groups (SIGTERM, SIGKILL after `timeout` s), the guard last.

        Returns True when no process of the groups is left.
        """
        groups = [self.pgid, *self.other_groups]
        for pgid in groups:
            _killpg(pgid, signal.SIGTERM)  # the guard ignores it
        deadline = time.monotonic() + timeout
        for child in self.children:
            _wait(child.process, deadline - time.monotonic())
        for pgid in groups:
            _killpg(pgid, signal.SIGKILL)  # the guard too, and anything that ignored SIGTERM
        for process in (*(child.process for child in self.children), self._guard):
            _wait(process, 5.0)
        os.close(self._guard_pipe)
        return all([_group_gone(pgid, timeout=5.0) for pgid in groups])


def _wait(process: subprocess.Popen, timeout: float) -> None:
    try:
        process.wait(max(0.0, timeout))
    except subprocess.TimeoutExpired:
        pass


def _killpg(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def _group_gone(pgid: int, timeout: float) -> bool:
    """Wait until no live process is left in group `pgid` (zombies, which a parent has yet
    to reap, do not count)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if not group_members(pgid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def group_members(pgid: int) -> list[tuple[int, str]]:
    """(pid, command line) of each live (not zombie) process in group `pgid`, read with `ps`."""
    try:
        listing = subprocess.run(["ps", "-A", "-ww", "-o", "pid=,pgid=,stat=,args="], capture_output=True,
                                 text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    members = []
    for row in listing.splitlines():
        parts = row.split(None, 3)
        if len(parts) >= 3 and parts[1] == str(pgid) and not parts[2].startswith("Z"):
            members.append((int(parts[0]), parts[3] if len(parts) > 3 else ""))
    return members


def stop_group(pgid: int, timeout: float = 10.0) -> bool:
    """SIGTERM group `pgid`, SIGKILL it after `timeout` s; True once it is empty."""
    _killpg(pgid, signal.SIGTERM)
    if _group_gone(pgid, timeout):
        return True
    _killpg(pgid, signal.SIGKILL)
    return _group_gone(pgid, 5.0)
