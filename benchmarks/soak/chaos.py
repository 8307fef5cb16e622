"""The fault injector: runs the seeded schedule (plan.faults) against the fleet, the producer
and the emulator, each fault on a thread of its own so faults may overlap.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from tests.emulator import Emulator

from . import plan
from .fleet import Fleet, Producer, Window
from .producer import resume_index

logger = logging.getLogger(__name__)

#: How long a producer kill waits for the producer to be inside a burst, seconds.
BURST_WAIT = 3.0
#: How long after a producer restart its first recorded job may take, seconds.
PRODUCER_BACK_WAIT = 60.0


class Chaos:
    """Owns the thread "soak-chaos" that starts each fault at its time; stop() waits for them all."""

    def __init__(self, schedule: list[plan.Fault], t0: float, fleet: Fleet, producer: Producer,
                 emulator: Emulator, ledger_dir: Path, burst: int) -> None:
        self._schedule = schedule
        self._t0 = t0
        self._fleet = fleet
        self._producer = producer
        self._emulator = emulator
        self._ledger_dir = ledger_dir
        self._burst = burst
        self._stop = threading.Event()
        self._lock = threading.Lock()  # guards windows, skipped, errors and _running
        self.windows: list[Window] = []
        self.skipped: list[dict[str, object]] = []
        self.errors: list[str] = []
        self._running: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._run, name="soak-chaos", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """No new faults; wait for those under way (a paused emulator is always resumed)."""
        self._stop.set()
        self._thread.join()
        with self._lock:
            running = list(self._running)
        for thread in running:
            thread.join()

    def _run(self) -> None:
        for fault in self._schedule:
            if self._stop.wait(max(0.0, self._t0 + fault.at - time.time())):
                return
            thread = threading.Thread(target=self._apply, args=(fault,), name=f"soak-fault-{fault.kind}",
                                      daemon=True)
            with self._lock:
                self._running.append(thread)
            thread.start()

    def _apply(self, fault: plan.Fault) -> None:
        try:
            if fault.kind == plan.OUTAGE:
                self._outage(fault)
            elif fault.kind == plan.PRODUCER_KILL:
                self._producer_kill()
            else:
                self._worker_fault(fault)
        except Exception as exc:  # noqa: BLE001 - a failed fault is reported, the soak goes on
            logger.exception("Fault %s at %.1fs failed", fault.kind, fault.at)
            with self._lock:
                self.errors.append(f"{fault.kind} at {fault.at:.1f}s: {exc}")

    def _record(self, window: Window) -> None:
        with self._lock:
            self.windows.append(window)

    def _outage(self, fault: plan.Fault) -> None:
        window = Window(plan.OUTAGE, time.time(), target="emulator", detail={"length_s": fault.length})
        self._record(window)
        self._emulator.pause()
        try:
            time.sleep(fault.length)  # the outage itself: nothing to wait on
        finally:
            self._emulator.resume()
            window.end = time.time()

    def _worker_fault(self, fault: plan.Fault) -> None:
        slot = self._fleet.claim(fault.target)
        if slot is None:
            with self._lock:
                self.skipped.append({"kind": fault.kind, "at": fault.at, "why": "every worker is in a fault"})
            return
        try:
            window = Window(fault.kind, time.time(), target=f"w{slot}")
            self._record(window)
            if fault.kind == plan.KILL:
                self._fleet.kill(slot, window)
            else:
                self._fleet.warm_stop(slot, window)
        finally:
            self._fleet.release(slot)

    def _producer_kill(self) -> None:
        if self._producer.finished():
            with self._lock:
                self.skipped.append({"kind": plan.PRODUCER_KILL, "why": "the producer had finished"})
            return
        mid_burst = self._wait_mid_burst()
        window = Window(plan.PRODUCER_KILL, self._producer.kill(), target="producer")
        self._record(window)
        in_flight = resume_index(self._ledger_dir)
        window.detail.update(mid_burst=mid_burst, in_flight=in_flight)
        self._producer.start()
        deadline = time.time() + PRODUCER_BACK_WAIT
        while resume_index(self._ledger_dir) == in_flight and time.time() < deadline:
            time.sleep(0.2)
        window.end = time.time()

    def _wait_mid_burst(self) -> bool:
        """Wait until the producer has recorded part of a burst; False if none came in BURST_WAIT s."""
        if self._burst <= 1:
            return True
        deadline = time.time() + BURST_WAIT
        while time.time() < deadline:
            # "sent " appears only at the start of a sent line (ids are j<N>, outcomes single words).
            files = self._ledger_dir.glob("producer-*.ledger")
            count = sum(path.read_bytes().count(b"sent ") for path in files)
            if 0 < count % self._burst < self._burst - 1:
                return True
            time.sleep(0.002)
        return False
