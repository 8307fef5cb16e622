"""Leasing: keep the messages this worker holds from being redelivered while it holds them.

Every message pulled is leased until it is acked, nacked or deferred: while it
waits in the inbox, while a countdown due within seconds is held in memory,
and while Celery works on it. The leaser thread pushes each lease's ack
deadline out by ``ack_deadline`` seconds once half of the current one has
passed, and lets go (WARNING) of any message held longer than ``max_lease``.
A killed worker stops extending, so Pub/Sub redelivers its messages within
one ack deadline.

Extensions are enqueued on the settler while the lock is held, and a settle
removes the lease under the same lock before it enqueues its ack or nack: so
no extension of a message is ever sent after its nack.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Callable

from ..stats import Stats
from .clock import Clock
from .settling import Settler
from .threads import EngineThread, os_threading

logger = logging.getLogger(__name__)

THREAD_NAME = "kombu-pubsub-leaser"
#: How often the leaser looks for leases to extend, seconds. Small against
#: Pub/Sub's minimum ack deadline (10 s), cheap since it only scans a dict.
TICK = 1.0


@dataclasses.dataclass(slots=True)
class Lease:
    subscription_path: str
    leased_at: float
    extend_at: float


class Leaser(EngineThread):
    """Owns the lease table and the thread that extends ack deadlines."""

    def __init__(self, settler: Settler, clock: Clock, stats: Stats, ack_deadline: float,
                 max_lease: float, on_crash: Callable[[BaseException], None]) -> None:
        super().__init__(THREAD_NAME, on_crash)
        self._settler = settler
        self._clock = clock
        self._stats = stats
        self._ack_deadline = ack_deadline
        self._max_lease = max_lease
        # Guards _leases, and orders extensions before settles (module docstring).
        self._lock = os_threading().Lock()
        self._leases: dict[str, Lease] = {}

    def add(self, subscription_path: str, ack_ids: list[str], deadline: float) -> None:
        """Lease messages just pulled whose ack deadline is `deadline` seconds from now."""
        now = self._clock.monotonic()
        first = min(deadline, self._ack_deadline) / 2
        with self._lock:
            for ack_id in ack_ids:
                self._leases[ack_id] = Lease(subscription_path, now, now + first)

    def remove(self, ack_id: str) -> bool:
        """Stop leasing a message, before it is acked, nacked or deferred; False if it was not leased."""
        with self._lock:
            return self._leases.pop(ack_id, None) is not None

    def oldest_age(self) -> float:
        """Seconds the longest-held message has been leased (0 when none is)."""
        now = self._clock.monotonic()
        with self._lock:
            oldest = min((lease.leased_at for lease in self._leases.values()), default=now)
        return max(0.0, now - oldest)

    def __len__(self) -> int:
        with self._lock:
            return len(self._leases)

    def step(self) -> bool:
        """Leaser thread: every TICK, extend what is due."""
        if not self._stop.wait(TICK):
            self.extend_due()
        return True

    def extend_due(self) -> int:
        """Extend the leases whose half-deadline has passed; let go of those over max_lease.

        Returns how many were extended.
        """
        now = self._clock.monotonic()
        deadline = self._ack_deadline
        due: dict[str, list[str]] = defaultdict(list)
        expired: list[tuple[str, float]] = []
        with self._lock:
            for ack_id, lease in list(self._leases.items()):
                if now - lease.leased_at > self._max_lease:
                    del self._leases[ack_id]
                    expired.append((lease.subscription_path, now - lease.leased_at))
                elif lease.extend_at <= now:
                    lease.extend_at = now + deadline / 2
                    due[lease.subscription_path].append(ack_id)
            for subscription_path, ack_ids in due.items():
                self._settler.modify(subscription_path, ack_ids, int(deadline))
        for subscription_path, held_for in expired:
            logger.warning("Held a message from %r for %.0fs, over max_lease=%.0fs: letting it "
                           "go; Pub/Sub will redeliver it.", subscription_path, held_for, self._max_lease)
        extended = sum(len(ack_ids) for ack_ids in due.values())
        if extended:
            self._stats.add("lease_extensions", extended)
        return extended
