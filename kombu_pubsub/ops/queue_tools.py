"""Describe, provision and delete an app's queues (behind `celery pubsub queues|provision|delete`).

Separate from the transport: these are operator actions, run from a shell with
the app's configuration, not from a worker. Provisioning always creates what is
missing, whatever ``create_missing`` says: it is how queues are made where
workers run with creation off.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING

import google.auth.exceptions
from google.cloud import pubsub_v1
from kombu import Connection

from .. import naming, priorities
from ..errors import ConfigurationError, missing_credentials
from ..pubsub import endpoint, rpc
from ..pubsub.admin import DETACHED_TOPIC, MORGUE_QUEUE, STEPS_LABEL, Admin
from ..pubsub.backlog import Backlog, read_backlog
from ..transport import Transport
from .app_queues import QueueSpec
from .queue_report import QueueInfo, drift, queue_info

if TYPE_CHECKING:
    from celery import Celery


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What happened to one topic or subscription."""

    kind: str
    path: str
    action: str
    notes: tuple[str, ...] = ()

    def line(self) -> str:
        differs = f"; differs from the configuration: {', '.join(self.notes)}" if self.notes else ""
        return f"{self.kind} {self.path}: {self.action}{differs}"


@dataclasses.dataclass(frozen=True)
class DeletePlan:
    """What deleting one queue would remove."""

    queue: str
    subscription_path: str | None
    topic_path: str | None
    shared_with: tuple[str, ...] = ()
    """Other subscriptions on the queue's topic: the topic is then kept."""
    step_paths: tuple[str, ...] = ()
    """The subscriptions and topics of its priority steps above 0 (a queue with priorities)."""

    @property
    def exists(self) -> bool:
        return bool(self.subscription_path or self.topic_path or self.step_paths)

    @property
    def doomed(self) -> list[str]:
        """Every path `delete` removes, for the confirmation prompt."""
        return [path for path in (*self.step_paths, self.subscription_path, self.topic_path) if path]


class QueueTools:
    """The Pub/Sub resources of one app's project, as an operator manages them."""

    def __init__(self, app: Celery) -> None:
        self.connection = pubsub_connection(app)
        transport: Transport = self.connection.transport
        self.project = transport.project
        self.options = transport.options
        self.endpoint = transport.endpoint
        try:
            self._publisher, self._subscriber = _clients(self.endpoint)
        except ConfigurationError:
            self.connection.release()
            raise
        # Always creating: provisioning is what makes queues where create_missing is off.
        self.admin = Admin(self.project, dataclasses.replace(self.options, create_missing=True),
                           self._publisher, self._subscriber,
                           rpc.budget_for(self.endpoint.target, self.project, self.options.rpc_timeout),
                           emulator=self.endpoint.emulator)

    def close(self) -> None:
        self._subscriber.close()
        self._publisher.stop()
        self.connection.release()

    def __enter__(self) -> QueueTools:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def where(self) -> str:
        if self.endpoint.emulator:
            return f"project {self.project} (emulator at {self.endpoint.target})"
        if self.endpoint.source == endpoint.FROM_DEFAULT:
            return f"project {self.project} (Google Cloud)"
        return f"project {self.project} (Google Cloud at {self.endpoint.target})"

    def describe(self, specs: list[QueueSpec], every_subscription: bool = False) -> list[QueueInfo]:
        """Each queue as Pub/Sub has it, then (if asked) every other subscription of the project."""
        infos = [info for spec in specs for info in self._describe(spec)]
        if every_subscription:
            known = {info.subscription for info in infos}
            for subscription in self.admin.list_subscriptions():
                subscription_id = subscription.name.rsplit("/", 1)[-1]
                if subscription_id not in known:
                    infos.append(queue_info(None, subscription_id, "", subscription, True))
        return infos

    def _describe(self, spec: QueueSpec) -> list[QueueInfo]:
        """A queue's subscription; with priorities, one per step, highest first."""
        subscription = self.admin.find_subscription(spec.name)
        topic_exists = subscription is not None or self.admin.topic_exists(spec.topic)
        info = queue_info(spec.name, naming.resource_id(spec.name), naming.resource_id(spec.topic),
                          subscription, topic_exists)
        steps = _steps_of(subscription)
        if steps is None:
            return [info]
        infos = [dataclasses.replace(info, priorities=steps.span(0))]
        for step in steps.values[1:]:
            step_id = naming.step_resource_id(spec.name, step)
            step_info = queue_info(spec.name, step_id, step_id,
                                   self.admin.find_subscription(spec.name, step), True)
            infos.append(dataclasses.replace(step_info, priorities=steps.span(step)))
        return infos[::-1]

    def backlog(self) -> Backlog:
        return read_backlog(self.project, emulator=self.endpoint.emulator)

    def drift(self, info: QueueInfo) -> list[str]:
        return drift(info, self.options)

    def provision(self, specs: list[QueueSpec]) -> Iterator[Outcome]:
        """Create each queue's topic and subscription unless they exist (with priorities, one
        per step); the morgue first."""
        # Work subscriptions dead-letter to the morgue, so it must exist before them.
        for spec in sorted(specs, key=lambda spec: spec.name != MORGUE_QUEUE):
            topic_existed = self.admin.topic_exists(spec.topic)
            steps = priorities.Steps.for_queue(spec.max_priority, self.options.priority_steps)
            if steps is not None:
                yield from self._provision_steps(spec, steps, topic_existed)
                continue
            before = self.admin.find_subscription(spec.name)
            made = self.admin.ensure_subscription(spec.name, spec.topic, temporary=False)
            yield Outcome("topic", made.topic_path, "already existed" if topic_existed else "created")
            yield self._subscription_outcome(spec, made.path, before)

    def _provision_steps(self, spec: QueueSpec, steps: priorities.Steps,
                         topic_existed: bool) -> Iterator[Outcome]:
        before = {step: self.admin.find_subscription(spec.name, step) is not None
                  for step in steps.values}
        made = priorities.ensure(self.admin, spec.name, steps)
        yield Outcome("topic", made[0].info.topic_path, "already existed" if topic_existed else "created")
        for step in made:
            action = "already existed" if before.get(step.step) else "created"
            yield Outcome("subscription", step.info.path, f"{action} (priority {steps.span(step.step)})")

    def _subscription_outcome(self, spec: QueueSpec, path: str, before: object) -> Outcome:
        if before is None:
            return Outcome("subscription", path, "created")
        info = queue_info(spec.name, naming.resource_id(spec.name), "", before, True)
        if info.topic == DETACHED_TOPIC:
            return Outcome("subscription", path, "re-created (its topic had been deleted, so "
                           "nothing published reached it; what was still on it is dropped)")
        return Outcome("subscription", path, "already existed", tuple(self.drift(info)))

    def plan_delete(self, queue: str) -> DeletePlan:
        """What `delete` would remove for `queue` (nothing if it does not exist)."""
        subscription = self.admin.find_subscription(queue)
        own_path = self.admin.subscription_path(queue)
        on_topic = self.admin.topic_subscriptions(queue)
        topic_exists = bool(on_topic) or self.admin.topic_exists(queue)
        steps = _steps_of(subscription)
        step_paths = tuple(path for step in (steps.values[1:] if steps else ())
                           for path in (self.admin.step_path(queue, step),
                                        self.admin.step_topic_path(queue, step)))
        return DeletePlan(queue, own_path if subscription is not None else None,
                          self.admin.topic_path(queue) if topic_exists else None,
                          tuple(path for path in on_topic if path != own_path), step_paths)

    def delete(self, plan: DeletePlan) -> list[Outcome]:
        """Delete the subscription, then the topic unless other subscriptions use it."""
        outcomes: list[Outcome] = []
        for path in plan.step_paths:
            kind = "subscription" if "/subscriptions/" in path else "topic"
            if kind == "subscription":
                self.admin.delete_subscription(path)
            else:
                self.admin.delete_topic(path)
            outcomes.append(Outcome(kind, path, "deleted"))
        if plan.subscription_path:
            self.admin.delete_subscription(plan.subscription_path)
            outcomes.append(Outcome("subscription", plan.subscription_path, "deleted"))
        if plan.topic_path and plan.shared_with:
            outcomes.append(Outcome("topic", plan.topic_path, "kept: other subscriptions use it ("
                                    + ", ".join(plan.shared_with) + ")"))
        elif plan.topic_path:
            self.admin.delete_topic(plan.topic_path)
            outcomes.append(Outcome("topic", plan.topic_path, "deleted"))
        return outcomes


def _steps_of(subscription: object) -> priorities.Steps | None:
    """The priority steps a queue's own subscription is labelled with (None: no priorities)."""
    labels = getattr(subscription, "labels", None) or {}
    return priorities.Steps.from_label(labels.get(STEPS_LABEL, ""))


def pubsub_connection(app: Celery) -> Connection:
    """The app's broker connection, not yet connected: its URL and transport options are
    parsed and checked (no RPC), and a broker other than pubsub:// is refused."""
    connection = app.connection_for_write()
    try:
        transport = connection.transport
        if not isinstance(transport, Transport):
            raise ConfigurationError(
                f"the app's broker is {connection.transport_cls!r}, not pubsub://; these commands "
                "manage Pub/Sub queues: set broker_url='pubsub://<project-id>'")
    except BaseException:
        connection.release()
        raise
    return connection


def _clients(to: endpoint.Endpoint) -> tuple[pubsub_v1.PublisherClient, pubsub_v1.SubscriberClient]:
    try:
        return to.publisher_client(), to.subscriber_client()
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise missing_credentials(exc, to.describe()) from None
