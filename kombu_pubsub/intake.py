"""What happens to messages just pulled, before Celery sees them.

Each is leased, decoded, checked (what Celery would crash on or drop goes to the
morgue with its reason), matched against a topic binding, tagged, and either
delivered or, when its countdown/ETA is not due yet, put off (delay.py).
Separate from channel.py so the Kombu verbs stay short.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from . import delay, exchanges, morgue, wire
from .consumer import Delivery

if TYPE_CHECKING:
    from .channel import Channel
    from .pubsub.admin import SubscriptionInfo


def accept(channel: Channel, info: SubscriptionInfo, queue: str, received: list) -> list[Delivery]:
    """Puller thread: lease pulled messages; return those to deliver now."""
    if not received:
        return []
    transport = channel.transport
    transport.stats.add("received", len(received))
    transport.leaser.add(info.path, [item.ack_id for item in received], info.ack_deadline)
    now = datetime.datetime.now(datetime.UTC)
    deliveries = []
    for item in received:
        payload = _payload(channel, info, queue, item)
        if payload is None:
            continue
        delivery = Delivery(channel, queue, info.path, item.ack_id, payload)
        step = delay.plan(payload, now, item.delivery_attempt, channel.options.max_defer_hop)
        if step.action == "deliver":
            deliveries.append(delivery)
        else:
            channel.postponer.put_off(delivery, item, info.topic_path, step)
    return deliveries


def _payload(channel: Channel, info: SubscriptionInfo, queue: str, item: Any) -> dict[str, Any] | None:
    """The Kombu envelope of a pulled message, tagged; None when it was settled here."""
    try:
        payload = wire.decode(item.message.data)
    except wire.UndecodableMessage as exc:
        bury(channel, info, queue, item, exc.reason)
        return None
    refused = morgue.refusal(payload)
    if refused:
        bury(channel, info, queue, item, refused)
        return None
    if not exchanges.matches(channel, queue, payload):
        channel.transport.leaser.remove(item.ack_id)
        channel.transport.acker.ack(info.path, item.ack_id)  # not for this queue's bindings
        return None
    payload["properties"]["delivery_tag"] = channel.next_tag()
    # Celery reads it from delivery_info (Request.delivery_info['redelivered']).
    redelivered = item.delivery_attempt > 1
    payload["properties"].setdefault("delivery_info", {})["redelivered"] = redelivered
    payload["redelivered"] = redelivered
    return payload


def bury(channel: Channel, info: SubscriptionInfo, queue: str, item: Any, reason: str) -> None:
    """Move a pulled message to the morgue; ack it once there, else nack it."""
    buried = morgue.bury(channel, item.message.data, dict(item.message.attributes), reason, queue)
    channel.transport.leaser.remove(item.ack_id)
    if buried:
        channel.transport.acker.ack(info.path, item.ack_id)
    else:
        channel.transport.acker.modify(info.path, [item.ack_id], 0)
