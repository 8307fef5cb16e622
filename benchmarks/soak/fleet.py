"""The processes a soak runs and hurts: its workers (one slot each, restarted after a fault),
its producer, and the emulator it pauses. Every fault is recorded as a window.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..procs import REPO_ROOT, child_env, stop_process
from ..worker import Worker
from . import plan

#: How long a warm shutdown may take before it is escalated to SIGKILL, seconds
#: (the longest job sleeps 5 s; a worker also gives back what it prefetched).
WARM_STOP_GRACE = 60.0


@dataclasses.dataclass
class Window:
    """One fault: when it began and when the system was whole again (the worker or producer
    back, Pub/Sub reachable). `nodes` are the worker incarnations it hit."""

    kind: str
    start: float
    end: float = 0.0
    target: str = ""
    nodes: list[str] = dataclasses.field(default_factory=list)
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)


class Fleet:
    """Worker slots: slot i runs incarnation ``w{i}g{n}`` of the soak worker on its pool."""

    def __init__(self, workdir: Path, env: dict[str, str], pools: tuple[tuple[str, int], ...],
                 loglevel: str) -> None:
        self._workdir = workdir
        self._env = env
        self._pools = pools
        self._loglevel = loglevel
        self._lock = threading.Lock()  # guards workers, busy, generations
        self.workers: list[Worker | None] = [None] * len(pools)
        self.busy = [False] * len(pools)
        self._generations = [0] * len(pools)

    def start(self, slot: int) -> Worker:
        with self._lock:
            generation = self._generations[slot] = self._generations[slot] + 1
        pool, concurrency = self._pools[slot]
        worker = Worker(self._workdir, f"w{slot}g{generation}", self._env, plan.QUEUE, pool, concurrency,
                        self._loglevel, stop_grace=WARM_STOP_GRACE, app="benchmarks.soak.app",
                        extra_args=("--without-gossip", "--without-mingle"))
        worker.start()
        with self._lock:
            self.workers[slot] = worker
        return worker

    def start_all(self) -> None:
        started = [self.start(slot) for slot in range(len(self._pools))]
        for worker in started:
            worker.wait_ready(timeout=120.0)

    def claim(self, preferred: int) -> int | None:
        """Mark a slot busy for a fault: `preferred`, else the next free one; None if all are busy."""
        with self._lock:
            for offset in range(len(self._pools)):
                slot = (preferred + offset) % len(self._pools)
                if not self.busy[slot] and self.workers[slot] is not None:
                    self.busy[slot] = True
                    return slot
        return None

    def release(self, slot: int) -> None:
        with self._lock:
            self.busy[slot] = False

    def node(self, slot: int) -> str:
        worker = self.workers[slot]
        return worker.name if worker is not None else ""

    def kill(self, slot: int, window: Window) -> None:
        """SIGKILL the slot's worker and its pool; start the next incarnation; wait until it is ready."""
        worker = self.workers[slot]
        if worker is not None:
            window.nodes.append(worker.name)
            window.start = worker.kill()
        self._restart(slot, window)

    def warm_stop(self, slot: int, window: Window) -> None:
        """SIGTERM (warm shutdown) and wait; SIGKILL past WARM_STOP_GRACE (window says so); restart."""
        worker = self.workers[slot]
        if worker is not None:
            window.nodes.append(worker.name)
            in_time = worker.warm_stop(WARM_STOP_GRACE)
            window.detail["stopped_s"] = round(time.time() - window.start, 3)
            window.detail["escalated_to_kill"] = not in_time
        self._restart(slot, window)

    def _restart(self, slot: int, window: Window) -> None:
        fresh = self.start(slot)
        fresh.wait_ready(timeout=120.0)
        window.end = time.time()
        window.detail["restarted_as"] = fresh.name

    def stop_all(self) -> None:
        threads = [worker.stop_in_background() for worker in self.workers if worker is not None]
        for thread in threads:
            thread.join(WARM_STOP_GRACE + 15.0)

    def memory(self) -> list[tuple[int, str, int, int]]:
        """(slot, node, RSS KiB of the worker and its pool, RSS KiB of the worker process alone)
        for each live worker."""
        rows = []
        for slot, worker in enumerate(list(self.workers)):
            if worker is None:
                continue
            memory = worker.memory_kib()
            if memory:
                rows.append((slot, worker.name, memory["main"] + memory["children"], memory["main"]))
        return rows


class Producer:
    """The producer subprocess (producer.py); killed and started again by the producer-kill fault."""

    def __init__(self, workdir: Path, env: dict[str, str], settings: plan.Settings, t0: float) -> None:
        self._argv = [sys.executable, "-m", "benchmarks.soak.producer",
                      json.dumps({k: v for k, v in dataclasses.asdict(settings).items() if k != "pools"}),
                      f"{t0:.6f}"]
        self._env = child_env(env)
        self._log = workdir / "producer.log"
        self._lock = threading.Lock()  # guards proc, restarts and _killed
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        # Set by kill() until the fault starts it again: its exit is no error to restart on
        # (two producers would send the same jobs).
        self._killed = False

    def start(self) -> None:
        with self._lock:
            self._start_locked()

    def _start_locked(self) -> None:
        self._killed = False
        with open(self._log, "ab") as log:
            self.proc = subprocess.Popen(self._argv, cwd=REPO_ROOT, env=self._env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def kill(self) -> float:
        with self._lock:
            proc = self.proc
            self._killed = True
        killed = time.time()
        if proc is not None:
            stop_process(proc, grace=0.0, whole_group=True, sig=signal.SIGKILL)
        return killed

    def restart_if_dead(self) -> bool:
        """Start it again if it exited with an error (not a fault's doing); True if so."""
        with self._lock:
            proc = self.proc
            if self._killed or proc is None or proc.poll() in (None, 0):
                return False
            self.restarts += 1
            self._start_locked()
            return True

    def finished(self) -> bool:
        with self._lock:
            return self.proc is not None and self.proc.poll() == 0

    def stop(self) -> None:
        with self._lock:
            proc = self.proc
        if proc is not None:
            stop_process(proc, grace=2.0, whole_group=True)

    @property
    def log_file(self) -> Path:
        return self._log
