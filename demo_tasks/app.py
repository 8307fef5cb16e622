"""The Celery app and the MockJob task."""

from __future__ import annotations

import logging
import os
import time

from celery import Celery

import kombu_pubsub  # noqa: F401 - registers the pubsub:// scheme

logger = logging.getLogger(__name__)

PROJECT = os.environ.get("PUBSUB_JOB_QUEUE_PROJECT_ID", "job_queue")
QUEUE_NAME = os.environ.get("QUEUE_NAME", "default")

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


class JobError(Exception):
    """Raised by mock_job when asked to fail."""


@app.task(name="demo_tasks.mock_job")
def mock_job(sleep_duration: float = 0, raise_error: bool = False) -> str:
    """Log, sleep `sleep_duration` seconds, and raise JobError if `raise_error`."""
    logger.info("Executing MockJob(sleep_duration=%r, raise_error=%r)", sleep_duration, raise_error)
    time.sleep(float(sleep_duration))
    if raise_error:
        raise JobError("Job failed successfully.")
    return "done"
