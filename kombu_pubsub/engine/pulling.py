"""Pulling: one thread per consumed queue, each keeping one cancellable pull outstanding.

A puller pulls only while its channel's window has room, and takes room when
messages arrive (inbox.py), never ahead: a pull waiting on a quiet queue holds
nothing back from a busy one, so every queue's next message starts within
about one pull round trip, whatever the number of queues. Each pull asks for
the free room shared among the channel's busy queues (at least one message),
so a burst on many queues overshoots the prefetch by at most a few messages,
which wait in the inbox, leased. The room counts what a busy channel may keep
waiting beyond its prefetch (inbox.Pace), and each pull times its round trip
for it.

A queue with priorities has one puller per priority step (priorities.py),
all sharing the channel's window. As Redis polls a queue's steps in order, a
step's puller waits while a higher step of its queue is busy (its last pull
brought messages), and pulls once that step comes back empty. A step's
puller counts only the waiting messages of its step or higher, and LOOKAHEAD
more may wait, so the highest step's next message is already in the inbox
when Celery makes room. The inbox then hands a queue's highest step first:
lower steps wait while higher ones have messages, as on Redis. The cost is
one message beyond the prefetch per step, leased in the inbox, and, while the
steps' first pulls race at start, the first few messages may come from lower
steps.

A closed consumer cancels its pull in flight (pubsub/pulls.py): a pull left
waiting would take the next messages of its queue and hold them for a whole
ack deadline.

Why this shape. Reserving room before a pull (the obvious way to honour the
prefetch) parks that room on whichever queue is quiet for a whole pull
timeout; with many queues most of the window sat on empty queues and tasks on
busy ones waited seconds, some never starting. Taking room on arrival costs at
most a few messages over the prefetch, leased in the inbox. StreamingPull
would keep one stream and several client threads per subscription, flow
control per subscription rather than per channel, and no way to give back
what a stream pushed beyond the window but a nack; one unary pull per queue
keeps the window exact and a quiet queue cheap (one RPC per pull timeout). The
benchmarks' many-queues scenario measures the start latency on 1, 10 and 50
queues side by side with Kombu's gcpubsub.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from typing import Any

from google.api_core import exceptions as gexc

from ..errors import BrokerUnavailableError, as_kombu_error, is_transient
from ..pubsub.admin import SubscriptionInfo
from ..pubsub.pulls import PullCall
from .clock import Clock
from .inbox import Delivery, Inbox, Window
from .intake import Intake
from .threads import EngineThread, os_threading

logger = logging.getLogger(__name__)

#: How long a puller retries transient errors before it reports the connection
#: lost (Celery then reconnects and re-declares), seconds.
RECONNECT_AFTER = 5.0
#: Pause between pulls that failed with a transient error, seconds.
ERROR_BACKOFF = 0.5
#: Longest wait for room without a wake-up (one missed would cost only this), seconds.
ROOM_RECHECK = 1.0

#: Messages a queue with priorities may keep waiting beyond its channel's window, so that the
#: best one is already in the inbox when Celery makes room (see the module docstring).
LOOKAHEAD = 1
#: The first pull of a priority step waits this long at most, seconds: lower steps wait for
#: it, so an empty higher step delays them this much once, when consuming starts.
PROBE_TIMEOUT = 0.5

#: Start a pull: (subscription path, max messages, timeout seconds) → a pull in flight.
StartPull = Callable[[str, int, float], PullCall]


@dataclasses.dataclass(eq=False)
class Consumer:
    """What the engine needs to consume one queue for one Kombu channel."""

    owner: Any
    """The Kombu channel (opaque to the engine: deliveries carry it back to Kombu)."""
    queue: str
    subscription: SubscriptionInfo
    window: Window
    next_tag: Callable[[], int]
    """A new delivery tag (the channel's counter)."""
    wanted: Callable[[dict[str, Any]], bool]
    """False for a message on an exchange topic that matches none of this queue's bindings."""
    busy: int = 0
    """Messages its last pull brought (for the share of the window its next pull asks for)."""
    message_ttl: float | None = None
    """The queue's message TTL as the channel declared it (``x-message-ttl``), seconds."""
    rank: int = 0
    """Its priority step's rank among its queue's steps, 0 the lowest (and a queue without
    priorities); deliveries carry it, and the inbox hands a queue's higher ranks first."""
    ranked: bool = False
    """True for a step of a queue with priorities: its puller counts only waiting messages of
    its rank or higher, and LOOKAHEAD more may wait (see the module docstring)."""
    probing: bool = True
    """Until its first pull came back: a step of a queue with priorities then counts as busy
    (lower steps wait for it) and pulls for PROBE_TIMEOUT only, so the steps' first pulls do
    not race and a lower step's message never starts before a higher one's that was waiting."""

    @property
    def lookahead(self) -> int | None:
        """How many may wait beyond the window for this consumer: None for the window's pace."""
        return LOOKAHEAD if self.ranked else None


class Puller(EngineThread):
    """Owns the thread pulling one queue's subscription for one consumer."""

    def __init__(self, consumer: Consumer, start_pull: StartPull, intake: Intake, inbox: Inbox,
                 release: Callable[[list[Delivery]], None], clock: Clock, pull_timeout: float,
                 pull_max_messages: int, busy_peers: Callable[[Window], int],
                 on_crash: Callable[[BaseException], None],
                 higher_busy: Callable[[Consumer], bool] = lambda consumer: False) -> None:
        step = f"~{consumer.rank}" if consumer.ranked else ""
        super().__init__(f"kombu-pubsub-puller-{consumer.queue}{step}", on_crash)
        self.consumer = consumer
        self._start_pull = start_pull
        self._intake = intake
        self._inbox = inbox
        self._release = release
        self._clock = clock
        self._pull_timeout = pull_timeout
        self._pull_max = pull_max_messages
        self._busy_peers = busy_peers
        self._higher_busy = higher_busy
        # Guards _call: set by the puller, cancelled by whoever stops it.
        self._lock = os_threading().Lock()
        self._call: PullCall | None = None
        self._failing_since: float | None = None
        #: Waits between failed pulls; a test may replace it.
        self.pause: Callable[[float], object] = self._stop.wait

    def wake(self) -> None:
        """Stop: cancel the pull in flight, and wake a wait for room."""
        with self._lock:
            call = self._call
        if call is not None:
            call.cancel()
        self.consumer.window.wake()

    def ask(self) -> int:
        """How many messages the next pull asks for: the free room shared among busy queues."""
        consumer = self.consumer
        free = consumer.window.free(consumer.rank, consumer.lookahead)
        if free is None:
            return self._pull_max
        share = math.ceil(free / max(1, self._busy_peers(self.consumer.window)))
        return max(1, min(self._pull_max, share))

    def step(self) -> bool:
        """Puller thread: wait for room, pull, hand what came to intake and the inbox."""
        consumer = self.consumer
        if consumer.ranked and self._higher_busy(consumer):
            consumer.window.pause(ROOM_RECHECK)  # until a higher step comes back empty
            return not self.stopped
        if not consumer.window.wait_for_room(ROOM_RECHECK, consumer.rank, consumer.lookahead) \
                or self.stopped:
            return not self.stopped
        ask = self.ask()
        # Starting a pull makes no blocking call. Under the lock, a stop either comes first
        # (no pull starts: one started and cancelled at once can stay registered on the
        # emulator and take the next message for an ack deadline) or finds it to cancel.
        with self._lock:
            if self.stopped:
                return False
            probing = consumer.ranked and consumer.probing
            timeout = min(PROBE_TIMEOUT, self._pull_timeout) if probing else self._pull_timeout
            started = self._clock.monotonic()
            call = self._call = self._start_pull(consumer.subscription.path, ask, timeout)
        try:
            received = call.received()
        except Exception as exc:  # noqa: BLE001 - classified in _failed
            return self._failed(exc)
        finally:
            with self._lock:
                self._call = None
        if received is None:  # cancelled
            return not self.stopped
        now = self._clock.monotonic()
        consumer.window.pulled(now, now - started if received and len(received) >= ask else None)
        self._failing_since = None
        was_busy, self.consumer.busy = self.consumer.busy, len(received)
        consumer.probing = False
        if (was_busy or probing) and not received and self.consumer.ranked:
            self.consumer.window.wake()  # lower steps held back for this one may pull now
        if received:
            logger.debug("Pulled %d message(s) from %r.", len(received), self.consumer.queue)
        deliveries = self._intake.accept(self.consumer, received)
        if self.stopped:
            self._release(deliveries)
        else:
            self._inbox.put_many(deliveries)
        return True

    def _failed(self, exc: BaseException) -> bool:
        """Deal with a failed pull; return False when the thread should end (error reported)."""
        if self.stopped:
            return False
        path = self.consumer.subscription.path
        now = self._clock.monotonic()
        self._failing_since = self._failing_since or now
        failing_for = now - self._failing_since
        if isinstance(exc, gexc.NotFound):
            self._inbox.fail(BrokerUnavailableError(
                f"subscription {path!r} disappeared (deleted, or the emulator restarted); "
                "reconnecting to re-create it"))
            return False
        if is_transient(exc):
            if failing_for < RECONNECT_AFTER:
                # One WARNING per outage, not one per retry.
                log = logger.warning if failing_for == 0 else logger.debug
                log("Pull from %r failed (%s); retrying for up to %.0fs before reconnecting.",
                    path, exc, RECONNECT_AFTER)
                self.pause(ERROR_BACKOFF)
                return True
            self._inbox.fail(as_kombu_error(exc, f"pulling from {path!r}"))
            return False
        if not isinstance(exc, gexc.GoogleAPICallError):
            # Not an answer from Pub/Sub: something broke on this side. Reconnecting
            # starts over with new clients.
            logger.error("Pull from %r failed unexpectedly; reconnecting.", path, exc_info=exc)
            self._inbox.fail(BrokerUnavailableError(
                f"pulling from {path!r} failed unexpectedly ({type(exc).__name__}: {exc}); reconnecting"))
            return False
        error = as_kombu_error(exc, f"pulling from {path!r}")
        logger.error("Pull from %r failed and will not be retried: %s", path, error)
        self._inbox.fail(error)
        return False
