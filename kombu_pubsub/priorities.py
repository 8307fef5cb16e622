"""Message priorities as priority steps: one topic + subscription pair per step.

Convention: a higher number is a higher priority, 0 (or none) the lowest, as
on RabbitMQ, Kombu's MongoDB transport and Kombu's transport-agnostic priority
tests; Kombu clamps priorities to 0–9. Redis numbers the other way round
(0 first).

A queue declared with a max priority (``Queue(..., max_priority=N)``,
``queue_arguments={'x-max-priority': N}``, Celery's ``task_queue_max_priority``)
has one step per value of the ``priority_steps`` transport option (0, 3, 6, 9
by default, as Redis's; steps above N collapse onto N). Each step holds the
priorities from its value to the next step's, and is a topic + subscription
pair with the same name: step 0 is the queue's own pair (a queue stays a topic
+ subscription with the queue's name), step S > 0 is ``<queue>~p<S>``
(naming.py). The queue's own topic and subscription carry the label
``kombu_pubsub_priority_steps`` (``0-3-6-9``). A publisher sends a message to
its step's topic; the consuming side pulls every step and hands higher steps
to Celery first (engine/inbox.py).

How a publisher knows the steps: from the queue's declaration on its
connection (Celery producers declare the task's queue with its arguments),
else from the label on the queue's subscription, read when the queue is
declared (no extra call: declaring reads the subscription anyway), else, for a
queue it never declared and only for a message with a priority above 0, from
the label on the queue's topic: one GetTopic per queue and connection. A
message without a priority always goes to the queue's own topic, with no
lookup and no attribute.

Why topics per step and not one topic with a filtered subscription per step
(which would spare publishers the lookup): measured, the emulator stores
subscription filters but does not apply them (every subscription received
every message, so a queue with four steps ran each task four times), and
labels cannot be updated there (UpdateTopic/UpdateSubscription refuse
``labels``). So a queue that exists without priorities cannot gain them in
place (QueueMismatchError says how to re-create it), and the steps of an
existing queue are read from its label and win over the configuration (a
WARNING says when they differ).

Cost: a queue without priorities has its one topic and subscription and no
extra call; a queue with K steps has K topics, K subscriptions, K pulls
outstanding while idle, and K purge/basic_get round trips.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from .errors import QueueMismatchError
from .pubsub.admin import STEPS_LABEL, Admin, SubscriptionInfo
from .wire import MAX_PRIORITY

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Steps:
    """A queue's priority steps: ascending, starting at 0."""

    values: tuple[int, ...]

    @classmethod
    def for_queue(cls, max_priority: int, configured: tuple[int, ...]) -> Steps | None:
        """The steps of a queue declared with `max_priority`; None when that leaves one step."""
        top = min(max_priority, MAX_PRIORITY)
        values = tuple(sorted({0, *(min(step, top) for step in configured)}))
        return cls(values) if len(values) > 1 else None

    @classmethod
    def from_label(cls, label: str) -> Steps | None:
        """The steps a label names ('0-3-6-9'); None for '' or a label not made here."""
        try:
            values = tuple(int(value) for value in label.split("-"))
        except ValueError:
            return None
        if len(values) < 2 or values[0] != 0 or list(values) != sorted(set(values)) \
                or values[-1] > MAX_PRIORITY:
            return None
        return cls(values)

    @property
    def label(self) -> str:
        return "-".join(str(value) for value in self.values)

    def step_of(self, priority: int) -> int:
        """The step that holds `priority`."""
        return self.values[bisect.bisect_right(self.values, priority) - 1]

    def span(self, step: int) -> str:
        """The priorities `step` holds, for people: '3-5', '9'."""
        following = [value for value in self.values if value > step]
        last = following[0] - 1 if following else MAX_PRIORITY
        return str(step) if last == step else f"{step}-{last}"


@dataclasses.dataclass(frozen=True)
class Step:
    """One subscription of a queue: its step and its rank among the queue's steps (0: lowest)."""

    step: int
    rank: int
    info: SubscriptionInfo


def max_priority(declared: Mapping[str, Any] | None) -> int:
    """The max priority a queue was declared with (its ``x-max-priority`` argument); 0 for none."""
    arguments = (declared or {}).get("arguments") or {}
    try:
        return max(0, int(arguments.get("x-max-priority") or 0))
    except (TypeError, ValueError):
        return 0


def priority_of(envelope: dict[str, Any]) -> int:
    """A Kombu envelope's priority as Kombu reads it: 0–9, 0 when absent or not a number."""
    try:
        return max(0, min(int(envelope["properties"]["priority"]), MAX_PRIORITY))
    except (KeyError, TypeError, ValueError):
        return 0


def ensure(admin: Admin, queue: str, wanted: Steps | None, temporary: bool = False,
           topic: str | None = None) -> list[Step]:
    """The subscriptions behind `queue`, highest step first, created if needed.

    `wanted` is what the queue is declared with (None: no priorities); `topic` is
    the exchange topic a fanout-bound queue subscribes to (no priorities there).
    A queue that exists keeps its own steps; one that exists without priorities
    cannot gain them (QueueMismatchError).
    """
    if wanted is None or topic not in (None, queue):
        info = admin.ensure_subscription(queue, topic or queue, temporary=temporary)
        existing = Steps.from_label(info.steps_label)
        return [Step(0, 0, info)] if existing is None else _steps(admin, queue, existing, info)
    found = admin.find_subscription(queue)
    if found is None:
        return _steps(admin, queue, wanted, None)
    existing = Steps.from_label(_label(found))
    if existing is None:
        raise QueueMismatchError(
            f"queue {queue!r} is declared with priorities but exists in Pub/Sub without them, and "
            "Pub/Sub cannot add them to it; let its workers empty it, delete it with "
            f"'celery pubsub delete {queue}', and declare it again (or declare it without "
            "max_priority)")
    if existing != wanted:
        logger.warning("Queue %r exists with priority steps %s, not the configured %s; using "
                       "its own.", queue, list(existing.values), list(wanted.values))
    return _steps(admin, queue, existing, None)


def pick(steps: list[Step], priority: int) -> Step:
    """The step (of a queue's steps, highest first) a message of `priority` goes to."""
    return next((step for step in steps if step.step <= priority), steps[-1])


def _label(subscription: Any) -> str:
    return (subscription.labels or {}).get(STEPS_LABEL, "")


def _steps(admin: Admin, queue: str, steps: Steps, base: SubscriptionInfo | None) -> list[Step]:
    """Each step's topic and subscription, highest first, the queue's own last: a publisher
    that finds the queue's label finds every step."""
    made = []
    for rank in reversed(range(len(steps.values))):
        step = steps.values[rank]
        info = base if step == 0 and base is not None else admin.ensure_subscription(
            queue, queue, temporary=False, step=step,
            labels={STEPS_LABEL: steps.label} if step == 0 else None)
        made.append(Step(step, rank, info))
    return made
