"""The inbox: pulled messages waiting for Celery, and each channel's prefetch window.

Pullers put deliveries here; Celery's consuming thread takes them, either in
``drain_events`` (the blocking loop) or when the event loop sees the inbox's
file descriptor readable (``on_readable``, the asynchronous loop). A
self-pipe, the doorbell, is readable whenever something may be ready: every
hub can poll it (Celery's, gevent's, eventlet's), and ringing it is one
``write`` that is safe from a signal handler.

Room in a channel's window is taken when a message arrives, never reserved
ahead: a pull waiting on a quiet queue holds no room that a busy queue needs.
A message is handed to Celery only while its channel is under the prefetch
limit; until then it waits here, leased.

A busy channel may also keep a few messages waiting beyond its prefetch limit
(Pace): what Celery takes in about two pull round trips. Otherwise Celery, its
window full of messages just handed over, would wait a round trip each time
it makes room, and each pull would bring the one or two messages that room
holds: on a worker with a small window (``-c 2``: 8) the drain rate was bound
by pull round trips, and the emulator, paying about a millisecond of CPU per
pull, took as much CPU as the worker. Counting on the consumption rate
keeps the extra small where tasks are long: a worker running minute-long
tasks keeps nothing beyond its window, so ``worker_prefetch_multiplier=1``
still spreads long tasks across workers. Among one queue's waiting messages
the highest priority step goes first (its rank, priorities.py); across
queues, arrival order holds, so a busy queue with priorities never holds back
another queue's older messages.
"""

from __future__ import annotations

import dataclasses
import errno
import math
import posix
import select
from collections import deque
from collections.abc import Callable
from typing import Any

from .threads import os_threading


@dataclasses.dataclass(slots=True, eq=False)
class Delivery:
    """One Pub/Sub message pulled for a queue, on its way to Celery."""

    owner: Any
    """The Kombu channel that consumes the queue (opaque to the engine)."""
    window: Window
    queue: str
    subscription_path: str
    ack_id: str
    payload: dict[str, Any]
    rank: int = 0
    """Its priority step's rank in its queue (0: the lowest, and a queue without priorities)."""

    @property
    def tag(self) -> Any:
        return self.payload["properties"]["delivery_tag"]


class Doorbell:
    """A pipe that is readable while the consuming thread has something to look at."""

    def __init__(self) -> None:
        self._read_fd, self._write_fd = posix.pipe()
        posix.set_blocking(self._read_fd, False)
        posix.set_blocking(self._write_fd, False)
        self._rung = False

    def fileno(self) -> int:
        return self._read_fd

    def ring(self) -> None:
        """Make the pipe readable (any thread, and signal handlers: no lock)."""
        if not self._rung:
            self._rung = True
            try:
                posix.write(self._write_fd, b"\0")
            except OSError as exc:  # full (cannot be: one byte at a time) or closed
                if exc.errno not in (errno.EAGAIN, errno.EBADF):
                    raise

    def clear(self) -> None:
        """Consuming thread, before it looks at the inbox: empty the pipe, then allow rings.

        In that order: a ring that lands while the pipe is drained sees the bell still
        rung and writes nothing (what it announced is there for the look that follows);
        one after it writes. The other order could drain a ring's byte and leave the bell
        marked rung with an empty pipe: silent for good, and Celery's event loop stalls.
        """
        self._drain()
        self._rung = False

    def _drain(self) -> None:
        try:
            while posix.read(self._read_fd, 512):
                pass
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EBADF):
                raise

    def wait(self, timeout: float | None) -> None:
        """Wait until rung or `timeout` seconds passed (cooperative under gevent and eventlet)."""
        try:
            select.select([self._read_fd], [], [], timeout)
        except (OSError, ValueError):
            pass  # closed while waiting: the caller finds out

    def close(self) -> None:
        for fd in (self._read_fd, self._write_fd):
            try:
                posix.close(fd)
            except OSError:
                pass


class Pace:
    """How many messages a channel may keep waiting beyond its prefetch limit (module docstring).

    ``ahead`` is what Celery takes in HORIZON_RTTS pull round trips, or in MIN_HORIZON
    seconds if that is longer, at most `cap`. The rate is of messages handed to Celery,
    sampled every RATE_SAMPLE seconds; the round trip is of pulls that brought all they
    asked for (the others may have waited on the server for messages to arrive).
    """

    #: Round trips of consumption kept waiting: one covers the pull in flight, one more
    #: lets pulls ask for half of it at a time (Window.wait_for_room).
    HORIZON_RTTS = 2.0
    #: At least this much consumption, seconds: bounds a busy channel to about
    #: 1 / (MIN_HORIZON / 2) pulls a second however fast the round trip.
    MIN_HORIZON = 0.02
    RATE_SAMPLE = 0.1
    #: Weight of a new sample in the moving averages.
    RATE_WEIGHT = 0.5
    RTT_WEIGHT = 0.2

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.ahead = 0
        self.rate = 0.0
        self.rtt = 0.0
        self._taken = 0
        self._since: float | None = None
        self._taken_since = 0

    def took(self, count: int = 1) -> None:
        """Celery was handed `count` messages (the caller holds the window's lock)."""
        self._taken += count

    def pulled(self, now: float, rtt: float | None) -> int:
        """A pull came back at monotonic `now`; `rtt`: its round trip if it brought all it
        asked for, else None. Returns the new ``ahead``."""
        if rtt is not None:
            self.rtt = rtt if not self.rtt else self.rtt + self.RTT_WEIGHT * (rtt - self.rtt)
        if self._since is None:
            self._since, self._taken_since = now, self._taken
        elif now - self._since >= self.RATE_SAMPLE:
            rate = (self._taken - self._taken_since) / (now - self._since)
            self.rate = rate if not self.rate else self.rate + self.RATE_WEIGHT * (rate - self.rate)
            self._since, self._taken_since = now, self._taken
        horizon = max(self.HORIZON_RTTS * self.rtt, self.MIN_HORIZON)
        self.ahead = min(self.cap, math.floor(self.rate * horizon))
        return self.ahead


class Window:
    """One channel's share of Celery's prefetch: what waits in the inbox and what Celery holds.

    `limit` returns the channel's prefetch count (0: no limit), read on each use
    since Celery changes it (autoscale, QoS updates). `ahead_cap`: most messages
    that may wait beyond it (Pace).
    """

    def __init__(self, limit: Callable[[], int], on_room: Callable[[], None],
                 ahead_cap: int = 0) -> None:
        self._limit = limit
        self._on_room = on_room
        self.pace = Pace(ahead_cap)
        # Guards the counts; notified when room was made or pullers must look again.
        self._cond = os_threading().Condition()
        self._waiting = 0
        #: rank → how many of the waiting messages have it (ranks above 0 only).
        self._waiting_ranked: dict[int, int] = {}
        self._with_celery: dict[Any, Delivery] = {}

    def free(self, rank: int = 0, lookahead: int | None = None) -> int | None:
        """How many more messages may arrive for this channel; None when there is no limit.

        `lookahead` more than the limit may wait, by default the pace's ``ahead``. For a
        priority step of rank `rank`, only waiting messages of that rank or higher count
        (pulling.py).
        """
        with self._cond:
            return self.free_locked(rank, lookahead)

    def can_take(self) -> bool:
        """True while Celery may be handed one more message."""
        limit = self._limit()
        return not limit or len(self._with_celery) < limit

    def wait_for_room(self, timeout: float, rank: int = 0, lookahead: int | None = None) -> bool:
        """Puller thread: wait until there is room (or a wake-up); True if there is room.

        While messages of this channel wait for Celery, a pull waits for room for half of
        what may wait beyond the limit (Pace), so pulls come fewer and fuller; Celery has
        those waiting messages to take meanwhile.
        """
        with self._cond:
            free = self.free_locked(rank, lookahead)
            if free is not None and free < self._needed_locked(lookahead):
                self._cond.wait(timeout)
                free = self.free_locked(rank, lookahead)
            return free is None or free >= self._needed_locked(lookahead)

    def _needed_locked(self, lookahead: int | None) -> int:
        if lookahead is not None or not self._waiting:
            return 1
        return max(1, self.pace.ahead // 2)

    def free_locked(self, rank: int = 0, lookahead: int | None = None) -> int | None:
        limit = self._limit()
        if not limit:
            return None
        waiting = self._waiting
        if rank:
            waiting = sum(count for ranked, count in self._waiting_ranked.items() if ranked >= rank)
        extra = self.pace.ahead if lookahead is None else lookahead
        return limit + extra - len(self._with_celery) - waiting

    def arrived(self, count: int, rank: int = 0) -> None:
        with self._cond:
            self._count(count, rank)

    def left(self, count: int, rank: int = 0) -> None:
        """`count` waiting messages of `rank` left the inbox without reaching Celery (released)."""
        with self._cond:
            self._count(-count, rank)
            self._cond.notify_all()

    def _count(self, count: int, rank: int) -> None:
        self._waiting += count
        if rank:
            self._waiting_ranked[rank] = self._waiting_ranked.get(rank, 0) + count

    def handed(self, delivery: Delivery, held: bool) -> None:
        """A waiting message went to Celery; `held` until settled (no_ack: not held)."""
        with self._cond:
            self._count(-1, delivery.rank)
            self.pace.took()
            if held:
                self._with_celery[delivery.tag] = delivery
            else:
                self._cond.notify_all()

    def hold(self, delivery: Delivery) -> None:
        """A message fetched with basic_get goes straight to Celery."""
        with self._cond:
            self._with_celery[delivery.tag] = delivery

    def settled(self, tag: Any) -> Delivery | None:
        """Celery is done with `tag`: forget it and return its delivery (None if unknown)."""
        with self._cond:
            delivery = self._with_celery.pop(tag, None)
            self._cond.notify_all()
        if delivery is not None:
            self._on_room()
        return delivery

    def holds(self, tag: Any) -> bool:
        with self._cond:
            return tag in self._with_celery

    def unsettled(self) -> list[Delivery]:
        with self._cond:
            return list(self._with_celery.values())

    def pulled(self, now: float, rtt: float | None) -> None:
        """A pull for this channel came back (Pace.pulled)."""
        with self._cond:
            self.pace.pulled(now, rtt)

    def pause(self, timeout: float) -> None:
        """Puller thread: wait for a wake-up (or `timeout` seconds)."""
        with self._cond:
            self._cond.wait(timeout)

    def wake(self) -> None:
        """Wake pullers waiting for room or paused: the limit changed, a priority step came back
        empty, or they must stop."""
        with self._cond:
            self._cond.notify_all()


class Inbox:
    """Deliveries waiting for the consuming thread, in arrival order, with the doorbell."""

    def __init__(self) -> None:
        # Guards _items, _ranked and _error.
        self._lock = os_threading().Lock()
        self._items: deque[Delivery] = deque()
        #: How many waiting deliveries have a rank above 0 (none: take looks no further).
        self._ranked = 0
        self._error: BaseException | None = None
        self.doorbell = Doorbell()

    def put_many(self, deliveries: list[Delivery]) -> None:
        """Puller or scheduler thread: messages are ready for Celery."""
        if not deliveries:
            return
        for delivery in deliveries:
            delivery.window.arrived(1, delivery.rank)
        with self._lock:
            self._items.extend(deliveries)
            self._ranked += sum(1 for delivery in deliveries if delivery.rank)
        self.doorbell.ring()

    def fail(self, error: BaseException) -> None:
        """Record an error for the consuming thread to raise (the first one wins)."""
        with self._lock:
            if self._error is None:
                self._error = error
        self.doorbell.ring()

    def ring_if_waiting(self) -> None:
        """Room was made: ring if messages wait for it (unlocked read; put_many rings anyway)."""
        if self._items:
            self.doorbell.ring()

    def take(self) -> Delivery | None:
        """Consuming thread: the oldest delivery whose channel may take it, or one of a higher
        priority step of the same queue, now out of the inbox; or None.

        Raises an error a background thread recorded.
        """
        with self._lock:
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            for index, delivery in enumerate(self._items):
                if delivery.window.can_take():
                    if self._ranked:
                        index = self._best_of_queue(index)
                    delivery = self._items[index]
                    del self._items[index]
                    self._ranked -= bool(delivery.rank)
                    return delivery
        return None

    def _best_of_queue(self, first: int) -> int:
        """The index of the earliest delivery of the highest rank among those of the same
        queue and window as the one at `first` (none of them waits before it)."""
        oldest = self._items[first]
        best, best_rank = first, oldest.rank
        for index in range(first + 1, len(self._items)):
            item = self._items[index]
            if item.rank > best_rank and item.queue == oldest.queue and item.window is oldest.window:
                best, best_rank = index, item.rank
        return best

    def remove(self, matches: Callable[[Delivery], bool]) -> list[Delivery]:
        """Take out and return the deliveries that match (they will not reach Celery)."""
        with self._lock:
            taken = [item for item in self._items if matches(item)]
            if taken:
                self._items = deque(item for item in self._items if not matches(item))
                self._ranked -= sum(1 for item in taken if item.rank)
        counts: dict[tuple[int, int], tuple[Window, int]] = {}
        for item in taken:
            key = (id(item.window), item.rank)
            window, count = counts.get(key, (item.window, 0))
            counts[key] = (window, count + 1)
        for (_, rank), (window, count) in counts.items():
            window.left(count, rank)
        return taken

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def close(self) -> None:
        self.doorbell.close()
