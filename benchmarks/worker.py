"""The stock ``celery worker`` as a subprocess: start, wait for ready, read records, stop."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

from .procs import (
    REPO_ROOT,
    child_env,
    child_pids,
    status_kib,
    stop_process,
    tail,
    thread_count,
    tree_cpu_seconds,
)

READY_TIMEOUT = 60.0


class WorkerFailed(RuntimeError):
    """The worker died, never got ready, or did not finish the work in time."""


class Worker:
    """Context manager around ``celery -A APP worker`` (the bench app by default); always stopped on exit.

    `app` must write BENCH_READY_FILE on worker_ready as ``benchmarks.bench_app`` does;
    `extra_args` are added to the worker's command line.
    """

    def __init__(self, workdir: Path, name: str, env: dict[str, str], queue: str,
                 pool: str, concurrency: int, loglevel: str = "WARNING", stop_grace: float = 15.0,
                 count_received: bool = False, app: str = "benchmarks.bench_app",
                 extra_args: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.name = name
        self.ready_file = workdir / f"{name}.ready"
        self.record_file = workdir / f"{name}.records"
        self.received_file = workdir / f"{name}.received"
        self.log_file = workdir / f"{name}.log"
        extra = {"BENCH_READY_FILE": str(self.ready_file), "BENCH_RECORD_FILE": str(self.record_file)}
        if count_received:  # one write per message received: only where it is measured
            extra["BENCH_RECEIVED_FILE"] = str(self.received_file)
        self._env = child_env({**env, **extra})
        self._argv = [sys.executable, "-m", "celery", "-A", app, "worker",
                      "-Q", queue, "-P", pool, "-c", str(concurrency), "-n", f"{name}@%h",
                      f"--loglevel={loglevel}", *extra_args]
        self._proc: subprocess.Popen[bytes] | None = None
        self._stop_grace = stop_grace
        self.started_wall = 0.0
        self.ready_cpu = 0.0  # CPU seconds of the worker and its pool at ready (from the ready file)
        self.stop_seconds: float | None = None

    def __enter__(self) -> Worker:
        return self.start()

    def start(self) -> Worker:
        """Spawn the worker (in its own process group); returns at once."""
        for path in (self.ready_file, self.record_file, self.received_file):
            path.unlink(missing_ok=True)
        with open(self.log_file, "ab") as log:
            self.started_wall = time.time()
            self._proc = subprocess.Popen(self._argv, cwd=REPO_ROOT, env=self._env, stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> float:
        """Warm shutdown (SIGTERM), SIGKILL after the grace period; return how long the stop took."""
        start = time.monotonic()
        if self._proc is not None:
            stop_process(self._proc, grace=self._stop_grace)
            self._proc = None
        return time.monotonic() - start

    def warm_stop(self, grace: float) -> bool:
        """SIGTERM (Celery's warm shutdown); SIGKILL the group after `grace` s. True if it ended in time."""
        proc, self._proc = self._proc, None
        if proc is None:
            return True
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(grace)
            in_time = True
        except ProcessLookupError:
            in_time = True
        except subprocess.TimeoutExpired:
            in_time = False
        stop_process(proc, grace=0.0, whole_group=True, sig=signal.SIGKILL)  # lingering pool children
        return in_time

    def kill(self) -> float:
        """SIGKILL the worker and its pool at once (a crash: nothing is acked or released).

        Returns the wall-clock time of the kill.
        """
        killed = time.time()
        if self._proc is not None:
            stop_process(self._proc, grace=0.0, whole_group=True, sig=signal.SIGKILL)
            self._proc = None
        return killed

    def stop_in_background(self) -> threading.Thread:
        """Start stop() on a thread (the shutdown is mostly waiting); join it before timing anything."""
        thread = threading.Thread(target=self._timed_stop, name=f"stop-{self.name}", daemon=True)
        thread.start()
        return thread

    def _timed_stop(self) -> None:
        self.stop_seconds = self.stop()

    def _check_alive(self, doing: str) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise WorkerFailed(f"worker exited with {self._proc.returncode} while {doing}; "
                               f"log {self.log_file} tail:\n{tail(self.log_file)}")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> float:
        """Block until the worker_ready signal fired; return its wall-clock time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive("starting")
            try:
                text = self.ready_file.read_text(encoding="ascii").strip()
            except FileNotFoundError:
                text = ""
            if text:
                ready, _, cpu = text.partition(" ")
                self.ready_cpu = float(cpu or 0.0)
                return float(ready)
            time.sleep(0.05)
        raise WorkerFailed(f"worker not ready within {timeout:.0f}s; log {self.log_file} tail:\n"
                           f"{tail(self.log_file)}")

    @property
    def pid(self) -> int | None:
        """The main (consumer) process id while the worker runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def memory_kib(self) -> dict[str, int] | None:
        """VmRSS and peak (VmHWM) of the main process and the sums over its children, KiB.

        None once the worker is gone. Children are the pool processes (prefork).
        """
        pid = self.pid
        if pid is None:
            return None
        main, peak = status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM")
        if main is None or peak is None:
            return None
        kids = child_pids(pid)
        children = [status_kib(child, "VmRSS") for child in kids]
        children_hwm = [status_kib(child, "VmHWM") for child in kids]
        return {"main": main, "main_hwm": peak, "children": sum(kib for kib in children if kib),
                "children_hwm": sum(kib for kib in children_hwm if kib),
                "processes": 1 + sum(1 for kib in children if kib)}

    def cpu_seconds(self) -> float | None:
        """CPU seconds the worker's main process and its live pool children used so far."""
        pid = self.pid
        return tree_cpu_seconds(pid) if pid is not None else None

    def thread_count(self) -> int | None:
        """Threads of the main (consumer) process (/proc/PID/status); None once the worker is gone."""
        pid = self.pid
        return thread_count(pid) if pid is not None else None

    def received(self) -> int:
        """Task messages Celery received so far (needs count_received=True)."""
        try:
            return self.received_file.stat().st_size // 2  # one "r\n" per message
        except FileNotFoundError:
            return 0

    def records(self) -> list[tuple[float, float]]:
        """Every (done time, sent time) a task recorded so far."""
        try:
            text = self.record_file.read_text(encoding="ascii")
        except FileNotFoundError:
            return []
        rows = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2:
                rows.append((float(parts[0]), float(parts[1])))
        return rows

    def wait_records(self, count: int, timeout: float, measured_only: bool = False,
                     stall: float | None = None) -> list[tuple[float, float]]:
        """Block until `count` records (with sent > 0 if `measured_only`); return them all.

        Raises WorkerFailed on a timeout, or when nothing new was recorded for
        `stall` seconds, saying how many arrived.
        """
        deadline = time.monotonic() + timeout
        last_count, last_change = -1, time.monotonic()
        while True:
            rows = self.records()
            done = [row for row in rows if row[1] > 0] if measured_only else rows
            if len(done) >= count:
                return rows
            now = time.monotonic()
            if len(done) != last_count:
                last_count, last_change = len(done), now
            self._check_alive(f"running tasks ({len(done)}/{count} done)")
            if now > deadline or (stall is not None and now - last_change > stall):
                why = f"timed out after {timeout:.0f}s" if now > deadline else \
                    f"no task finished for {stall:.0f}s"
                raise WorkerFailed(f"{why} with {len(done)}/{count} tasks done; log {self.log_file} "
                                   f"tail:\n{tail(self.log_file)}")
            time.sleep(0.05)
