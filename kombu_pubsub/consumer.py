"""Pulling: one thread per consumed queue, feeding a buffer the consuming thread drains.

A Puller keeps one pull outstanding on its subscription, asking only for as
many messages as the channel's prefetch leaves room for (so Celery's QoS is
never exceeded), and hands what arrives to the connection's ReadyBuffer.
``Transport.drain_events`` waits on that buffer: no polling sleep anywhere.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc

from .errors import BrokerUnavailableError, PubSubError, as_kombu_error, is_transient

if TYPE_CHECKING:
    from .channel import Channel
    from .pubsub.admin import SubscriptionInfo

logger = logging.getLogger(__name__)

#: How long a puller retries transient errors before it reports the connection
#: lost (Celery then reconnects and re-declares), seconds.
RECONNECT_AFTER = 5.0
#: Pause between pulls that failed with a transient error, seconds.
ERROR_BACKOFF = 0.5


@dataclasses.dataclass(slots=True)
class Delivery:
    """One Pub/Sub message pulled for a queue, on its way to Celery."""

    channel: Channel
    queue: str
    subscription_path: str
    ack_id: str
    payload: dict[str, Any]


class ReadyBuffer:
    """Deliveries waiting for the consuming thread; shared by a connection's pullers."""

    def __init__(self) -> None:
        # Guards _items and _error; notified when either changes.
        self._cond = threading.Condition()
        self._items: deque[Delivery] = deque()
        self._error: BaseException | None = None

    def put_many(self, deliveries: list[Delivery]) -> None:
        with self._cond:
            self._items.extend(deliveries)
            self._cond.notify()

    def fail(self, error: BaseException) -> None:
        """Record an error for the consuming thread to raise (first one wins)."""
        with self._cond:
            if self._error is None:
                self._error = error
            self._cond.notify_all()

    def wake(self) -> None:
        """End a take() that is waiting now (it returns None if nothing came)."""
        with self._cond:
            self._cond.notify_all()

    def take(self, timeout: float | None) -> Delivery | None:
        """Wait up to `timeout` for a delivery and return the oldest, or None. Raise a recorded error.

        One per call, as Kombu's drain_events contract goes: callers such as
        remote control's reply collector count calls to know when to stop.
        """
        with self._cond:
            if not self._items and self._error is None:
                self._cond.wait(timeout)
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            return self._items.popleft() if self._items else None

    def remove_channel(self, channel: Channel | None) -> list[Delivery]:
        """Take out and return every delivery for `channel` (None: for any), which is closing."""
        return self.remove(lambda item: channel is None or item.channel is channel)

    def remove(self, matches: Callable[[Delivery], bool]) -> list[Delivery]:
        """Take out and return the deliveries that match."""
        with self._cond:
            taken = [item for item in self._items if matches(item)]
            if taken:
                self._items = deque(item for item in self._items if not matches(item))
            return taken


class Puller:
    """Owns the thread pulling one queue's subscription for one channel."""

    def __init__(self, channel: Channel, queue: str, subscription: SubscriptionInfo) -> None:
        self.channel = channel
        self.queue = queue
        self.subscription = subscription
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"kombu-pubsub-puller-{self.queue}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; a pull in flight finishes (its messages are nacked). Idempotent."""
        self._stop.set()
        self.channel.wake_pullers()

    def join(self, timeout: float) -> None:
        """Wait up to `timeout` for the thread to end (its pull in flight to return)."""
        if self._thread is not None and timeout > 0:
            self._thread.join(timeout)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _run(self) -> None:
        """Puller thread: reserve room, pull, hand over; report lasting errors."""
        failing_since: float | None = None
        path = self.subscription.path
        while not self._stop.is_set():
            room = self.channel.reserve(self)
            if not room:
                break
            try:
                response = self.channel.subscriber.pull(
                    request={"subscription": path, "max_messages": room},
                    retry=None, timeout=self.channel.options.pull_timeout)
                received = list(response.received_messages)
                failing_since = None
            except gexc.DeadlineExceeded:
                received, failing_since = [], None
            except Exception as exc:  # noqa: BLE001 - every failure is classified below
                self.channel.unreserve(room)
                if self._stop.is_set():
                    break
                failing_since = failing_since or time.monotonic()
                if not self._on_error(exc, time.monotonic() - failing_since):
                    break
                continue
            logger.debug("Pulled %d message(s) from %r.", len(received), path)
            self.channel.on_pulled(self, received, room)

    def _on_error(self, exc: BaseException, failing_for: float) -> bool:
        """Deal with a failed pull; return False when the thread should end."""
        path = self.subscription.path
        if isinstance(exc, gexc.NotFound):
            self.channel.report(BrokerUnavailableError(
                f"subscription {path!r} disappeared (deleted, or the emulator restarted); "
                "reconnecting to re-create it"))
            return False
        if is_transient(exc) or isinstance(exc, ValueError):  # ValueError: channel closed
            if failing_for < RECONNECT_AFTER:
                # One WARNING per outage, not one per retry.
                log = logger.warning if failing_for < ERROR_BACKOFF else logger.debug
                log("Pull from %r failed (%s); retrying for up to %.0fs before reconnecting.",
                    path, exc, RECONNECT_AFTER)
                self._stop.wait(ERROR_BACKOFF)
                return True
            self.channel.report(as_kombu_error(exc, f"pulling from {path!r}")
                                if is_transient(exc) else BrokerUnavailableError(str(exc)))
            return False
        error = as_kombu_error(exc, f"pulling from {path!r}")
        logger.error("Pull from %r failed and will not be retried: %s", path, error)
        self.channel.report(error if isinstance(error, PubSubError) else BrokerUnavailableError(str(error)))
        return False
