"""Every receiver of Celery's signals that the transport itself needs, in one place.

Connected once, when the first ``pubsub://`` transport of a process is made
(:func:`connect`), with the worker's ``pubsub_countdowns`` inspect command;
importing the package connects nothing. The morgue's and
the metrics' receivers are connected by ``morgue.install(app)`` and
``ops.metrics.install(app)``, which the user calls.
"""

from __future__ import annotations

import datetime
from typing import Any

from celery import signals

from .stats import live_transports

_connected = False
#: True in a worker whose pool never starts a reserved task that Celery dropped at
#: warm shutdown (prefork: Celery clears the jobs not yet handed to a process).
_pool_drops_reserved = False


def connect() -> None:
    """Connect the transport's receivers (idempotent)."""
    global _connected
    if not _connected:
        signals.worker_shutting_down.connect(on_worker_shutting_down, weak=False)
        signals.worker_ready.connect(on_worker_ready, weak=False)
        from celery.worker.control import inspect_command

        inspect_command(name=COUNTDOWNS_COMMAND)(pending_countdowns)
        _connected = True


#: The remote-control inspect command that answers :func:`pending_countdowns`.
COUNTDOWNS_COMMAND = "pubsub_countdowns"


def pending_countdowns(state: Any = None, **kwargs: Any) -> dict[str, Any]:
    """Countdowns this worker has deferred in Pub/Sub or holds until due, per queue.

    ``{queue: {"pending": n, "held": n, "next_eta": ISO time, "last_eta": ISO time}}``.
    Celery's ``inspect scheduled`` lists only what Celery itself holds: countdowns
    wait in Pub/Sub until seconds before they are due.
    """
    totals: dict[str, dict[str, Any]] = {}
    for transport in list(live_transports):
        for queue, entry in transport.countdowns().items():
            total = totals.setdefault(queue, {"pending": 0, "held": 0, "next_eta": entry["next_eta"],
                                              "last_eta": entry["last_eta"]})
            total["pending"] += entry["pending"]
            total["held"] += entry["held"]
            total["next_eta"] = min(total["next_eta"], entry["next_eta"])
            total["last_eta"] = max(total["last_eta"], entry["last_eta"])
    for total in totals.values():
        for key in ("next_eta", "last_eta"):
            total[key] = datetime.datetime.fromtimestamp(total[key], datetime.UTC).isoformat()
    return totals


def on_worker_ready(sender: Any = None, **kwargs: Any) -> None:
    """Note which pool the worker runs (the consumer is the sender)."""
    global _pool_drops_reserved
    pool = getattr(sender, "pool", None)
    _pool_drops_reserved = type(pool).__module__ == "celery.concurrency.prefork"


def dropped_at_shutdown(channel: Any, delivery_tags: list[Any]) -> list[Any]:
    """The delivery tags among `delivery_tags` that a stopping worker will never run.

    Celery's warm shutdown first forgets the requests it reserved but did not
    start (``Consumer.on_close``), then cancels its consumers; it gives their
    messages back only when its connection closes, after the running tasks end.
    With the prefork pool those requests never run, so their messages can go back
    at once. With other pools a thread or greenlet may still pick one up: none
    is given back early.
    """
    if not _pool_drops_reserved:
        return []
    from celery.worker import state

    tracked = {id(request.message) for request in list(state.requests.values())
               if getattr(request, "message", None) is not None}
    delivered = channel.qos._delivered
    return [tag for tag in delivery_tags
            if tag in delivered and id(delivered[tag]) not in tracked]


def on_worker_shutting_down(**kwargs: Any) -> None:
    """Celery's SIGTERM/SIGINT handler: give prefetched messages back at once.

    Celery stops consuming only after its running tasks end and meanwhile may
    keep taking buffered messages; releasing them now lets other workers start
    them at once. This runs inside a signal handler (and, under gevent, in the
    hub), so it only sets a flag and writes one byte to each transport's
    doorbell; the consuming thread does the work on its next turn.
    """
    for transport in list(live_transports):
        transport.stop_consuming_soon()
