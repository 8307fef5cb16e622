"""Durable countdowns: a message not yet due stays in Pub/Sub, not in worker memory.

Pub/Sub has no delayed delivery, so when a pulled message carries a Celery
``eta`` in the future we give it back with its ack deadline pushed out to
(nearly) the time it is due, at most ``max_defer_hop`` seconds a hop. It is
not leased, not buffered and not counted against the prefetch meanwhile, and
a worker restart loses nothing: Pub/Sub redelivers it when the deadline ends.

Each hop counts as a delivery attempt; before a message could run into a
dead-letter policy (at least 5 attempts) it is re-published (the copy is
accepted first, then the original acked), which starts the count again.
The last seconds before the ETA are held in memory with the message's
deadline set just past the ETA, so a crash still redelivers it on time; it is
handed to Celery HANDOVER_EARLY seconds before the ETA, and Celery's own timer
starts it at the ETA.
"""

from __future__ import annotations

import dataclasses
import datetime
import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import PubSubError

if TYPE_CHECKING:
    from .channel import Channel
    from .consumer import Delivery

logger = logging.getLogger(__name__)

THREAD_NAME = "kombu-pubsub-scheduler"
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


class Postponer:
    """Carries out a Plan other than 'deliver' for one channel (runs on its puller threads)."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def put_off(self, delivery: Delivery, item: Any, topic_path: str, step: Plan) -> None:
        """A message not yet due: hold it briefly, defer it in Pub/Sub, or re-publish it."""
        connection = self.channel.connection
        connection.leaser.remove(delivery.ack_id)
        connection.stats.add("deferred")
        if step.action == "republish":
            if self._republish(delivery, item, topic_path):
                return
            step = Plan("defer", min(self.channel.options.max_defer_hop, step.seconds))
        if step.action == "defer":
            logger.debug("Deferred a message on %r for %.0fs.", delivery.queue, step.seconds)
            connection.acker.modify(delivery.subscription_path, [delivery.ack_id], int(step.seconds))
            return
        # Hold: set the deadline just past the ETA, so a crash now still redelivers it on time.
        connection.acker.modify(delivery.subscription_path, [delivery.ack_id],
                                math.ceil(step.seconds) + 1)
        now = time.monotonic()
        eta = now + step.seconds
        connection.scheduler.call_at(max(now, eta - HANDOVER_EARLY),
                                     lambda: self.channel.hand_over(delivery))
        connection.scheduler.call_at(eta - 0.2, lambda: self._lease_from_eta(delivery))

    def _republish(self, delivery: Delivery, item: Any, topic_path: str) -> bool:
        """Publish a copy (awaited), then ack the original; False if the copy failed."""
        connection = self.channel.connection
        try:
            connection.publisher.publish(topic_path, item.message.data,
                                         dict(item.message.attributes), awaited=True)
        except PubSubError as exc:
            logger.warning("Could not re-publish a delayed message on %r (%s); deferring it "
                           "instead.", delivery.queue, exc)
            return False
        connection.acker.ack(delivery.subscription_path, delivery.ack_id)
        return True

    def _lease_from_eta(self, delivery: Delivery) -> None:
        """Scheduler thread: just before the ETA, lease the message like any other being worked on."""
        if not self.channel.holds(delivery):
            return  # settled, never delivered, or closed: its deadline lapses on its own
        connection = self.channel.connection
        deadline = self.channel.options.ack_deadline
        connection.acker.modify(delivery.subscription_path, [delivery.ack_id], int(deadline))
        connection.leaser.add(delivery.subscription_path, [delivery.ack_id], deadline)


class Scheduler:
    """Owns the thread that hands held messages over when they fall due."""

    def __init__(self) -> None:
        # Guards _heap; notified when an earlier item arrives or on stop.
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._cond:
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
                self._thread.start()

    def call_at(self, when: float, action: Callable[[], None]) -> None:
        """Run `action` on the scheduler thread at monotonic time `when` (any thread)."""
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._order), action))
            self._cond.notify()

    def stop(self) -> list[Callable[[], None]]:
        """End the thread; return the actions that had not run yet. Idempotent."""
        with self._cond:
            thread, self._thread = self._thread, None
            self._stopping = True
            self._cond.notify()
        if thread is not None:
            thread.join(5.0)
        with self._cond:
            pending = [action for _, _, action in self._heap]
            self._heap.clear()
        return pending

    def __len__(self) -> int:
        with self._cond:
            return len(self._heap)

    def _run(self) -> None:
        """Scheduler thread: sleep until the earliest item is due, run it."""
        while True:
            with self._cond:
                while not self._stopping and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._stopping:
                    return
                _, _, action = heapq.heappop(self._heap)
            try:
                action()
            except Exception:  # noqa: BLE001 - one failed hand-over must not stop the others
                logger.exception("Handing over a held message failed; Pub/Sub will redeliver it.")
