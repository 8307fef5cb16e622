"""`celery pubsub countdowns`: the countdowns pending in Pub/Sub, as the workers count them.

Celery's ``inspect scheduled`` lists the ETA tasks a worker holds; here a
countdown waits in Pub/Sub until seconds before it is due, so it shows there
only then. Each worker counts what it deferred (``pubsub_countdowns``, an
inspect command the transport adds to every worker); this sums the replies.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .queue_report import table

HEADERS = ("queue", "pending", "held", "next due (UTC)", "last due (UTC)", "workers")

#: Printed under the table: what the count covers.
COVERAGE = ("A countdown is counted by the worker that last deferred it, until Pub/Sub gives it "
            "back (at most max_defer_hop, 600 s by default, later); one deferred by a worker "
            "that is gone is counted again when it comes back. 'held': due within seconds, in "
            "a worker's memory. Celery's 'inspect scheduled' shows a countdown from about a "
            "second before it is due.")


@dataclasses.dataclass
class QueueCountdowns:
    queue: str
    pending: int = 0
    held: int = 0
    next_eta: str = ""
    last_eta: str = ""
    workers: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Report:
    queues: list[QueueCountdowns]
    answered: list[str]
    """Workers that answered with a count."""
    without: dict[str, str]
    """Workers that answered without one (an older transport, or an error): name → what they said."""


def merge(replies: list[dict[str, Any]] | None) -> Report:
    """Sum the workers' replies (``[{worker: {queue: {...}}}, ...]``) per queue."""
    queues: dict[str, QueueCountdowns] = {}
    answered: list[str] = []
    without: dict[str, str] = {}
    for reply in replies or []:
        for worker, counts in reply.items():
            if not isinstance(counts, dict) or "error" in counts or not all(
                    isinstance(entry, dict) and "pending" in entry for entry in counts.values()):
                without[worker] = str(counts.get("error", counts) if isinstance(counts, dict) else counts)
                continue
            answered.append(worker)
            for queue, entry in counts.items():
                total = queues.setdefault(queue, QueueCountdowns(queue))
                total.pending += int(entry.get("pending", 0))
                total.held += int(entry.get("held", 0))
                total.next_eta = min(filter(None, (total.next_eta, entry.get("next_eta", ""))))
                total.last_eta = max(total.last_eta, entry.get("last_eta", ""))
                total.workers.append(worker)
    return Report(sorted(queues.values(), key=lambda item: item.queue), sorted(answered), without)


def render(report: Report, timeout: float) -> str:
    """The table and the notes, as `celery pubsub countdowns` prints them."""
    lines = []
    if report.queues:
        rows = [(item.queue, str(item.pending), str(item.held), _short(item.next_eta),
                 _short(item.last_eta), str(len(item.workers))) for item in report.queues]
        lines.append(table(rows, HEADERS))
    elif report.answered:
        lines.append("No countdowns pending.")
    lines.append(f"{len(report.answered)} worker(s) answered within {timeout:g} s.")
    for worker, said in sorted(report.without.items()):
        lines.append(f"{worker} cannot count countdowns: {said}")
    if report.queues:
        lines.append(COVERAGE)
    return "\n".join(lines)


def _short(iso: str) -> str:
    """'2026-11-30T05:20:01.123456+00:00' → '2026-11-30 05:20:01'."""
    return iso[:19].replace("T", " ") if iso else "-"
