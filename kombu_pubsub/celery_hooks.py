"""Every receiver of Celery's signals that the transport itself needs, in one place.

Connected once, when the first ``pubsub://`` transport of a process is made
(:func:`connect`); importing the package connects nothing. The morgue's and
the metrics' receivers are connected by ``morgue.install(app)`` and
``ops.metrics.install(app)``, which the user calls.
"""

from __future__ import annotations

from typing import Any

from celery import signals

from .stats import live_transports

_connected = False


def connect() -> None:
    """Connect the transport's receivers (idempotent)."""
    global _connected
    if not _connected:
        signals.worker_shutting_down.connect(on_worker_shutting_down, weak=False)
        _connected = True


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
