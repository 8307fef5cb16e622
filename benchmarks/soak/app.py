"""The soak's Celery app: one ``soak.job`` task that records each run into the ledger.

``celery -A benchmarks.soak.app worker -Q soak`` runs it. Configured from the environment:

SOAK_BROKER_URL    broker URL (default ``pubsub://soak-local``)
SOAK_LEDGER_DIR    directory each process appends its ledger file to (required to record)
SOAK_TRANSPORT_OPTIONS  JSON object for ``broker_transport_options`` (default ``{}``)
SOAK_RETRY_DELAY   seconds between a failed run and its retry (default 2)
BENCH_READY_FILE   file the worker writes ``<ready time> 0`` to when ready (benchmarks.worker)

At-least-once settings: ``task_acks_late`` and ``task_reject_on_worker_lost``;
failures past the last retry go to the morgue (``kombu_pubsub.morgue.install``).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from celery import Celery
from celery.signals import worker_ready

import kombu_pubsub.morgue  # also registers pubsub://

from ..stats import eta_timestamp
from .ledger import Ledger
from .plan import QUEUE

#: Retries a failing job gets before it goes to the morgue (3 runs in all).
MAX_RETRIES = 2
RETRY_DELAY = float(os.environ.get("SOAK_RETRY_DELAY") or 2.0)

app = Celery("soak", broker=os.environ.get("SOAK_BROKER_URL", "pubsub://soak-local"))
app.conf.update(
    task_default_queue=QUEUE,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    broker_transport_options=json.loads(os.environ.get("SOAK_TRANSPORT_OPTIONS") or "{}"),
    worker_hijack_root_logger=True,
)
kombu_pubsub.morgue.install(app)

ledger = Ledger.from_env("worker")


class JobError(Exception):
    """Raised by a job planned to fail this run."""


@app.task(name="soak.job", bind=True)
def job(self: Any, job_id: str, sleep: float = 0.0, failures: int = 0) -> None:
    """Record the start, sleep `sleep` s, then fail while fewer than `failures` runs failed.

    A failing run with retries left records ``retry`` and retries in RETRY_DELAY s;
    the last one records ``fail`` and raises (the morgue takes it). Otherwise ``finish``.
    """
    attempt = int(self.request.retries or 0)
    node = (self.request.hostname or "?").split("@")[0]  # the incarnation, e.g. w0g2
    eta = eta_timestamp(self.request.eta)
    ledger.write("start", job_id, attempt, f"{time.time():.6f}", f"{eta:.6f}", node)
    time.sleep(sleep)
    if attempt < failures:
        if attempt < MAX_RETRIES:
            ledger.write("retry", job_id, attempt, f"{time.time():.6f}", node)
            raise self.retry(countdown=RETRY_DELAY, max_retries=MAX_RETRIES)
        ledger.write("fail", job_id, attempt, f"{time.time():.6f}", node)
        raise JobError(f"job {job_id} failed its planned {failures} times")
    ledger.write("finish", job_id, attempt, f"{time.time():.6f}", node)


@worker_ready.connect
def _on_ready(**_: Any) -> None:
    ready_file = os.environ.get("BENCH_READY_FILE")
    if ready_file:
        with open(ready_file, "w", encoding="ascii") as out:
            out.write(f"{time.time():.6f} 0\n")
