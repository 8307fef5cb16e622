"""How a message published to a Kombu exchange finds its queues on Pub/Sub.

* direct: each queue is its own topic; the routing key names the queue when the
  binding was declared by another process (Celery names queues after their key).
* fanout: one topic per exchange, one subscription per bound queue, on it. A
  durable queue that lived on its own topic before it was bound keeps it, and
  gets the exchange's messages from publishers that declared the binding.
* topic: durable queues bound to it are routed by this connection's bindings,
  as in Kombu's virtual transports (no extra topic per task queue); temporary
  queues (``celery events``, Flower, any auto-delete receiver) subscribe to the
  exchange's own topic, and their consumer keeps the messages whose routing key
  matches one of its binding patterns. That is how events reach other processes.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from kombu.transport.virtual import exchange as virtual_exchange

from . import wire
from .errors import PubSubError

if TYPE_CHECKING:
    from .channel import Channel
    from .transport import Transport

logger = logging.getLogger(__name__)

#: How long a publisher trusts its knowledge that an exchange's topic exists or
#: not, seconds: a receiver started later is heard from within this time.
TOPIC_RECHECK = 5.0


class TopicExchange(virtual_exchange.TopicExchange):
    """Kombu's topic exchange, also reaching subscribers in other processes."""

    channel: Channel

    def deliver(self, message: dict[str, Any], exchange: str, routing_key: str,
                **kwargs: Any) -> None:
        channel = self.channel
        for queue in channel._lookup(exchange, routing_key):
            if queue not in channel.subscribed_exchanges:  # those get it from the topic below
                channel._put(queue, message, **kwargs)
        topic_path = channel.connection.exchange_topics.find(exchange)
        if topic_path is None:
            return  # no one ever subscribed: Pub/Sub would drop it anyway
        data, attributes = wire.encode(message)
        try:
            # Batched, not awaited: events are best effort, and a task must not wait on them.
            channel.connection.publisher.publish(topic_path, data, attributes, awaited=False)
        except PubSubError as exc:
            channel.connection.exchange_topics.forget(exchange)
            logger.warning("Dropped a message for exchange %r (%s).", exchange, exc)


class FanoutExchange(virtual_exchange.FanoutExchange):
    """Kombu's fanout exchange: the exchange's topic, and queues bound here on their own topic."""

    channel: Channel

    def deliver(self, message: dict[str, Any], exchange: str, routing_key: str,
                **kwargs: Any) -> None:
        channel = self.channel
        channel._put_fanout(exchange, message, routing_key, **kwargs)
        exchange_topic = channel.connection.admin.topic_path(exchange)
        for queue in channel._lookup(exchange, routing_key):
            info = channel.connection.subscriptions.get(queue)
            if info is not None and info.topic_path != exchange_topic:
                channel._put(queue, message, **kwargs)


def remote_queue(exchange: str, routing_key: str) -> str:
    """The queue a direct message goes to when its binding was declared by another process.

    Kombu names a remote-control reply queue "<routing key>.<reply exchange>";
    Celery names a task queue after its routing key.
    """
    if exchange.startswith("reply.") and exchange.endswith(".pidbox"):
        return f"{routing_key}.{exchange}"
    return routing_key


def after_missing_topic(channel: Channel, queue: str, message: dict[str, Any]) -> str:
    """After a publish to `queue` failed: 'retry' (queue recreated), 'drop' or 'raise'.

    A reply whose queue is gone is dropped, as AMQP drops an unroutable message:
    its caller left (a pidbox reply: its exchange is transient; an ``rpc://``
    result: see :func:`is_reply`). Re-creating it would leave a queue no one
    ever reads or deletes.
    """
    transport = channel.transport
    if transport.admin.topic_exists(queue):
        return "raise"
    exchange = message["properties"].get("delivery_info", {}).get("exchange") or ""
    declared = channel.state.exchanges.get(exchange, {})
    if (exchange and not declared.get("durable", True)) or is_reply(message):
        logger.info("Dropped a reply for %r: its queue is gone (its caller left).", queue)
        return "drop"
    if not channel.options.create_missing:
        return "raise"
    transport.subscriptions.pop(queue, None)
    return "retry"


def is_reply(message: dict[str, Any]) -> bool:
    """True for an RPC-style reply sent to the default exchange: it has a correlation id
    and is no Celery task (which carries a ``task`` header). Celery's ``rpc://`` results
    are such replies, routed by the caller's ``reply_to``."""
    properties = message.get("properties") or {}
    exchange = properties.get("delivery_info", {}).get("exchange") or ""
    return (not exchange and bool(properties.get("correlation_id"))
            and "task" not in (message.get("headers") or {}))


def matches(channel: Channel, queue: str, payload: dict[str, Any]) -> bool:
    """True if a message on an exchange topic is wanted by `queue` (its bindings here)."""
    exchange = channel.subscribed_exchanges.get(queue)
    if exchange is None or channel.typeof(exchange).type != "topic":
        return True
    routing_key = payload["properties"].get("delivery_info", {}).get("routing_key") or ""
    topic = channel.typeof(exchange)
    try:
        table = channel.get_table(exchange)
    except KeyError:
        return True  # bound by another process: we cannot tell, so keep it
    return any(bound == queue and topic._match(pattern, routing_key)
               for _, pattern, bound in table)


class ExchangeTopics:
    """Which exchange topics exist, as a connection's publishers last saw them."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        # Guards _seen: exchange → (topic path or None, monotonic time checked).
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[str | None, float]] = {}

    def find(self, exchange: str) -> str | None:
        """The topic path of `exchange` if it exists (rechecked every TOPIC_RECHECK s)."""
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(exchange)
        if seen is not None and now - seen[1] < TOPIC_RECHECK:
            return seen[0]
        admin = self._transport.admin
        path = admin.topic_path(exchange) if admin.topic_exists(exchange) else None
        with self._lock:
            self._seen[exchange] = (path, now)
        return path

    def created(self, exchange: str, path: str) -> None:
        with self._lock:
            self._seen[exchange] = (path, time.monotonic())

    def forget(self, exchange: str) -> None:
        with self._lock:
            self._seen.pop(exchange, None)
