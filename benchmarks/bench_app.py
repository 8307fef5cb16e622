"""The benchmark's Celery app, configured only from the environment.

``celery -A benchmarks.bench_app worker -Q $BENCH_QUEUE`` runs ``bench.record``,
``bench.countdown`` and ``bench.hold``.

BENCH_BROKER_URL         broker URL (``pubsub://PROJECT``, ``gcpubsub://projects/PROJECT``
                         or ``memory://``)
BENCH_QUEUE              queue (default ``bench``)
BENCH_TRANSPORT_OPTIONS  JSON object for ``broker_transport_options`` (default ``{}``)
BENCH_RECORD_FILE        file each task appends ``<done time> <sent time>`` (countdown:
                         ``<start time> <ETA>``; hold: ``<start time> -1``) to
BENCH_RECEIVED_FILE      file the worker's main process appends one line to per task
                         message Celery received (``task_received``; ETA tasks included)
BENCH_READY_FILE         file the worker writes ``<ready time> <CPU seconds so far>`` to
BENCH_ACKS_LATE          ``1``: ``task_acks_late`` and ``task_reject_on_worker_lost`` (crash
                         redelivery); default: Celery's early acks
BENCH_HOLD_SECONDS       how long ``bench.hold`` sleeps after recording its start (default 0)
BENCH_SELF_PUBLISH       N: when the worker is ready, its main process publishes N
                         ``bench.record`` tasks itself, then writes the ready file (Celery's
                         ceiling on ``memory://``, whose queues live in the worker process)

Celery defaults otherwise: early acks, default prefetch multiplier, no result backend.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from celery import Celery
from celery.signals import task_received, worker_ready

from . import gcpubsub_compat
from .procs import tree_cpu_seconds
from .stats import eta_timestamp

BROKER_URL = os.environ.get("BENCH_BROKER_URL", "pubsub://bench-local")
QUEUE = os.environ.get("BENCH_QUEUE", "bench")
TRANSPORT_OPTIONS: dict[str, Any] = json.loads(os.environ.get("BENCH_TRANSPORT_OPTIONS") or "{}")
RECORD_FILE = os.environ.get("BENCH_RECORD_FILE", "")
RECEIVED_FILE = os.environ.get("BENCH_RECEIVED_FILE", "")
READY_FILE = os.environ.get("BENCH_READY_FILE", "")
ACKS_LATE = os.environ.get("BENCH_ACKS_LATE", "") == "1"
HOLD_SECONDS = float(os.environ.get("BENCH_HOLD_SECONDS") or 0)
SELF_PUBLISH = int(os.environ.get("BENCH_SELF_PUBLISH") or 0)

# Import only the transport under test, so one system's import trouble cannot sink the other.
if BROKER_URL.startswith("pubsub:"):
    import kombu_pubsub  # noqa: F401 - registers pubsub://
else:
    gcpubsub_compat.ensure_importable()

app = Celery("bench", broker=BROKER_URL)
app.conf.update(
    task_default_queue=QUEUE,
    broker_transport_options=TRANSPORT_OPTIONS,
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    task_acks_late=ACKS_LATE,
    task_reject_on_worker_lost=ACKS_LATE,
)

_fd_lock = threading.Lock()
_fds: dict[str, tuple[int, int]] = {}  # path -> (pid, fd): reopened after a fork


def _append(line: str, path: str = RECORD_FILE) -> None:
    """Append one short line atomically (O_APPEND) to `path` (BENCH_RECORD_FILE), if set."""
    if not path:
        return
    with _fd_lock:
        opened = _fds.get(path)
        if opened is None or opened[0] != os.getpid():
            opened = (os.getpid(), os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
            _fds[path] = opened
        fd = opened[1]
    os.write(fd, line.encode("ascii"))


@app.task(name="bench.record")
def record(sent: float = 0.0) -> None:
    """The no-op task: note when it ran (and when it was sent, for latency)."""
    _append(f"{time.time():.6f} {sent:.6f}\n")


@app.task(name="bench.countdown", bind=True)
def countdown(self: Any) -> None:
    """Note when it started and the ETA Celery gave it (``apply_async(countdown=...)``); 0 if none."""
    started = time.time()
    _append(f"{started:.6f} {eta_timestamp(self.request.eta):.6f}\n")


@app.task(name="bench.hold")
def hold() -> None:
    """Note when it started (sent time -1 marks it), then sleep BENCH_HOLD_SECONDS (crash redelivery)."""
    _append(f"{time.time():.6f} -1\n")
    time.sleep(HOLD_SECONDS)


@task_received.connect
def _on_received(**_: Any) -> None:
    _append("r\n", RECEIVED_FILE)


@worker_ready.connect
def _on_ready(**_: Any) -> None:
    """Main process, just before the consumer starts draining: self-publish, then note the time."""
    if SELF_PUBLISH:
        with app.producer_or_acquire() as producer:
            for _ in range(SELF_PUBLISH):
                record.apply_async(producer=producer)
    if READY_FILE:
        cpu = tree_cpu_seconds(os.getpid()) or 0.0
        with open(READY_FILE, "w", encoding="ascii") as out:
            out.write(f"{time.time():.6f} {cpu:.3f}\n")
