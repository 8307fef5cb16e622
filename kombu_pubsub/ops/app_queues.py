"""Which queues a Celery app sends to, read from its configuration alone (no Pub/Sub calls).

Used by ``celery pubsub queues`` and ``celery pubsub provision``: the queues are
``task_default_queue``, ``task_queues`` and the queues named in ``task_routes``,
plus the morgue. Router functions cannot be read without running them, so they
are only counted, for the command to say so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from celery.app.routes import MapRoute, prepare
from kombu import Queue

from ..pubsub.admin import MORGUE_QUEUE

if TYPE_CHECKING:
    from celery import Celery


@dataclasses.dataclass(frozen=True)
class QueueSpec:
    """A queue to manage: its Celery name, the topic its subscription is on, its max priority."""

    name: str
    topic: str
    max_priority: int = 0
    """As declared (``x-max-priority``, Celery's task_queue_max_priority); 0: no priorities."""


@dataclasses.dataclass(frozen=True)
class AppQueues:
    """The queues an app routes to, and what could not be known from its configuration."""

    specs: list[QueueSpec]
    """Work queues in configuration order, then the morgue; no duplicates."""

    temporary: list[str]
    """auto-delete/exclusive queues in task_queues: each worker makes and deletes its own."""

    routers: int
    """How many task_routes entries are router functions, whose queues are unknown here."""


def app_queues(app: Celery, extra: Iterable[str] = ()) -> AppQueues:
    """The queues `app` routes to, plus `extra` names and the morgue."""
    conf = app.conf
    specs: dict[str, QueueSpec] = {}
    temporary: list[str] = []
    # Celery gives every queue declared without one this max priority (Queues.add).
    default_max = int(conf.task_queue_max_priority or 0)

    def add(queue: Queue | str | None) -> None:
        if isinstance(queue, Queue):
            if queue.auto_delete or queue.exclusive:
                temporary.append(queue.name)
                return
            specs.setdefault(queue.name, _spec(queue, default_max))
        elif queue:
            specs.setdefault(queue, QueueSpec(queue, queue, default_max))

    for queue in app.amqp.queues.values():
        if queue.name == conf.task_default_queue:
            add(queue)  # first, as Celery declared it
    add(conf.task_default_queue)
    for queue in app.amqp.queues.values():
        add(queue)
    named, routers = routed_queue_names(conf.task_routes)
    for queue in [*named, *extra]:
        add(queue)
    specs.pop(MORGUE_QUEUE, None)
    return AppQueues([*specs.values(), QueueSpec(MORGUE_QUEUE, MORGUE_QUEUE)], temporary, routers)


def routed_queue_names(task_routes: Any) -> tuple[list[Queue | str], int]:
    """The queues named in a ``task_routes`` setting, and how many routers are functions."""
    named: list[Queue | str] = []
    routers = 0
    for router in prepare(task_routes):
        if not isinstance(router, MapRoute):
            routers += 1
            continue
        for route in [*router.map.values(), *router.patterns.values()]:
            queue = route.get("queue") if isinstance(route, dict) else route
            if isinstance(queue, (Queue, str)):
                named.append(queue)
    return named, routers


def _spec(queue: Queue, default_max: int) -> QueueSpec:
    # A queue bound to a fanout exchange is a subscription on the exchange's topic
    # (see Channel._queue_bind); any other queue has a topic of its own name.
    arguments = queue.queue_arguments or {}
    max_priority = int(queue.max_priority or arguments.get("x-max-priority") or default_max)
    exchange = queue.exchange
    if exchange is not None and exchange.type == "fanout" and exchange.name:
        return QueueSpec(queue.name, exchange.name, max_priority)
    return QueueSpec(queue.name, queue.name, max_priority)
