"""The Kombu channel verbs on Pub/Sub: declare, bind, publish, consume, ack, reject, purge.

Each verb is short and hands over: resources to pubsub/admin.py, routing to
exchanges.py, sending to pubsub/publisher.py, consuming and settling to the
connection's engine (engine/), temporary queues to temporary.py.
"""

from __future__ import annotations

import datetime
import functools
import itertools
import logging
from queue import Empty
from typing import TYPE_CHECKING, Any

from kombu.transport import virtual
from kombu.transport.base import to_rabbitmq_queue_arguments

from . import celery_hooks, exchanges, expiry, morgue, priorities, wire
from .engine import Consumer, Delivery
from .errors import AccessDeniedError, PublishError, PurgeRefusedError, RequestError
from .pubsub.admin import SubscriptionInfo
from .qos import QoS
from .temporary import TemporaryQueues

if TYPE_CHECKING:
    from .transport import Transport

logger = logging.getLogger(__name__)

#: Pulls one basic_get makes at most: each message settled on the way costs one, and a
#: morgue that cannot be reached must not turn one get into an endless loop.
GET_PASSES = 10


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Channel(virtual.Channel):
    """One Kombu channel on Pub/Sub; state lives here or on the connection, never on the class."""

    QoS = QoS
    supports_fanout = True
    exchange_types = {**virtual.Channel.exchange_types, "topic": exchanges.TopicExchange,
                      "fanout": exchanges.FanoutExchange}
    connection: Transport

    def __init__(self, connection: Transport, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self._qos = self.QoS(self)  # here, not lazily on a puller thread reading the prefetch
        # Kept past close (which drops .connection): a delivery settled after close still
        # reaches the engine, which says so.
        self.transport = connection
        self.options = connection.options
        self.engine = connection.engine
        self._tags = itertools.count(1)
        self.window = self.engine.window(lambda: self.qos.prefetch_count)
        #: queue → its consumers, one per priority step.
        self._pulling: dict[str, list[Consumer]] = {}
        self._declared: dict[str, dict[str, Any]] = {}
        self._no_ack: set[str] = set()
        self._temporary = TemporaryQueues(connection.admin)
        # The queue whose subscription the last declare created (a bind may move it).
        self._fresh: str | None = None
        #: queue → the exchange whose topic its subscription is on (fanout, temporary topic).
        self.subscribed_exchanges: dict[str, str] = {}

    # -- declaring -----------------------------------------------------------------
    def _new_queue(self, queue: str, **kwargs: Any) -> None:
        expiry.queue_ttl(queue, kwargs.get("arguments"))  # a bad TTL fails the declare
        self._declared[queue] = kwargs
        self._fresh = None
        if not self._is_temporary(queue) and self.ensure_queue(queue).created:
            self._fresh = queue

    def prepare_queue_arguments(self, arguments: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """``Queue(message_ttl=…, max_priority=N)`` → ``x-message-ttl`` (ms) and ``x-max-priority``,
        as on RabbitMQ (expiry.py and priorities.py read them)."""
        return to_rabbitmq_queue_arguments(arguments, **kwargs)

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        return self.connection.admin.find_subscription(queue) is not None

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        kind = self.typeof(exchange).type
        fresh, self._fresh = self._fresh, None
        if kind == "fanout" or (kind == "topic" and self._is_temporary(queue)):
            info = self._on_exchange_topic(queue, exchange, fresh == queue)
            if info is not None:
                self.subscribed_exchanges[queue] = exchange
                self.connection.exchange_topics.created(exchange, info.topic_path)
        else:
            self.ensure_queue(queue)

    def _on_exchange_topic(self, queue: str, exchange: str, fresh: bool) -> SubscriptionInfo | None:
        """The subscription of `queue` on `exchange`'s topic, moved there if it was just made.

        Kombu declares a queue, then binds it; declaring made its subscription on
        its own topic. When this channel made it in that declare, it is re-made on
        the exchange's topic, where every publisher's fanout reaches it. A queue that
        already lived on its own topic keeps it (what waits there is not dropped):
        None, and exchanges.FanoutExchange also publishes to its topic from here.
        """
        admin = self.connection.admin
        info = self.ensure_queue(queue, topic=exchange)
        if info.topic_path == admin.topic_path(exchange):
            return info
        if fresh:
            admin.delete_subscription(info.path)
            self.connection.subscriptions.pop(queue, None)
            return self.ensure_queue(queue, topic=exchange)
        logger.warning(
            "Queue %r is bound to fanout exchange %r but its subscription is on the queue's own "
            "topic (it existed before the binding): it gets the exchange's messages only from "
            "publishers that declared this binding. To receive every publisher's, delete it "
            "('celery pubsub delete %s') and declare it again.", queue, exchange, queue)
        return None

    def ensure_queue(self, queue: str, topic: str | None = None) -> SubscriptionInfo:
        """The subscription named as `queue`, created (with its topic) if needed; with
        priorities, the other steps' subscriptions too (see :meth:`steps`)."""
        if self._is_temporary(queue):
            info = self._temporary.ensure(queue, topic or queue)
        else:
            known = self.connection.subscriptions.get(queue)
            if known is not None:
                return known
            wanted = priorities.Steps.for_queue(
                priorities.max_priority(self._declared.get(queue)), self.options.priority_steps)
            steps = priorities.ensure(self.connection.admin, queue, wanted, False, topic)
            info = steps[-1].info
            if len(steps) > 1:
                self.connection.priority_steps[queue] = steps
        self.connection.subscriptions[queue] = info
        return info

    def steps(self, queue: str) -> list[priorities.Step]:
        """The subscriptions behind `queue`, highest priority step first (one without priorities)."""
        info = self.ensure_queue(queue)
        return self.connection.priority_steps.get(queue) or [priorities.Step(0, 0, info)]

    def _is_temporary(self, queue: str) -> bool:
        declared = self._declared.get(queue, {})
        return bool(declared.get("auto_delete") or declared.get("exclusive"))

    def _message_ttl(self, queue: str) -> float | None:
        """The message TTL this channel declared `queue` with, seconds."""
        return expiry.queue_ttl(queue, self._declared.get(queue, {}).get("arguments"))

    # -- publishing ----------------------------------------------------------------
    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        reply_to = message["properties"].get("reply_to")
        if reply_to and reply_to != queue and self._is_temporary(reply_to):
            # The reply queue this channel declared (Celery's rpc:// results) must exist
            # before the request goes out, as the AMQP declare made it: the answer may
            # come before the caller starts consuming.
            self.ensure_queue(reply_to)
        data, attributes = wire.encode(message)
        attributes.update(expiry.stamp(message, self._message_ttl(queue), _now()))
        topic_path = self._topic_for(queue, message)
        try:
            self.connection.publisher.publish(topic_path, data, attributes)
        except PublishError as exc:
            if not exc.topic_missing:
                raise
            action = exchanges.after_missing_topic(self, queue, message)
            if action == "raise":
                raise
            if action == "retry":
                self.ensure_queue(queue)
                self.connection.publisher.publish(self._topic_for(queue, message), data, attributes)

    def _topic_for(self, queue: str, message: dict[str, Any]) -> str:
        """The topic a message for `queue` goes to: with priorities, its step's (priorities.py)."""
        connection = self.connection
        if queue in self._declared or queue in connection.subscriptions:
            info = self.ensure_queue(queue)
            steps = connection.priority_steps.get(queue)
            if not steps:
                return info.topic_path
            return priorities.pick(steps, priorities.priority_of(message)).info.topic_path
        priority = priorities.priority_of(message)
        if not priority:
            return connection.admin.topic_path(queue)
        if queue not in connection.topic_steps:  # a queue never declared here: ask its topic once
            label = connection.admin.topic_steps_label(queue)
            connection.topic_steps[queue] = priorities.Steps.from_label(label)
        steps = connection.topic_steps[queue]
        step = steps.step_of(priority) if steps else 0
        return connection.admin.step_topic_path(queue, step)

    def _put_fanout(self, exchange: str, message: dict[str, Any], routing_key: str,
                    **kwargs: Any) -> None:
        data, attributes = wire.encode(message)
        attributes.update(expiry.stamp(message, None, _now()))  # each queue's TTL: its consumer's
        topic_path = self.connection.ensure_topic(exchange)
        self.connection.publisher.publish(topic_path, data, attributes)

    def _lookup(self, exchange: str, routing_key: str, default: str | None = None) -> list[str]:
        queues = super()._lookup(exchange, routing_key, default)
        if not queues and exchange and self.typeof(exchange).type == "direct" and routing_key:
            return [exchanges.remote_queue(exchange, routing_key)]  # bound by another process
        return queues

    # -- consuming (the consuming thread) --------------------------------------------
    def basic_consume(self, queue: str, no_ack: bool, callback: Any, consumer_tag: str,
                      **kwargs: Any) -> str:
        self.ensure_queue(queue)
        if no_ack:
            self._no_ack.add(queue)
        result = super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)
        if queue not in self._pulling:
            consumers = [self._consumer(queue, step) for step in self.steps(queue)]
            self._pulling[queue] = consumers
            for consumer in consumers:
                self.engine.consume(consumer)
        return result

    def _consumer(self, queue: str, step: priorities.Step) -> Consumer:
        return Consumer(self, queue, step.info, self.window, functools.partial(next, self._tags),
                        functools.partial(exchanges.matches, self, queue),
                        message_ttl=self._message_ttl(queue), rank=step.rank,
                        ranked=queue in self.connection.priority_steps)

    def basic_cancel(self, consumer_tag: str) -> None:
        queue = self._tag_to_queue.get(consumer_tag)
        super().basic_cancel(consumer_tag)
        if queue is not None and queue not in self._active_queues:
            self._stop_consuming(queue)
            if self.transport.stopping:
                self._release_dropped()

    def _release_dropped(self) -> None:
        """A stopping worker cancels its consumers: give back at once what it will never run."""
        tags = [delivery.tag for delivery in self.window.unsettled()]
        for tag in celery_hooks.dropped_at_shutdown(self, tags):
            self.settle(tag, ack=False)
            self.qos._quick_ack(tag)

    def _stop_consuming(self, queue: str) -> None:
        for consumer in self._pulling.pop(queue, ()):
            self.engine.cancel(consumer)
        self._no_ack.discard(queue)

    def release_prefetched(self) -> None:
        """The worker is stopping: stop pulling task queues and give back what Celery has not
        taken. No_ack queues (its remote-control mailbox) keep going."""
        for queue in [queue for queue in self._pulling if queue not in self._no_ack]:
            self._stop_consuming(queue)

    def basic_qos(self, prefetch_size: int = 0, prefetch_count: int = 0,
                  apply_global: bool = False) -> None:
        super().basic_qos(prefetch_size, prefetch_count, apply_global)
        self.window.wake()

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        """basic_get: the next message Celery may have, from the highest priority step that
        has one; those buried or skipped on the way (expired, refused, not for this queue)
        are passed over, at most GET_PASSES of them."""
        passes = 0
        for step in self.steps(queue):
            consumer = self._consumer(queue, step)
            while passes < GET_PASSES:
                passes += 1
                response = self.connection.subscriber.pull(
                    request={"subscription": step.info.path, "max_messages": 1,
                             "return_immediately": True},
                    timeout=self.options.rpc_timeout)
                if not response.received_messages:
                    break
                for delivery in self.engine.intake.accept(consumer, list(response.received_messages)):
                    self.window.hold(delivery)
                    return delivery.payload
        raise Empty()

    def deliver(self, delivery: Delivery) -> None:
        """Consuming thread: hand one delivery from the inbox to its consumer's callback."""
        queue = delivery.queue
        callback = None if self.closed else self.transport._callbacks.get(queue)
        if callback is None:
            delivery.window.left(1, delivery.rank)
            self.engine.release([delivery])
            return
        no_ack = queue in self._no_ack
        delivery.window.handed(delivery, held=not no_ack)
        if no_ack:
            self.engine.settle(delivery, ack=True)
        try:
            callback(delivery.payload)
        except (*self.transport.connection_errors, *self.transport.channel_errors):
            raise
        except Exception as exc:  # noqa: BLE001 - one bad message must not stop the worker
            self._on_callback_error(delivery, exc, no_ack)

    def _on_callback_error(self, delivery: Delivery, exc: Exception, no_ack: bool) -> None:
        reason = f"the consumer raised {type(exc).__name__}: {exc}"[:1024]
        if no_ack:  # already acked: nothing is left to move
            logger.error("The consumer of %r raised on a message it had taken without ack (%s); "
                         "the message is gone.", delivery.queue, reason, exc_info=True)
            return
        logger.error("The consumer of %r could not take a message (%s); moving it to the morgue.",
                     delivery.queue, reason, exc_info=True)
        self.settle(delivery.tag, ack=True, bury=True, reason=reason)  # acked once in the morgue
        if delivery.tag in self.qos._delivered:
            self.qos._quick_ack(delivery.tag)

    def settle(self, delivery_tag: Any, ack: bool, bury: bool = False,
               reason: str | None = None) -> None:
        """Ack or nack the Pub/Sub message behind a delivery tag (any thread).

        With `bury`, publish it to the morgue first (with the reason), and ack only
        once the morgue accepted it.
        """
        delivery = self.window.settled(delivery_tag)
        if delivery is None:
            return
        if bury:
            data, attributes = wire.encode(delivery.payload)
            reason = reason or morgue.reject_reason(delivery.payload)
            ack = self.transport.bury(data, attributes, reason, delivery.queue)
        self.engine.settle(delivery, ack)

    def _restore(self, message: Any) -> None:
        self.settle(message.delivery_tag, ack=False)

    def _restore_at_beginning(self, message: Any) -> None:
        self.settle(message.delivery_tag, ack=False)

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        self._temporary.deleted(queue)
        admin = self.connection.admin
        for step in self.connection.priority_steps.pop(queue, [])[:-1]:  # the queue's own last
            admin.delete_subscription(step.info.path)
            admin.delete_topic(step.info.topic_path)
        self.connection.topic_steps.pop(queue, None)
        admin.delete_queue(queue, self.connection.subscriptions.pop(queue, None))

    def _purge(self, queue: str) -> int:
        try:
            removed = [self.connection.admin.purge(step.info.path) for step in self.steps(queue)]
        except (AccessDeniedError, RequestError) as exc:
            raise PurgeRefusedError(f"cannot purge queue {queue!r}: {exc}") from exc
        if None in removed:
            logger.info("Purged %r by seeking to now; Pub/Sub does not say how many.", queue)
        return sum(count or 0 for count in removed)

    def _size(self, queue: str) -> int:
        return 0  # Pub/Sub has no queue-depth API (only Cloud Monitoring, minutes stale).

    # -- closing -----------------------------------------------------------------
    def close(self) -> None:
        """Stop pulling → give back what waits in the inbox and what Celery holds unacked →
        delete our temporary queues."""
        if self.closed:
            return
        for queue in list(self._pulling):
            self._stop_consuming(queue)
        connection = self.connection
        super().close()  # cancels consumers, nacks unacked (QoS.restore_unacked); drops .connection
        for queue in self._temporary.release_all(self.engine.settler.forget):
            connection.subscriptions.pop(queue, None)
