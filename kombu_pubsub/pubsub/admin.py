"""Topics and subscriptions: ensure (race-safe create), delete, purge.

Separate from the channel so provisioning tools and tests use the same code
the transport does. Every call is bounded by ``rpc_timeout``.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1
from google.protobuf import duration_pb2, timestamp_pb2

from .. import naming
from ..errors import PubSubError, ResourceMissingError
from ..options import TransportOptions
from . import rpc

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: The queue dead jobs and unprocessable messages go to (see morgue.py).
MORGUE_QUEUE = "morgue"
#: What Pub/Sub shows as the topic of a subscription whose topic was deleted.
DETACHED_TOPIC = "_deleted-topic_"
#: The label on the topic and subscription named as a queue with priorities: its steps.
STEPS_LABEL = "kombu_pubsub_priority_steps"
#: Purge pulls in batches of this many (Pub/Sub's max per pull is 1000).
PURGE_BATCH = 1000


@dataclasses.dataclass(frozen=True)
class SubscriptionInfo:
    """What the consumer needs to know of a subscription."""

    path: str
    topic_path: str
    ack_deadline: float
    #: True when this call created it (so the caller owns it), False when it existed.
    created: bool = dataclasses.field(default=False, compare=False)
    #: Its labels as Pub/Sub returned them (temporary queues carry their owner's; see temporary.py).
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False)

    @property
    def steps_label(self) -> str:
        """Its priority steps label ('' for none): set on a queue with priorities (priorities.py)."""
        return _steps_label(self.labels)


class Admin:
    """Creates, reads and deletes the Pub/Sub resources behind Celery queues and exchanges."""

    def __init__(self, project: str, options: TransportOptions,
                 publisher: pubsub_v1.PublisherClient,
                 subscriber: pubsub_v1.SubscriberClient, budget: rpc.Budget, *,
                 emulator: bool = False) -> None:
        """`emulator`: the clients call an emulator (no Seek: purge pulls instead)."""
        self.project = project
        self.emulator = emulator
        self._budget = budget
        self.options = options
        self._publisher = publisher
        self._subscriber = subscriber

    def topic_path(self, name: str) -> str:
        return naming.topic_path(self.project, name)

    def subscription_path(self, name: str) -> str:
        return naming.subscription_path(self.project, name)

    def step_path(self, name: str, step: int) -> str:
        """The subscription path of priority step `step` of queue `name` (step 0: the queue's own)."""
        return f"projects/{self.project}/subscriptions/{naming.step_resource_id(name, step)}"

    def step_topic_path(self, name: str, step: int) -> str:
        """The topic path of priority step `step` of queue `name` (step 0: the queue's own)."""
        return f"projects/{self.project}/topics/{naming.step_resource_id(name, step)}"

    def ensure_topic(self, name: str, step: int = 0, labels: Mapping[str, str] | None = None) -> str:
        """Make sure the topic for `name` (its priority step `step`) exists; return its path.
        `labels` are given to a topic this call creates."""
        path = self.step_topic_path(name, step)
        if not self.options.create_missing:
            try:
                rpc.call(self._publisher.get_topic, f"looking up topic {path!r}", self._budget, topic=path)
            except gexc.NotFound:
                raise ResourceMissingError(
                    f"topic {path!r} does not exist and create_missing is off; create it with "
                    f"'gcloud pubsub topics create {naming.resource_id(name)} --project {self.project}' "
                    "or 'celery pubsub provision'"
                ) from None
            return path
        try:
            rpc.call(self._publisher.create_topic, f"creating topic {path!r}", self._budget,
                     name=path, labels=dict(labels or {}))
            logger.info("Created topic %r.", path)
        except gexc.AlreadyExists:
            pass
        return path

    def ensure_subscription(self, name: str, topic_name: str, *, temporary: bool, step: int = 0,
                            labels: Mapping[str, str] | None = None) -> SubscriptionInfo:
        """Make sure subscription `name` on topic `topic_name` exists; return what it is.

        `step` makes the topic and subscription of one priority step of queue `name`.
        `labels` go on what this call creates: the subscription, and the topic when
        it is the queue's own (an exchange's topic is shared, so it gets none): a
        temporary queue's owner (temporary.py), a queue's priority steps
        (priorities.py). An existing subscription is returned as it is, with its labels.
        """
        topic_path = self.ensure_topic(topic_name, step, labels if topic_name == name else None)
        path = self.step_path(name, step)
        if self.options.create_missing:
            fields = self._subscription_fields(path, topic_path, temporary)
            fields["labels"] = dict(labels or {})
            if not temporary and name != MORGUE_QUEUE and self.options.dead_letter_attempts:
                # The morgue's subscription must exist first: Pub/Sub drops messages
                # forwarded to a topic nobody subscribes to.
                morgue = self.ensure_subscription(MORGUE_QUEUE, MORGUE_QUEUE, temporary=False)
                fields["dead_letter_policy"] = {
                    "dead_letter_topic": morgue.topic_path,
                    "max_delivery_attempts": self.options.dead_letter_attempts,
                }
            try:
                created = rpc.call(self._subscriber.create_subscription,
                                   f"creating subscription {path!r}", self._budget, **fields)
                logger.info("Created subscription %r on %r.", path, topic_path)
                return SubscriptionInfo(path, topic_path, float(created.ack_deadline_seconds),
                                        created=True, labels=dict(created.labels))
            except gexc.AlreadyExists:
                pass
        try:
            found = rpc.call(self._subscriber.get_subscription,
                             f"looking up subscription {path!r}", self._budget, subscription=path)
        except gexc.NotFound:
            raise ResourceMissingError(
                f"subscription {path!r} does not exist and create_missing is off; create it with "
                f"'gcloud pubsub subscriptions create {path.rsplit('/', 1)[-1]} "
                f"--topic {topic_path.rsplit('/', 1)[-1]} --project {self.project}' "
                "or 'celery pubsub provision'"
            ) from None
        if found.topic == DETACHED_TOPIC and self.options.create_missing:
            # Its topic was deleted: nothing published from now on would reach it.
            logger.warning("Subscription %r lost its topic (deleted); re-creating it. Messages "
                           "still on the old subscription are dropped with it.", path)
            self.delete_subscription(path)
            return self.ensure_subscription(name, topic_name, temporary=temporary, step=step,
                                            labels=labels)
        return SubscriptionInfo(path, found.topic, float(found.ack_deadline_seconds),
                                labels=dict(found.labels))

    def _subscription_fields(self, path: str, topic_path: str, temporary: bool) -> dict:
        options = self.options
        if temporary:
            ttl, retention = options.temporary_ttl, 600.0
        else:
            ttl, retention = options.subscription_ttl, options.message_retention
        # An ExpirationPolicy without ttl means "never expire"; leaving the field out
        # would give Pub/Sub's default of 31 days.
        expiration = {"ttl": _duration(ttl)} if ttl else {}
        return {
            "name": path,
            "topic": topic_path,
            "ack_deadline_seconds": int(options.ack_deadline),
            "message_retention_duration": _duration(retention),
            "expiration_policy": expiration,
        }

    def topic_steps_label(self, name: str) -> str:
        """The priority steps label of the topic for `name` ('' when it has none or is absent)."""
        try:
            topic = rpc.call(self._publisher.get_topic, f"looking up topic for {name!r}",
                             self._budget, topic=self.topic_path(name))
        except gexc.NotFound:
            return ""
        return _steps_label(topic.labels)

    def topic_exists(self, name: str) -> bool:
        """Tell whether the topic for `name` exists."""
        try:
            rpc.call(self._publisher.get_topic, f"looking up topic for {name!r}",
                     self._budget, topic=self.topic_path(name))
        except gexc.NotFound:
            return False
        return True

    def find_subscription(self, name: str, step: int = 0) -> pubsub_v1.types.Subscription | None:
        """The subscription behind queue `name` (or its priority step `step`) as Pub/Sub
        describes it, or None if it is absent."""
        path = self.step_path(name, step)
        try:
            return rpc.call(self._subscriber.get_subscription, f"looking up subscription {path!r}",
                            self._budget, subscription=path)
        except gexc.NotFound:
            return None

    def list_subscriptions(self) -> list[pubsub_v1.types.Subscription]:
        """Every subscription in the project (all pages)."""
        return rpc.call(_all_pages(self._subscriber.list_subscriptions),
                        f"listing the subscriptions of project {self.project!r}",
                        self._budget, project=f"projects/{self.project}")

    def topic_subscriptions(self, name: str) -> list[str]:
        """Paths of the subscriptions on the topic for `name`; empty if the topic is absent."""
        path = self.topic_path(name)
        try:
            return rpc.call(_all_pages(self._publisher.list_topic_subscriptions),
                            f"listing the subscriptions of topic {path!r}", self._budget, topic=path)
        except gexc.NotFound:
            return []

    def delete_queue(self, name: str, info: SubscriptionInfo | None) -> None:
        """Delete a queue's subscription, and its topic when the topic is its own."""
        self.delete_subscription(info.path if info else self.subscription_path(name))
        if info is None or info.topic_path == self.topic_path(name):
            self.delete_topic(self.topic_path(name))

    def delete_subscription(self, path: str) -> None:
        """Delete a subscription; a missing one is fine."""
        try:
            rpc.call(self._subscriber.delete_subscription, f"deleting subscription {path!r}",
                     self._budget, subscription=path)
            logger.debug("Deleted subscription %r.", path)
        except gexc.NotFound:
            pass

    def delete_topic(self, path: str) -> None:
        """Delete a topic; a missing one is fine."""
        try:
            rpc.call(self._publisher.delete_topic, f"deleting topic {path!r}",
                     self._budget, topic=path)
            logger.debug("Deleted topic %r.", path)
        except gexc.NotFound:
            pass

    def purge(self, subscription_path: str) -> int | None:
        """Remove every message waiting on a subscription; return how many, or None if unknown.

        On the emulator we pull and ack until a pull comes back empty, which
        counts them. On Google Cloud that could take hours for a deep backlog,
        so we Seek to now instead (instant, acks everything, count unknown),
        falling back to pulling where Seek is not implemented.
        """
        if self.emulator:
            return self._purge_by_pulling(subscription_path)
        now = timestamp_pb2.Timestamp()
        now.GetCurrentTime()
        try:
            rpc.call(self._subscriber.seek, f"purging {subscription_path!r}",
                     self._budget, subscription=subscription_path, time=now)
        except gexc.NotFound:
            return 0
        except PubSubError as exc:
            if not isinstance(exc.__cause__, gexc.MethodNotImplemented):
                raise
            return self._purge_by_pulling(subscription_path)
        return None

    def _purge_by_pulling(self, subscription_path: str) -> int:
        removed = 0
        while True:
            with warnings.catch_warnings():  # return_immediately is deprecated, and right here
                warnings.simplefilter("ignore", DeprecationWarning)
                response = rpc.call(self._subscriber.pull, f"purging {subscription_path!r}",
                                    self._budget, subscription=subscription_path,
                                    max_messages=PURGE_BATCH, return_immediately=True)
            ack_ids = [received.ack_id for received in response.received_messages]
            if not ack_ids:
                return removed
            rpc.call(self._subscriber.acknowledge, f"purging {subscription_path!r}",
                     self._budget, subscription=subscription_path, ack_ids=ack_ids)
            removed += len(ack_ids)


def _steps_label(labels: Any) -> str:
    return (labels or {}).get(STEPS_LABEL, "")


def _duration(seconds: float) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=int(seconds))


def _all_pages(method: Callable[..., Iterable[T]]) -> Callable[..., list[T]]:
    """`method` (a GAPIC list call) reading every page inside one bounded call."""
    def listed(**kwargs: Any) -> list[T]:
        return list(method(**kwargs))
    return listed
