"""Durable countdowns: a message not yet due stays in Pub/Sub, not in worker memory.

Pub/Sub has no delayed delivery, so when a pulled message carries a Celery
``eta`` in the future it is given back with its ack deadline pushed out to
(nearly) the time it is due, at most ``max_defer_hop`` seconds a hop. It is
not leased, not in the inbox and not counted against the prefetch meanwhile,
and a worker restart loses nothing: Pub/Sub redelivers it when the deadline
ends.

Each hop counts as a delivery attempt; before a message could run into a
dead-letter policy (at least 5 attempts) it is re-published (the copy is
accepted first, then the original acked), which starts the count again.
The last seconds before the ETA are held in memory, leased like any message
in hand (so it can never lapse and run twice), and handed to Celery
HANDOVER_EARLY seconds before the ETA; Celery's own timer starts it at the ETA.
"""

from __future__ import annotations

import array
import dataclasses
import datetime
import heapq
import itertools
import logging
import math
from collections.abc import Callable
from typing import Any

from .clock import Clock
from .threads import EngineThread, os_threading

logger = logging.getLogger(__name__)

THREAD_NAME = "kombu-pubsub-countdown"
#: Messages due within this many seconds are held in memory instead of deferred:
#: Pub/Sub deadlines are whole seconds and expire a little late.
LOCAL_HOLD = 3.0
#: Held messages are handed to Celery this long before their ETA: Celery's ETA timer
#: (worker_timer_precision, 1 s by default) only plans an entry it already has when it
#: wakes, so a task handed over at its ETA would start up to a second late.
HANDOVER_EARLY = 1.2
#: Re-publish instead of deferring once a message has been delivered this many
#: times: Pub/Sub's smallest max_delivery_attempts is 5.
REPUBLISH_AT_ATTEMPT = 3


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to do with a pulled message: 'deliver', 'hold', 'defer' or 'republish'."""

    action: str
    seconds: float = 0.0


def eta_of(payload: dict[str, Any]) -> datetime.datetime | None:
    """The Celery ETA in a Kombu envelope's headers (protocol 2), or None."""
    headers = payload.get("headers") or {}
    raw = headers.get("eta")
    if not raw or not isinstance(raw, str):
        return None
    try:
        eta = datetime.datetime.fromisoformat(raw)
    except ValueError:
        return None
    if eta.tzinfo is None:  # Celery with enable_utc=False: treat as UTC, like its own default
        eta = eta.replace(tzinfo=datetime.UTC)
    return eta


def plan(payload: dict[str, Any], now: datetime.datetime, delivery_attempt: int,
         max_hop: float) -> Plan:
    """Decide, from the ETA and the delivery attempt, what happens to a pulled message."""
    eta = eta_of(payload)
    if eta is None:
        return Plan("deliver")
    remaining = (eta - now).total_seconds()
    if remaining <= 0:
        return Plan("deliver")
    if remaining <= LOCAL_HOLD:
        return Plan("hold", remaining)
    if delivery_attempt >= REPUBLISH_AT_ATTEMPT:
        return Plan("republish", remaining)
    # Come back about LOCAL_HOLD early; the rest is held in memory.
    return Plan("defer", float(max(1, min(max_hop, math.floor(remaining - LOCAL_HOLD)))))


class Timer(EngineThread):
    """Owns the thread that runs actions at given monotonic times (held messages' hand-over)."""

    def __init__(self, clock: Clock, on_crash: Callable[[BaseException], None]) -> None:
        super().__init__(THREAD_NAME, on_crash)
        self._clock = clock
        # Guards _heap; notified when an earlier item arrives or on stop.
        self._cond = os_threading().Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()

    def call_at(self, when: float, action: Callable[[], None]) -> None:
        """Run `action` on the timer thread at monotonic time `when` (any thread)."""
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._order), action))
            self._cond.notify()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def cancel_all(self) -> int:
        """Forget every action not run yet; return how many there were."""
        with self._cond:
            count = len(self._heap)
            self._heap.clear()
        return count

    def __len__(self) -> int:
        with self._cond:
            return len(self._heap)

    def step(self) -> bool:
        """Timer thread: wait for the earliest action, run what is due."""
        with self._cond:
            if not self._stop.is_set():
                timeout = self._heap[0][0] - self._clock.monotonic() if self._heap else None
                if timeout is None or timeout > 0:
                    self._cond.wait(timeout)
        self.run_due()
        return True

    def run_due(self) -> int:
        """Run every action due by now; return how many ran. One that raises is logged."""
        ran = 0
        while not self._stop.is_set():
            with self._cond:
                if not self._heap or self._heap[0][0] > self._clock.monotonic():
                    return ran
                _, _, action = heapq.heappop(self._heap)
            try:
                action()
            except Exception:  # noqa: BLE001 - one failed hand-over must not stop the others
                logger.exception("Handing over a held message failed; Pub/Sub will redeliver it.")
            ran += 1
        return ran


class Pending:
    """The countdowns this worker deferred in Pub/Sub, for operators: how many per queue, when due.

    A deferred message is in no worker's hands until its ack deadline ends, so
    Celery's ``inspect scheduled`` cannot show it. The worker that deferred it
    counts it here until its deadline ends; then it comes back to some worker,
    which counts it again if it is still not due. Summed over the live workers
    this is every countdown pending, except one deferred by a worker that died
    since (counted again when it comes back, within ``max_defer_hop``).

    Two floats per message (its ETA and when it comes back, UTC epoch seconds)
    in flat arrays: 10,000 pending cost about 160 KB. Entries that came back are
    dropped whenever a queue's list has doubled, and when counted.
    """

    def __init__(self) -> None:
        # Guards _etas, _back and _kept (puller threads note; a control command counts).
        self._lock = os_threading().Lock()
        self._etas: dict[str, array.array[float]] = {}
        self._back: dict[str, array.array[float]] = {}
        self._kept: dict[str, int] = {}

    def note(self, queue: str, eta: float, back_at: float, now: float) -> None:
        """At `now`, a message of `queue` due at `eta` was deferred until `back_at` (epoch seconds)."""
        with self._lock:
            etas = self._etas.setdefault(queue, array.array("d"))
            back = self._back.setdefault(queue, array.array("d"))
            etas.append(eta)
            back.append(back_at)
            if len(etas) > 2 * self._kept.get(queue, 0) + 64:
                self._prune(queue, now)

    def count(self, now: float) -> dict[str, dict[str, Any]]:
        """Per queue with any pending: ``{"pending": n, "next_eta": epoch, "last_eta": epoch}``."""
        result: dict[str, dict[str, Any]] = {}
        with self._lock:
            for queue in list(self._etas):
                self._prune(queue, now)
                etas = self._etas.get(queue)
                if etas:
                    result[queue] = {"pending": len(etas), "next_eta": min(etas), "last_eta": max(etas)}
        return result

    def _prune(self, queue: str, now: float) -> None:
        """Drop the entries of `queue` whose message came back by `now` (lock held)."""
        etas, back = self._etas[queue], self._back[queue]
        keep = [index for index, back_at in enumerate(back) if back_at > now]
        if len(keep) < len(back):
            self._etas[queue] = array.array("d", (etas[index] for index in keep))
            self._back[queue] = array.array("d", (back[index] for index in keep))
        self._kept[queue] = len(keep)
        if not keep:
            del self._etas[queue], self._back[queue], self._kept[queue]

