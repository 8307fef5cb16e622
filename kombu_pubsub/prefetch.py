"""A channel's prefetch accounting: what it may still pull, and what it has in hand.

Three counts share Celery's prefetch limit: messages *reserved* for pulls in
flight, messages *buffered* for the consuming thread, and deliveries *with
Celery* (unacked). Pullers wait here for room; acks, rejects and releases make
room and wake them. Every method may be called from any thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .consumer import Delivery

#: Longest wait of a puller for room without a wake-up (a missed one only), seconds.
ROOM_RECHECK = 1.0


class Prefetch:
    """Counts against the prefetch limit; pullers wait on it for room."""

    def __init__(self) -> None:
        # Guards the counts and the map below; notified when room may have been made.
        self._cond = threading.Condition()
        self._reserved = 0
        self._buffered = 0
        self._with_celery: dict[Any, Delivery] = {}

    def reserve(self, limit: Callable[[], int], pullers: Callable[[], int], most: int,
                stop: Callable[[], bool]) -> int:
        """Wait until the prefetch limit leaves room; reserve and return a fair share of it
        among the pullers, at most `most`; 0 once `stop()` is true. No limit (0): `most`,
        unreserved. The limit and the pullers are read again after each wake-up."""
        with self._cond:
            while not stop():
                count = limit()
                if not count:
                    return most
                free = count - len(self._with_celery) - self._buffered - self._reserved
                if free > 0:
                    share = -(-free // max(1, pullers()))  # fair split, rounded up
                    share = min(share, free, most)
                    self._reserved += share
                    return share
                self._cond.wait(ROOM_RECHECK)
        return 0

    def unreserve(self, count: int) -> None:
        """A pull ended with nothing: give its reservation back."""
        with self._cond:
            self._reserved -= count
            self._cond.notify_all()

    def pulled(self, reserved: int, arrived: int) -> None:
        """A pull that reserved `reserved` brought `arrived` messages, now buffered."""
        with self._cond:
            self._reserved -= reserved
            self._buffered += arrived

    def buffered(self, count: int) -> None:
        """`count` more messages (negative: fewer) wait for the consuming thread."""
        with self._cond:
            self._buffered += count
            if count < 0:
                self._cond.notify_all()

    def taken(self, tag: Any, delivery: Delivery | None) -> None:
        """A buffered message went to Celery: held under `tag` until settled (None: not held,
        as with no_ack queues)."""
        with self._cond:
            self._buffered -= 1
            if delivery is not None:
                self._with_celery[tag] = delivery
            else:
                self._cond.notify_all()

    def hold(self, tag: Any, delivery: Delivery) -> None:
        """A message fetched with basic_get goes straight to Celery."""
        with self._cond:
            self._with_celery[tag] = delivery

    def settled(self, tag: Any) -> Delivery | None:
        """Celery is done with `tag`: forget it and return its delivery (None if unknown)."""
        with self._cond:
            delivery = self._with_celery.pop(tag, None)
            self._cond.notify_all()
        return delivery

    def holds(self, tag: Any) -> bool:
        """True while `tag` is with Celery, not yet settled."""
        with self._cond:
            return tag in self._with_celery

    def wake(self) -> None:
        """Wake waiting pullers: the limit changed, or they are told to stop."""
        with self._cond:
            self._cond.notify_all()
