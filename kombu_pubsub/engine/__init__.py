"""The engine: every thread between Pub/Sub and Celery's consuming loop, owned by one object.

A pulled message travels one way::

    Puller (pulling.py) ─► Intake (intake.py) ─► Inbox (inbox.py) ─► Kombu channel ─► Celery
        one per queue         lease, judge,          the doorbell         deliver
                              defer, bury            Celery's loop polls
                                  │
                                  └─► Timer (countdown.py): held countdowns, handed over when due

    Celery's SIGTERM handler ─► StopSignal (stopping.py) ─► on_stop: prefetched messages go back

    Celery acks, rejects, requeues ─► Engine.settle ─► Leaser (leasing.py) drops the lease
                                                    ─► Settler (settling.py) sends, in order

Each part receives its collaborators; none reaches back through the Kombu
channel or transport. Deliveries carry their channel back to Kombu as an
opaque ``owner``. A part whose thread fails reports through :meth:`Engine.crashed`:
the error reaches Celery's consuming loop as a lost connection, and Celery
reconnects with a new transport and a new engine. A closed engine stays closed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from google.cloud import pubsub_v1

from ..errors import BrokerUnavailableError
from ..options import TransportOptions
from ..pubsub import pulls, rpc
from ..stats import Stats
from .clock import Clock
from .countdown import Timer
from .inbox import Delivery, Inbox, Window
from .intake import Bury, Intake, Republish
from .leasing import Leaser
from .pulling import Consumer, Puller, StartPull
from .settling import Settler
from .stopping import StopSignal
from .threads import EngineThread, os_threading

__all__ = ["Consumer", "Delivery", "Engine", "Window"]

logger = logging.getLogger(__name__)

#: Longest wait at close for a puller whose pull was cancelled to end, seconds.
PULLER_JOIN = 2.0
#: Longest wait at close for queued settles to be sent, seconds.
SETTLER_JOIN = 10.0


class Engine:
    """Pulls, leases, holds and settles messages for one connection."""

    def __init__(self, subscriber: pubsub_v1.SubscriberClient, budget: rpc.Budget,
                 options: TransportOptions, stats: Stats, bury: Bury, republish: Republish,
                 on_stop: Callable[[], None] = lambda: None,
                 pull_client: pubsub_v1.SubscriberClient | None = None, emulator: bool = False,
                 clock: Clock | None = None, start_pull: StartPull | None = None,
                 launch: Callable[[EngineThread], None] = EngineThread.start,
                 settle_rpcs: Any = None) -> None:
        """`clock`, `start_pull` and `launch` (how a part's thread is started) are
        replaced by unit tests, which then drive each part step by step. `on_stop` runs on
        the stop thread once the worker is told to stop (:meth:`request_stop`). Pulls go
        through `pull_client`, a client of their own that the engine closes first when it
        closes: that ends every pull in flight, even one that cannot be cancelled alone
        (gevent, eventlet), so no pull outlives the connection. `emulator`: the clients
        call an emulator, whose pulls are short and never cancelled (pubsub/pulls.py).
        `settle_rpcs` sends acks and deadline changes (the subscriber's methods by default)."""
        self.options = options
        self.stats = stats
        self.clock = clock or Clock()
        self.inbox = Inbox()
        self.settler = Settler(subscriber, budget, stats, self.crashed, options.ack_batch_bytes,
                               settle_rpcs)
        self.leaser = Leaser(self.settler, self.clock, stats, options.ack_deadline, options.max_lease,
                             self.crashed)
        self.timer = Timer(self.clock, self.crashed)
        self.stop_signal = StopSignal(on_stop, self.crashed)
        self.intake = Intake(self.leaser, self.settler, self.timer, self.inbox, self.clock, stats,
                             bury, republish, options.max_defer_hop)
        self._pull_client = pull_client
        self._emulator = emulator
        self._start_pull = start_pull or functools.partial(pulls.start_pull, pull_client or subscriber,
                                                           emulator=emulator)
        self._launch = launch
        # Guards _pullers and _closed: consumers come and go on the consuming thread,
        # the shutdown hook and close may run elsewhere.
        self._lock = os_threading().RLock()
        self._pullers: dict[int, Puller] = {}
        #: Pullers of cancelled consumers: their last pull may still hand messages back.
        self._retired: list[Puller] = []
        self._closed = False
        self.released = 0

    def start(self) -> None:
        """Start the settler, leaser, timer and stop threads (pullers start with their consumer)."""
        for part in (self.settler, self.leaser, self.timer, self.stop_signal):
            self._launch(part)

    @property
    def closed(self) -> bool:
        return self._closed

    def window(self, limit: Callable[[], int]) -> Window:
        """A channel's prefetch window; `limit` reads its prefetch count."""
        return Window(limit, self.inbox.ring_if_waiting, ahead_cap=self.options.pull_max_messages)

    # -- consumers (the consuming thread) ------------------------------------------------
    def consume(self, consumer: Consumer) -> None:
        """Start pulling for a consumer; one puller per consumer."""
        with self._lock:
            if self._closed:
                raise BrokerUnavailableError("this Pub/Sub connection is closed; open a new one")
            if id(consumer) in self._pullers:
                return
            puller = Puller(consumer, self._start_pull, self.intake, self.inbox, self.release,
                            self.clock, self.options.pull_timeout, self.options.pull_max_messages,
                            self.busy_peers, self.crashed, self.higher_busy)
            self._pullers[id(consumer)] = puller
        logger.debug("Consuming %r from %r.", consumer.queue, consumer.subscription.path)
        self._launch(puller)

    def cancel(self, consumer: Consumer) -> None:
        """Stop pulling for a consumer (its pull in flight is cancelled) and give back
        what it has waiting in the inbox."""
        with self._lock:
            puller = self._pullers.pop(id(consumer), None)
            if puller is not None:
                self._retired.append(puller)
        if puller is not None:
            puller.stop()
        self.release(self.inbox.remove(lambda delivery: delivery.window is consumer.window
                                       and delivery.queue == consumer.queue))

    def puller(self, consumer: Consumer) -> Puller | None:
        """The puller of a consumer, while it consumes."""
        with self._lock:
            return self._pullers.get(id(consumer))

    def busy_peers(self, window: Window) -> int:
        """How many of a window's consumers brought messages on their last pull."""
        with self._lock:
            return sum(1 for puller in self._pullers.values()
                       if puller.consumer.window is window and puller.consumer.busy)

    def higher_busy(self, consumer: Consumer) -> bool:
        """True while a higher priority step of the consumer's queue brought messages last time,
        or its first pull has not come back yet."""
        with self._lock:
            return any((other.consumer.busy or other.consumer.probing) and other.consumer.ranked
                       and other.consumer.rank > consumer.rank
                       and other.consumer.queue == consumer.queue
                       and other.consumer.window is consumer.window
                       for other in self._pullers.values())

    # -- settling (any thread) ----------------------------------------------------------
    def settle(self, delivery: Delivery, ack: bool) -> None:
        """Ack or nack a message: its lease is dropped first, so no extension follows the nack."""
        self.leaser.remove(delivery.ack_id)
        if self.settler.stopped:
            logger.warning("A message on %r was settled after its connection closed; Pub/Sub "
                           "redelivers it when its ack deadline ends.", delivery.queue)
        elif ack:
            self.settler.ack(delivery.subscription_path, delivery.ack_id)
        else:
            self.settler.nack(delivery.subscription_path, delivery.ack_id)

    def release(self, deliveries: list[Delivery]) -> None:
        """Nack messages that will not be processed here, so others get them at once."""
        if not deliveries:
            return
        logger.debug("Released %d message(s) for redelivery elsewhere.", len(deliveries))
        self.released += len(deliveries)
        for delivery in deliveries:
            self.settle(delivery, ack=False)

    def request_stop(self) -> None:
        """The worker is stopping (a signal handler may call this): `on_stop` runs on the stop
        thread, and the consuming thread is woken."""
        self.stop_signal.request()
        self.inbox.doorbell.ring()

    def crashed(self, error: BaseException) -> None:
        """A part's thread failed: Celery's loop gets a connection error and reconnects."""
        self.inbox.fail(BrokerUnavailableError(
            f"a kombu_pubsub engine thread stopped on an unexpected error ({type(error).__name__}: "
            f"{error}); reconnecting"))

    # -- closing -------------------------------------------------------------------
    def close(self) -> None:
        """Stop pulling (pulls in flight cancelled) → release what waits in the inbox and the held
        countdowns → send queued settles → stop leasing. Idempotent; the caller then closes
        the clients."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pullers = [*self._pullers.values(), *self._retired]
            self._pullers.clear()
            self._retired.clear()
        self._stop_pulling(pullers)
        self.stop_signal.stop()
        self.stop_signal.join(PULLER_JOIN)
        self.stop_signal.close()
        self.timer.stop()
        self.timer.join(PULLER_JOIN)
        self.timer.cancel_all()
        self.release(self.intake.take_held())
        self.release(self.inbox.remove(lambda delivery: True))
        self.leaser.stop()
        self.settler.stop()
        self.settler.join(SETTLER_JOIN)
        self.leaser.join(PULLER_JOIN)
        self.inbox.close()
        logger.debug("Engine closed: %d puller(s) stopped, %d message(s) released in all.",
                     len(pullers), self.released)

    def _stop_pulling(self, pullers: list[Puller]) -> None:
        """Stop every puller and wait for its last pull (bounded).

        Closing the pull client ends every pull in flight, even those that cannot be
        cancelled alone; the emulator may not honour that (pubsub/pulls.py), so there
        the pullers' last, short pulls end first.
        """
        for puller in pullers:
            puller.stop()
        emulator = self._emulator
        if self._pull_client is not None and not emulator:
            self._pull_client.close()
        for puller in pullers:
            puller.join(PULLER_JOIN)
            if puller.alive:
                logger.debug("Puller %s still runs %.0fs after it was stopped.", puller.name, PULLER_JOIN)
        if self._pull_client is not None and emulator:
            self._pull_client.close()
