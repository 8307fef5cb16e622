"""Lease extension: keep messages we hold from being redelivered while we work on them.

Every message pulled is leased here until it is acked or nacked. The leaser
thread pushes each one's ack deadline out by ``ack_deadline`` seconds when half
of the current deadline has passed, and lets go (WARNING) of any message held
longer than ``max_lease``. A killed worker stops extending, so Pub/Sub
redelivers its messages within one ack deadline.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import defaultdict

from .acker import Acker
from .options import TransportOptions
from .stats import Stats

logger = logging.getLogger(__name__)

THREAD_NAME = "kombu-pubsub-leaser"
#: How often the leaser looks for leases to extend, seconds. Small against
#: Pub/Sub's minimum ack deadline (10 s), cheap since it only scans a dict.
TICK = 1.0


@dataclasses.dataclass
class Lease:
    subscription_path: str
    leased_at: float
    extend_at: float


class Leaser:
    """Owns the thread that extends the ack deadlines of held messages."""

    def __init__(self, acker: Acker, options: TransportOptions, stats: Stats | None = None) -> None:
        self._acker = acker
        self._stats = stats or Stats()
        self._options = options
        # Guards _leases: added by pullers, removed by ackers, scanned by the leaser.
        self._lock = threading.Lock()
        self._leases: dict[str, Lease] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.extensions = 0

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """End the thread (held messages are not extended any more). Idempotent."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(5.0)

    def add(self, subscription_path: str, ack_ids: list[str], deadline: float) -> None:
        """Start leasing messages just pulled with a `deadline`-second ack deadline."""
        now = time.monotonic()
        with self._lock:
            for ack_id in ack_ids:
                self._leases[ack_id] = Lease(subscription_path, now, now + deadline / 2)

    def remove(self, ack_id: str) -> None:
        """Stop leasing a message (it was acked or nacked)."""
        with self._lock:
            self._leases.pop(ack_id, None)

    def oldest_age(self, now: float | None = None) -> float:
        """Seconds the longest-held message has been leased (0 when none is)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            oldest = min((lease.leased_at for lease in self._leases.values()), default=now)
        return max(0.0, now - oldest)

    def __len__(self) -> int:
        with self._lock:
            return len(self._leases)

    def _run(self) -> None:
        """Leaser thread: every TICK, extend what is due and drop what is too old."""
        while not self._stop.wait(TICK):
            self.extend_due(time.monotonic())

    def extend_due(self, now: float) -> None:
        """Extend the leases whose half-deadline has passed; release those over max_lease."""
        deadline = self._options.ack_deadline
        due: dict[str, list[str]] = defaultdict(list)
        expired: list[tuple[str, float]] = []
        with self._lock:
            for ack_id, lease in list(self._leases.items()):
                if now - lease.leased_at > self._options.max_lease:
                    del self._leases[ack_id]
                    expired.append((lease.subscription_path, now - lease.leased_at))
                elif lease.extend_at <= now:
                    lease.extend_at = now + deadline / 2
                    due[lease.subscription_path].append(ack_id)
        for subscription_path, held_for in expired:
            logger.warning("Held a message from %r for %.0fs, over max_lease=%.0fs: letting it "
                           "go; Pub/Sub will redeliver it.", subscription_path, held_for,
                           self._options.max_lease)
        for subscription_path, ack_ids in due.items():
            self._acker.modify(subscription_path, ack_ids, int(deadline))
            self.extensions += len(ack_ids)
            self._stats.add("lease_extensions", len(ack_ids))
