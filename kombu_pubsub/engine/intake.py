"""What happens to messages just pulled, before Celery sees them.

:func:`judge` is the decision, pure: decode, check (what Celery would crash on
or drop goes to the morgue with its reason), match the queue's bindings, and
look at the countdown and the expiry. :class:`Intake` carries the verdicts
out: deliver, hold a countdown due within seconds, defer it in Pub/Sub,
re-publish it, bury a message in the morgue (an expired one counted as such),
or ack one not meant for this queue.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .. import expiry, morgue, wire
from ..errors import PubSubError
from ..stats import Stats
from . import countdown
from .clock import Clock
from .inbox import Delivery, Inbox
from .leasing import Leaser
from .settling import Settler

if TYPE_CHECKING:
    from .pulling import Consumer

logger = logging.getLogger(__name__)

#: Bury a message in the morgue: (data, attributes, reason, queue) → True once it is there.
Bury = Callable[[bytes, dict[str, str], str, str], bool]
#: Publish a copy and wait until Pub/Sub accepted it: (topic path, data, attributes); raises PubSubError.
Republish = Callable[[str, bytes, dict[str, str]], None]


@dataclasses.dataclass(frozen=True)
class Verdict:
    """'deliver', 'hold', 'defer', 'republish', 'bury', 'expire' (bury, counted) or 'skip',
    with what it needs."""

    action: str
    payload: dict[str, Any] | None = None
    seconds: float = 0.0
    reason: str = ""


def judge(data: bytes, delivery_attempt: int, now: datetime.datetime, max_defer_hop: float,
          wanted: Callable[[dict[str, Any]], bool], attributes: Mapping[str, str] | None = None,
          published: datetime.datetime | None = None, message_ttl: float | None = None) -> Verdict:
    """Decide what happens to one pulled message.

    `attributes` and `published` (Pub/Sub's publish time) are the message's;
    `message_ttl` is its queue's TTL as the consuming channel declared it, seconds.
    A message is expired when it would be handed over (now, or at its ETA) past
    its deadline (expiry.py): a countdown that cannot run before it expires goes
    to the morgue at once, not at its ETA.
    """
    try:
        payload = wire.decode(data)
    except wire.UndecodableMessage as exc:
        return Verdict("bury", reason=exc.reason)
    refused = morgue.refusal(payload)
    if refused:
        return Verdict("bury", reason=refused)
    if not wanted(payload):
        return Verdict("skip")
    plan = countdown.plan(payload, now, delivery_attempt, max_defer_hop)
    eta = countdown.eta_of(payload) if plan.action != "deliver" else None
    expired = expiry.check(payload, attributes or {}, published, message_ttl, eta or now,
                           at_eta=eta is not None)
    if expired:
        return Verdict("expire", reason=expired)
    return Verdict(plan.action, payload, plan.seconds)


class Intake:
    """Carries out verdicts on a puller's thread; returns what is ready for Celery."""

    def __init__(self, leaser: Leaser, settler: Settler, timer: countdown.Timer, inbox: Inbox,
                 clock: Clock, stats: Stats, bury: Bury, republish: Republish,
                 max_defer_hop: float) -> None:
        self._leaser = leaser
        self._settler = settler
        self._timer = timer
        self._inbox = inbox
        self._clock = clock
        self._stats = stats
        self._bury = bury
        self._republish = republish
        self._max_defer_hop = max_defer_hop
        # ack id → a held countdown not handed over yet (puller and timer threads).
        self._held: dict[str, Delivery] = {}
        #: The countdowns deferred in Pub/Sub from here, counted for operators.
        self.pending = countdown.Pending()

    def accept(self, consumer: Consumer, received: list[Any]) -> list[Delivery]:
        """Lease pulled messages; settle, defer or hold what is not for Celery now; return the rest."""
        if not received:
            return []
        info = consumer.subscription
        self._stats.add("received", len(received))
        self._leaser.add(info.path, [item.ack_id for item in received], info.ack_deadline)
        now = self._clock.now()
        ready = []
        for item in received:
            verdict = judge(item.message.data, item.delivery_attempt, now, self._max_defer_hop,
                            consumer.wanted, item.message.attributes, item.message.publish_time,
                            consumer.message_ttl)
            if verdict.payload is None:
                self._settle_here(consumer, item, verdict)
                continue
            delivery = Delivery(consumer.owner, consumer.window, consumer.queue, info.path,
                                item.ack_id, verdict.payload, consumer.rank)
            if verdict.action == "deliver":
                _tag(delivery, consumer, item.delivery_attempt)
                ready.append(delivery)
            else:
                self._put_off(delivery, consumer, item, verdict)
        return ready

    def _settle_here(self, consumer: Consumer, item: Any, verdict: Verdict) -> None:
        """A message Celery never sees: bury it (ack once buried, else nack) or skip it (ack)."""
        path = consumer.subscription.path
        ack = True
        if verdict.action in ("bury", "expire"):
            ack = self._bury(item.message.data, dict(item.message.attributes), verdict.reason,
                             consumer.queue)
            if ack and verdict.action == "expire":
                self._stats.add("expired")
        self._leaser.remove(item.ack_id)
        if ack:
            self._settler.ack(path, item.ack_id)
        else:
            self._settler.nack(path, item.ack_id)

    def _put_off(self, delivery: Delivery, consumer: Consumer, item: Any, verdict: Verdict) -> None:
        """A countdown not due yet: hold it (leased) until just before its ETA, defer or re-publish it."""
        self._stats.add("deferred")
        if verdict.action == "hold":
            _tag(delivery, consumer, item.delivery_attempt)
            when = self._clock.monotonic() + verdict.seconds - countdown.HANDOVER_EARLY
            self._held[delivery.ack_id] = delivery
            self._timer.call_at(when, lambda: self._hand_over(delivery))
            return
        self._leaser.remove(delivery.ack_id)
        seconds = verdict.seconds
        if verdict.action == "republish":
            try:
                self._republish(consumer.subscription.topic_path, item.message.data,
                                expiry.carried(item.message.attributes, item.message.publish_time))
            except PubSubError as exc:
                logger.warning("Could not re-publish a delayed message on %r (%s); deferring it "
                               "instead.", delivery.queue, exc)
                seconds = min(self._max_defer_hop, seconds)
            else:
                self._settler.ack(delivery.subscription_path, delivery.ack_id)
                return
        logger.debug("Deferred a message on %r for %.0fs.", delivery.queue, seconds)
        self._settler.modify(delivery.subscription_path, [delivery.ack_id], int(seconds))
        eta = countdown.eta_of(delivery.payload)
        if eta is not None:
            now = self._clock.now().timestamp()
            self.pending.note(delivery.queue, eta.timestamp(), now + int(seconds), now)

    def countdowns(self) -> dict[str, dict[str, Any]]:
        """Per queue, the countdowns pending here: deferred in Pub/Sub, or held until due.

        ``{"pending": n, "held": n, "next_eta": epoch seconds, "last_eta": epoch seconds}``.
        """
        result = self.pending.count(self._clock.now().timestamp())
        for queue in result.values():
            queue["held"] = 0
        for delivery in list(self._held.values()):
            eta = countdown.eta_of(delivery.payload)
            if eta is None:
                continue
            entry = result.setdefault(delivery.queue, {"pending": 0, "held": 0, "next_eta": eta.timestamp(),
                                                       "last_eta": eta.timestamp()})
            entry["held"] += 1
            entry["next_eta"] = min(entry["next_eta"], eta.timestamp())
            entry["last_eta"] = max(entry["last_eta"], eta.timestamp())
        return result


    def _hand_over(self, delivery: Delivery) -> None:
        """Timer thread: a held countdown is nearly due; Celery's own timer starts it at its ETA."""
        if self._held.pop(delivery.ack_id, None) is not None:
            self._inbox.put_many([delivery])

    def take_held(self) -> list[Delivery]:
        """Closing: the held countdowns not handed over, now given up by the timer."""
        held = [self._held.pop(ack_id) for ack_id in list(self._held)]
        return [delivery for delivery in held if delivery is not None]


def _tag(delivery: Delivery, consumer: Consumer, delivery_attempt: int) -> None:
    """Give the envelope its delivery tag and redelivered flag, as Kombu and Celery read them."""
    properties = delivery.payload["properties"]
    properties["delivery_tag"] = consumer.next_tag()
    redelivered = delivery_attempt > 1
    properties.setdefault("delivery_info", {})["redelivered"] = redelivered
    delivery.payload["redelivered"] = redelivered
