"""What the demo is doing, one line every few seconds: `python -m demo_tasks.status`.

Counts come from Celery's task events, which the demo app's producers (``task-sent``)
and its workers (``-E``: received, started, succeeded, retried, failed) publish on
the ``celeryev`` exchange. Pub/Sub has no queue depth on the emulator (Cloud Monitoring
is absent there and 1–2 minutes stale in production), so the backlog is counted from the
same events: a job is *waiting* from the moment it was sent, or its retry fell due,
until a worker starts it. Jobs sent before this watcher subscribed are not seen until
a worker reports on them.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

#: A waiting job older than this means the workers are not keeping up.
BEHIND_AFTER = 10.0
#: A worker that sent no heartbeat for this long is counted as gone (Celery sends one every 2 s).
WORKER_SILENT_AFTER = 10.0
READY_LINE = "status: watching task events"
THREAD_NAME = "demo-status-printer"

WAITING, RUNNING, RETRYING, SUCCEEDED, MORGUE, GONE = \
    "waiting", "running", "retrying", "succeeded", "morgue", "gone"


@dataclasses.dataclass
class Job:
    state: str
    #: When the job was first seen waiting for a worker (monotonic seconds).
    waiting_since: float
    #: When its next run is due (a retry's ETA), None when due at once or not known.
    eta: datetime.datetime | None = None


@dataclasses.dataclass(frozen=True)
class Counts:
    sent: int
    running: int
    succeeded: int
    retrying: int
    morgue: int
    backlog: int
    oldest_waiting: float
    workers: int

    def line(self) -> str:
        """The status line a person reads at a glance."""
        text = (f"status: sent {self.sent} | running {self.running} | succeeded {self.succeeded} | "
                f"retrying {self.retrying} | morgue {self.morgue} | backlog {self.backlog}")
        if self.backlog:
            text += f" (oldest {self.oldest_waiting:.1f}s)"
        text += f" | workers {self.workers}"
        if self.oldest_waiting > BEHIND_AFTER:
            text += " | FALLING BEHIND: jobs wait for a free worker slot"
        return text


class Tally:
    """Job states by task id, fed Celery events one at a time (thread-safe).

    A job is counted as sent the first time any event names it. A retry's ETA comes with
    the ``task-sent`` (or ``task-received``) event of the retried message; until it is due
    the job is *retrying*, after that it is back in the backlog until it starts again.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC)) -> None:
        self._clock = clock
        self._now = now
        self._lock = threading.Lock()  # protects _jobs and _workers
        self._jobs: dict[str, Job] = {}
        #: worker hostname → monotonic time of its last event
        self._workers: dict[str, float] = {}

    def on_event(self, event: dict[str, Any]) -> None:
        """Take one event (runs on the receiving thread)."""
        kind = event.get("type", "")
        with self._lock:
            if kind.startswith("worker-"):
                self._on_worker_event(kind, event.get("hostname", ""))
            elif kind.startswith("task-") and event.get("uuid"):
                self._on_task_event(kind, event)

    def _on_worker_event(self, kind: str, hostname: str) -> None:
        if kind == "worker-offline":
            self._workers.pop(hostname, None)
        else:
            self._workers[hostname] = self._clock()

    def _on_task_event(self, kind: str, event: dict[str, Any]) -> None:
        job = self._jobs.get(event["uuid"])
        if job is None:
            job = self._jobs[event["uuid"]] = Job(WAITING, self._clock())
        if kind in ("task-sent", "task-received") and event.get("eta"):
            job.eta = _parse_eta(event["eta"])
        elif kind == "task-started":
            job.state, job.eta = RUNNING, None
        elif kind == "task-succeeded":
            job.state = SUCCEEDED
        elif kind == "task-retried":
            job.state = RETRYING
        elif kind in ("task-failed", "task-rejected"):
            job.state = MORGUE  # the demo app sends every final failure to the morgue
        elif kind == "task-revoked":
            job.state = GONE

    def counts(self) -> Counts:
        """The counts as of now (any thread)."""
        with self._lock:
            now, wall = self._clock(), self._now()
            states = {state: 0 for state in (RUNNING, SUCCEEDED, RETRYING, MORGUE)}
            backlog, oldest = 0, 0.0
            for job in self._jobs.values():
                if job.state not in (WAITING, RETRYING):
                    if job.state in states:
                        states[job.state] += 1
                elif job.eta is not None and job.eta > wall or job.state == RETRYING and job.eta is None:
                    states[RETRYING] += 1  # waiting for its retry delay to pass
                else:
                    backlog += 1
                    age = now - job.waiting_since if job.eta is None else (wall - job.eta).total_seconds()
                    oldest = max(oldest, age)
            workers = sum(1 for seen in self._workers.values() if now - seen < WORKER_SILENT_AFTER)
            return Counts(sent=len(self._jobs), running=states[RUNNING], succeeded=states[SUCCEEDED],
                          retrying=states[RETRYING], morgue=states[MORGUE], backlog=backlog,
                          oldest_waiting=oldest, workers=workers)


def _parse_eta(value: Any) -> datetime.datetime | None:
    try:
        eta = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return eta if eta.tzinfo else eta.replace(tzinfo=datetime.UTC)


class Printer:
    """Writes the tally's line every `interval` seconds on its own thread."""

    def __init__(self, tally: Tally, interval: float, out: TextIO) -> None:
        self._tally, self._interval, self._out = tally, interval, out
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(self._interval + 1)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            print(self._tally.counts().line(), file=self._out, flush=True)


def watch(interval: float, out: TextIO = sys.stdout, ready_file: Path | None = None) -> Counts:
    """Print the status line every `interval` s until SIGINT/SIGTERM/SIGHUP; return the last counts.

    Once subscribed to the events, says so on `out` and creates `ready_file` if given.
    """
    from demo_tasks import app

    tally = Tally()
    printer = Printer(tally, interval, out)
    with app.connection_for_read() as connection:
        receiver = app.events.Receiver(connection, handlers={"*": tally.on_event})

        def stop(signum: int, frame: object) -> None:
            receiver.should_stop = True

        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, stop)
        ready = receiver.on_consume_ready

        def on_consume_ready(*args: Any, **kwargs: Any) -> None:
            ready(*args, **kwargs)
            print(f"{READY_LINE} (one line every {interval:g}s)", file=out, flush=True)
            if ready_file is not None:
                ready_file.touch()
            printer.start()

        receiver.on_consume_ready = on_consume_ready
        receiver.capture(limit=None, timeout=None, wakeup=True)
    printer.stop()
    return tally.counts()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo_tasks.status", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=float, default=5.0, help="seconds between lines (default 5)")
    parser.add_argument("--ready-file", type=Path, help="created once subscribed (a healthcheck)")
    args = parser.parse_args(argv)
    if args.every <= 0:
        parser.error("--every must be above 0 seconds")
    last = watch(args.every, ready_file=args.ready_file)
    print(last.line().replace("status:", "status at exit:", 1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
