"""Counters a connection keeps about its work, for metrics.py (Prometheus) and for tests.

Plain numbers behind one lock, no dependency: what a metrics library exports
is read from here, so the transport never imports one.
"""

from __future__ import annotations

import bisect
import threading
import weakref
from typing import Any

#: Publish latency buckets, seconds: the emulator answers in ~1 ms, Google
#: Cloud in ~10–100 ms; anything past 5 s is a struggling connection.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: Every open transport in this process (metrics.py reads them all).
live_transports: weakref.WeakSet[Any] = weakref.WeakSet()

#: Counter name → what it counts (the help text of its metric).
COUNTERS = {
    "received": "Messages pulled from Pub/Sub.",
    "acked": "Messages acked on Pub/Sub (the ack request succeeded).",
    "nacked": "Messages nacked (given back for redelivery at once).",
    "deferred": "Countdown/ETA messages put off: deferred in Pub/Sub, held or re-published.",
    "morgued": "Messages moved to the morgue by this process.",
    "expired": "Messages moved to the morgue because they expired (also counted in morgued).",
    "lease_extensions": "Ack deadline extensions sent for messages being worked on.",
    "published": "Messages Pub/Sub accepted from this process.",
    "publish_failures": "Publishes that failed (raised, or logged in fast mode).",
}


class Stats:
    """Counts and a publish-latency histogram for one connection (any thread)."""

    def __init__(self) -> None:
        # Guards every field below.
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)  # last: over the top bucket
        self._latency_sum = 0.0

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def observe_publish(self, seconds: float) -> None:
        index = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        with self._lock:
            self._latency_counts[index] += 1
            self._latency_sum += seconds

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def publish_latency(self) -> tuple[list[tuple[float, int]], float]:
        """Cumulative (upper bound, count) pairs ending with +inf, and the sum of seconds."""
        with self._lock:
            counts, total = list(self._latency_counts), self._latency_sum
        cumulative, running = [], 0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), counts, strict=True):
            running += count
            cumulative.append((bound, running))
        return cumulative, total
