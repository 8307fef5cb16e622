"""What an operator sees of a queue: its settings read from Pub/Sub, as a table or JSON.

Pure functions (no Pub/Sub calls), so the layout and the comparison with the
configuration are unit-tested; queue_tools.py gathers the data.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..options import TransportOptions
from ..pubsub.admin import DETACHED_TOPIC, MORGUE_QUEUE
from ..pubsub.backlog import Backlog
from .app_queues import AppQueues

#: Shown for a value that does not apply (the queue is missing).
NONE = "-"
HEADERS = ("QUEUE", "TOPIC", "SUBSCRIPTION", "ACK DEADLINE", "DEAD LETTER", "RETENTION",
           "EXPIRES", "BACKLOG")


@dataclasses.dataclass(frozen=True)
class QueueInfo:
    """One queue's subscription as Pub/Sub describes it. Durations in seconds."""

    queue: str | None
    """The Celery queue name; None for a subscription the app does not route to (--all)."""
    subscription: str
    topic: str | None
    """Topic id; None when missing, DETACHED_TOPIC when it was deleted under the subscription."""
    exists: bool = False
    ack_deadline: float | None = None
    dead_letter_topic: str | None = None
    dead_letter_attempts: int | None = None
    retention: float | None = None
    expiration: float | None = None
    """Idle time before Pub/Sub deletes the subscription; 0 = never; None = Pub/Sub's default."""
    priorities: str | None = None
    """For a queue with priorities, the priorities this step's subscription holds ('6-9')."""

    @property
    def label(self) -> str:
        """The QUEUE cell: the queue name, and the step's priorities for a queue with priorities."""
        name = self.queue or NONE
        return f"{name} [priority {self.priorities}]" if self.priorities else name


def queue_info(queue: str | None, subscription_id: str, topic_id: str, subscription: Any,
               topic_exists: bool) -> QueueInfo:
    """Build from a Pub/Sub Subscription (None when absent) and whether its topic exists."""
    if subscription is None:
        return QueueInfo(queue, subscription_id, topic_id if topic_exists else None)
    policy = subscription.dead_letter_policy
    expiration = None
    if "expiration_policy" in subscription:
        expiration = subscription.expiration_policy.ttl.total_seconds()
    return QueueInfo(
        queue, subscription_id, _id(subscription.topic), exists=True,
        ack_deadline=float(subscription.ack_deadline_seconds),
        dead_letter_topic=_id(policy.dead_letter_topic) if policy.dead_letter_topic else None,
        dead_letter_attempts=policy.max_delivery_attempts or None,
        retention=subscription.message_retention_duration.total_seconds(),
        expiration=expiration)


def drift(info: QueueInfo, options: TransportOptions) -> list[str]:
    """How an existing subscription differs from what the transport would create now."""
    if not info.exists or info.queue is None:
        return []
    found, wanted = _settings(info), _settings(_configured(info, options))
    return [f"{name} {found[name]} (configured: {wanted[name]})"
            for name in found if found[name] != wanted[name]]


def _configured(info: QueueInfo, options: TransportOptions) -> QueueInfo:
    dead_letter = options.dead_letter_attempts if info.queue != MORGUE_QUEUE else 0
    return dataclasses.replace(
        info, ack_deadline=float(int(options.ack_deadline)),
        dead_letter_topic=MORGUE_QUEUE if dead_letter else None,
        dead_letter_attempts=dead_letter or None,
        retention=float(int(options.message_retention)),
        expiration=float(int(options.subscription_ttl)))


def _settings(info: QueueInfo) -> dict[str, str]:
    return {"ack deadline": seconds(info.ack_deadline), "dead letter": dead_letter(info),
            "retention": duration(info.retention), "expiry": expires(info)}


def row(info: QueueInfo, backlog: Backlog) -> tuple[str, ...]:
    """The table row of one queue."""
    topic = {None: "missing", DETACHED_TOPIC: "deleted"}.get(info.topic, info.topic)
    if not info.exists:
        return (info.label, str(topic), "missing", NONE, NONE, NONE, NONE, NONE)
    return (info.label, str(topic), info.subscription, seconds(info.ack_deadline),
            dead_letter(info), duration(info.retention), expires(info),
            backlog.describe(info.subscription))


def table(rows: list[tuple[str, ...]], headers: tuple[str, ...] = HEADERS) -> str:
    """Left-aligned columns two spaces apart; no trailing spaces."""
    widths = [max(len(cells[i]) for cells in [headers, *rows]) for i in range(len(headers))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
                     .rstrip() for cells in [headers, *rows])


def as_json(info: QueueInfo, backlog: Backlog, options: TransportOptions) -> dict[str, Any]:
    """One queue for `--json`: the fields, with durations in seconds."""
    sample = backlog.samples.get(info.subscription) if info.exists else None
    return {**dataclasses.asdict(info),
            "backlog": sample.count if sample else None,
            "backlog_at": sample.at.isoformat() if sample else None,
            "backlog_note": backlog.note if info.exists else None,
            "differs_from_configuration": drift(info, options)}


def footnotes(infos: list[QueueInfo], backlog: Backlog, options: TransportOptions,
              command: str) -> list[str]:
    """The lines under the table: what BACKLOG means, what is missing or off, and the fix."""
    notes = [f"backlog: {backlog.note}"] if any(info.exists for info in infos) else []
    missing = [info.queue or info.subscription for info in infos if not info.exists]
    if missing:
        notes.append(f"missing: {', '.join(missing)}; create with '{command} pubsub provision'")
    if any(info.queue is None for info in infos):
        notes.append("QUEUE -: a subscription the app does not route to (listed by --all)")
    detached = [info.subscription for info in infos if info.topic == DETACHED_TOPIC]
    if detached:
        notes.append(f"topic deleted under: {', '.join(detached)}; nothing published reaches them. "
                     f"'{command} pubsub provision' re-creates them (dropping what is still on them)")
    differing = [(info, drift(info, options)) for info in infos]
    notes.extend(f"{info.queue} differs from the configuration: {'; '.join(found)}"
                 for info, found in differing if found)
    if any(found for _, found in differing):
        notes.append("existing subscriptions are never modified: change them with 'gcloud pubsub "
                     f"subscriptions update', or '{command} pubsub delete' the queue and provision it")
    return notes


def scope_notes(found: AppQueues) -> list[str]:
    """What the app's configuration could not tell (router functions, temporary queues)."""
    notes = []
    if found.routers:
        notes.append(f"task_routes has {found.routers} router function(s): the queues they pick "
                     "are not included; name each with -Q QUEUE")
    if found.temporary:
        notes.append(f"not included: temporary queue(s) {', '.join(found.temporary)} "
                     "(each worker creates and deletes its own)")
    return notes


def dead_letter(info: QueueInfo) -> str:
    if not info.dead_letter_topic:
        return "none"
    return f"{info.dead_letter_topic} after {info.dead_letter_attempts}"


def expires(info: QueueInfo) -> str:
    if info.expiration is None:
        return "default (31d)"
    return "never" if not info.expiration else f"{duration(info.expiration)} idle"


def seconds(value: float | None) -> str:
    """An ack deadline: always in seconds, as Pub/Sub and gcloud state it."""
    return NONE if value is None else f"{int(value)}s"


def duration(seconds: float | None) -> str:
    """30 → '30s', 604800 → '7d', 5400 → '90m': the largest unit that divides exactly."""
    if seconds is None:
        return NONE
    whole = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def _id(path: str) -> str:
    if path == DETACHED_TOPIC:
        return path
    return path.rsplit("/", 1)[-1]
