"""The Celery app and the MockJob task."""

from __future__ import annotations

import logging
import os
import time

from celery import Celery

import kombu_pubsub.morgue  # also registers the pubsub:// scheme

logger = logging.getLogger(__name__)

PROJECT = os.environ.get("PUBSUB_JOB_QUEUE_PROJECT_ID", "job_queue")
QUEUE_NAME = os.environ.get("QUEUE_NAME", "default")
#: Seconds between a failed execution and its retry (the original system: 5 minutes).
RETRY_DELAY = float(os.environ.get("MOCK_JOB_RETRY_DELAY", "300"))

app = Celery("demo_tasks", broker=f"pubsub://{PROJECT}")
app.conf.update(
    task_default_queue=QUEUE_NAME,
    # At least once: ack after the task ran; a worker that dies mid-task leaves
    # the message to be redelivered.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)
# A job that fails its last retry goes to the morgue queue, where
# `celery -A demo_tasks pubsub morgue list|show|replay|purge` finds it.
kombu_pubsub.morgue.install(app)
if os.environ.get("KOMBU_PUBSUB_METRICS_PORT"):
    # Prometheus metrics from each worker (pip install 'kombu-pubsub[metrics]').
    import kombu_pubsub.ops.metrics

    kombu_pubsub.ops.metrics.install(app)


class JobError(Exception):
    """Raised by mock_job when asked to fail."""


@app.task(name="demo_tasks.mock_job", autoretry_for=(JobError,),
          retry_kwargs={"max_retries": 2, "countdown": RETRY_DELAY}, retry_backoff=False)
def mock_job(sleep_duration: float = 0, raise_error: bool = False) -> str:
    """Log, sleep `sleep_duration` seconds, and raise JobError if `raise_error`."""
    logger.info("Executing MockJob(sleep_duration=%r, raise_error=%r)", sleep_duration, raise_error)
    time.sleep(float(sleep_duration))
    if raise_error:
        raise JobError("Job failed successfully.")
    return "done"
