"""The Kombu channel verbs on Pub/Sub: declare, bind, publish, consume, ack, reject, purge.

Each verb is short and delegates: resources to admin.py, routing to exchanges.py,
sending to publisher.py, pulling to consumer.py, what happens to a pulled message
to intake.py, countdowns to delay.py, acks to acker.py, leases to leaser.py,
temporary queues to temporary.py, prefetch accounting to prefetch.py.
"""

from __future__ import annotations

import itertools
import logging
from queue import Empty
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc
from kombu.transport import virtual

from . import delay, exchanges, intake, morgue, wire
from .consumer import Delivery, Puller
from .errors import PublishError
from .prefetch import Prefetch
from .pubsub.admin import SubscriptionInfo
from .qos import QoS
from .temporary import TemporaryQueues

if TYPE_CHECKING:
    from .transport import Transport

logger = logging.getLogger(__name__)


class Channel(virtual.Channel):
    """One Kombu channel on Pub/Sub; state lives here or on the connection, never on the class."""

    QoS = QoS
    supports_fanout = True
    exchange_types = {**virtual.Channel.exchange_types, "topic": exchanges.TopicExchange}
    connection: Transport

    def __init__(self, connection: Transport, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        # Kept past close (which drops .connection): a delivery taken just before
        # close must still be nacked.
        self.transport = connection
        self.options = connection.options
        self.subscriber = connection.subscriber
        self._tags = itertools.count(1)
        self._prefetch = Prefetch()
        self._pullers: dict[str, Puller] = {}
        self._declared: dict[str, dict[str, Any]] = {}
        self._no_ack: set[str] = set()
        self._temporary = TemporaryQueues()
        self.postponer = delay.Postponer(self)
        #: queue → the exchange whose topic its subscription is on (fanout, temporary topic).
        self.subscribed_exchanges: dict[str, str] = {}

    # -- declaring -----------------------------------------------------------------
    def _new_queue(self, queue: str, **kwargs: Any) -> None:
        self._declared[queue] = kwargs
        if not self._is_temporary(queue):
            self.ensure_queue(queue)

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        try:
            self.subscriber.get_subscription(
                request={"subscription": self.connection.admin.subscription_path(queue)},
                timeout=self.options.publish_timeout)
        except gexc.NotFound:
            return False
        return True

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        kind = self.typeof(exchange).type
        if kind == "fanout" or (kind == "topic" and self._is_temporary(queue)):
            info = self.ensure_queue(queue, topic=exchange)
            self.subscribed_exchanges[queue] = exchange
            self.connection.exchange_topics.created(exchange, info.topic_path)
        else:
            self.ensure_queue(queue)

    def ensure_queue(self, queue: str, topic: str | None = None) -> SubscriptionInfo:
        """The subscription behind `queue`, created (with its topic) if needed."""
        known = self.connection.subscriptions.get(queue)
        if known is not None:
            return known
        temporary = self._is_temporary(queue)
        info = self.connection.admin.ensure_subscription(queue, topic or queue, temporary=temporary)
        self.connection.subscriptions[queue] = info
        if temporary:
            self._temporary.found(queue, info)
        return info

    def _is_temporary(self, queue: str) -> bool:
        declared = self._declared.get(queue, {})
        return bool(declared.get("auto_delete") or declared.get("exclusive"))

    # -- publishing ----------------------------------------------------------------
    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        data, attributes = wire.encode(message)
        if queue in self._declared or queue in self.connection.subscriptions:
            topic_path = self.ensure_queue(queue).topic_path
        else:
            topic_path = self.connection.admin.topic_path(queue)
        try:
            self.connection.publisher.publish(topic_path, data, attributes)
        except PublishError:
            action = exchanges.after_missing_topic(self, queue, message)
            if action == "raise":
                raise
            if action == "retry":
                self.connection.publisher.publish(self.ensure_queue(queue).topic_path, data, attributes)

    def _put_fanout(self, exchange: str, message: dict[str, Any], routing_key: str,
                    **kwargs: Any) -> None:
        data, attributes = wire.encode(message)
        topic_path = self.connection.ensure_topic(exchange)
        self.connection.publisher.publish(topic_path, data, attributes)

    def _lookup(self, exchange: str, routing_key: str, default: str | None = None) -> list[str]:
        queues = super()._lookup(exchange, routing_key, default)
        if not queues and exchange and self.typeof(exchange).type == "direct" and routing_key:
            return [exchanges.remote_queue(exchange, routing_key)]  # bound by another process
        return queues

    # -- consuming -----------------------------------------------------------------
    def basic_consume(self, queue: str, no_ack: bool, callback: Any, consumer_tag: str,
                      **kwargs: Any) -> str:
        info = self.ensure_queue(queue)
        if no_ack:
            self._no_ack.add(queue)
        result = super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)
        puller = self._pullers.get(queue)
        if puller is None or puller.stopped:
            puller = self._pullers[queue] = Puller(self, queue, info)
            puller.start()
        return result

    def basic_cancel(self, consumer_tag: str) -> None:
        queue = self._tag_to_queue.get(consumer_tag)
        super().basic_cancel(consumer_tag)
        if queue is not None and queue not in self._active_queues:
            puller = self._pullers.pop(queue, None)
            if puller is not None:
                puller.stop()
                self.transport.retired_pullers.append(puller)
            self._no_ack.discard(queue)

    def release_prefetched(self) -> None:
        """Stop pulling task queues; nack their messages Celery has not taken (any thread).

        For a worker told to stop: no_ack queues (its remote-control mailbox) keep going.
        """
        for queue, puller in list(self._pullers.items()):
            if queue not in self._no_ack:
                puller.stop()
                self.transport.retired_pullers.append(puller)
        released = self.transport.ready.remove(
            lambda item: item.channel is self and item.queue not in self._no_ack)
        self._prefetch.buffered(-len(released))
        self.release(released)

    def basic_qos(self, prefetch_size: int = 0, prefetch_count: int = 0,
                  apply_global: bool = False) -> None:
        super().basic_qos(prefetch_size, prefetch_count, apply_global)
        self.wake_pullers()

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        info = self.ensure_queue(queue)
        response = self.subscriber.pull(
            request={"subscription": info.path, "max_messages": 1, "return_immediately": True},
            timeout=self.options.publish_timeout)
        for delivery in intake.accept(self, info, queue, list(response.received_messages)):
            self._prefetch.hold(delivery.payload["properties"]["delivery_tag"], delivery)
            return delivery.payload
        raise Empty()

    def _purge(self, queue: str) -> int:
        info = self.ensure_queue(queue)
        removed = self.connection.admin.purge(info.path)
        if removed is None:
            logger.info("Purged %r by seeking to now; Pub/Sub does not say how many.", queue)
        return removed or 0

    def _size(self, queue: str) -> int:
        return 0  # Pub/Sub has no queue-depth API (only Cloud Monitoring, minutes stale).

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        self.connection.admin.delete_queue(queue, self.connection.subscriptions.pop(queue, None))

    # -- called by pullers (their thread) and the consuming thread -------------------
    def reserve(self, puller: Puller) -> int:
        """Puller thread: wait until the prefetch leaves room; return how many to pull (0: stop)."""
        return self._prefetch.reserve(lambda: self.qos.prefetch_count, lambda: len(self._pullers),
                                      self.options.pull_max_messages,
                                      lambda: puller.stopped or self.closed)

    def unreserve(self, count: int) -> None:
        self._prefetch.unreserve(count)

    def wake_pullers(self) -> None:
        self._prefetch.wake()

    def on_pulled(self, puller: Puller, received: list, reserved: int) -> None:
        """Puller thread: lease what arrived and hand it to the consuming thread."""
        deliveries = intake.accept(self, puller.subscription, puller.queue, received)
        self._prefetch.pulled(reserved, len(deliveries))
        if puller.stopped or self.closed:
            self.release(deliveries)
            return
        self.connection.ready.put_many(deliveries)

    def next_tag(self) -> int:
        return next(self._tags)

    def hand_over(self, delivery: Delivery) -> None:
        """Scheduler thread: a held message is nearly due; queue it for Celery, whose timer starts it."""
        if self.closed:
            return  # its deadline ends right after the ETA: Pub/Sub redelivers it
        self._prefetch.buffered(1)
        self.connection.ready.put_many([delivery])

    def holds(self, delivery: Delivery) -> bool:
        """True while a delivery is with Celery, not yet acked or rejected (any thread)."""
        return not self.closed and self._prefetch.holds(delivery.payload["properties"]["delivery_tag"])

    def deliver(self, delivery: Delivery) -> None:
        """Consuming thread: hand one delivery to its consumer's callback."""
        queue = delivery.queue
        callback = None if self.closed else self.transport._callbacks.get(queue)
        if callback is None:
            self._prefetch.buffered(-1)
            self.release([delivery])
            return
        tag = delivery.payload["properties"]["delivery_tag"]
        self._prefetch.taken(tag, None if queue in self._no_ack else delivery)
        if queue in self._no_ack:
            self._finish(delivery, ack=True)
        try:
            callback(delivery.payload)
        except (*self.transport.connection_errors, *self.transport.channel_errors):
            raise
        except Exception as exc:  # noqa: BLE001 - one bad message must not stop the worker
            reason = f"the consumer raised {type(exc).__name__}: {exc}"[:1024]
            logger.error("The consumer of %r could not take a message (%s); moving it to the "
                         "morgue.", queue, reason, exc_info=True)
            self.settle(tag, ack=True, bury=True, reason=reason)  # acked once in the morgue
            if tag in self.qos._delivered:
                self.qos._quick_ack(tag)

    def settle(self, delivery_tag: Any, ack: bool, bury: bool = False,
               reason: str | None = None) -> None:
        """Ack or nack the Pub/Sub message behind a delivery tag (any thread).

        With `bury`, publish it to the morgue first (with the reason), and ack only
        once the morgue accepted it.
        """
        delivery = self._prefetch.settled(delivery_tag)
        if delivery is None:
            return
        if bury:
            data, attributes = wire.encode(delivery.payload)
            reason = reason or morgue.reject_reason(delivery.payload)
            if not morgue.bury(self, data, attributes, reason, delivery.queue):
                ack = False
        self._finish(delivery, ack)

    def release(self, deliveries: list[Delivery]) -> None:
        """Nack deliveries that will not be processed here, so others get them at once."""
        if deliveries:
            logger.debug("Released %d message(s) for redelivery elsewhere.", len(deliveries))
            self.transport.released += len(deliveries)
        for delivery in deliveries:
            self._finish(delivery, ack=False)

    def _finish(self, delivery: Delivery, ack: bool) -> None:
        if not self.transport.connected:
            logger.warning("A message on %r was settled after its connection closed; Pub/Sub "
                           "redelivers it when its ack deadline ends.", delivery.queue)
            return
        self.transport.leaser.remove(delivery.ack_id)
        if ack:
            self.transport.acker.ack(delivery.subscription_path, delivery.ack_id)
        else:
            self.transport.acker.modify(delivery.subscription_path, [delivery.ack_id], 0)

    def report(self, error: BaseException) -> None:
        """Puller thread: pass an error to the consuming thread, which raises it."""
        self.connection.ready.fail(error)

    def _restore(self, message: Any) -> None:
        self.settle(message.delivery_tag, ack=False)

    def _restore_at_beginning(self, message: Any) -> None:
        self.settle(message.delivery_tag, ack=False)

    # -- closing -----------------------------------------------------------------
    def close(self) -> None:
        """Stop pulling → release buffered and unacked messages → delete our temporary queues."""
        if self.closed:
            return
        for puller in self._pullers.values():
            puller.stop()
        self.transport.retired_pullers.extend(self._pullers.values())
        connection = self.connection
        self.release(connection.ready.remove_channel(self))
        super().close()  # cancels consumers, nacks unacked (QoS.restore_unacked); drops .connection
        self._temporary.delete_all(connection)
