"""The Celery app and the MockJob task, configured from the environment.

Environment (read when ``demo_tasks`` is imported, so by every process on its own):

* ``PUBSUB_JOB_QUEUE_PROJECT_ID`` (default ``job_queue``): the Pub/Sub project.
* ``QUEUE_NAME`` (default ``default``): the queue ``mock_job`` is sent to *and* the one a
  worker started without ``-Q`` consumes. Set it the same in the worker's environment and
  in the shell that sends jobs; a worker whose ``-Q`` leaves it out says so at start.
* ``MOCK_JOB_RETRY_DELAY`` (default 300 s): seconds between a failed ``mock_job`` run and
  its retry. The retry is scheduled by the **worker** that ran the job, so this is read
  from the worker's environment; set in the producer's shell it changes nothing.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from celery import Celery, signals
from celery.utils.log import get_task_logger

import kombu_pubsub.morgue  # also registers the pubsub:// scheme

logger = get_task_logger(__name__)

PROJECT = os.environ.get("PUBSUB_JOB_QUEUE_PROJECT_ID", "job_queue")
QUEUE_NAME = os.environ.get("QUEUE_NAME", "default")
#: Seconds between a failed execution and its retry (the original system: 5 minutes).
#: Read by the worker: it schedules the retry.
RETRY_DELAY = float(os.environ.get("MOCK_JOB_RETRY_DELAY", "300"))
#: Executions at most: the first run and two retries.
MAX_RETRIES = 2

app = Celery("demo_tasks", broker=f"pubsub://{PROJECT}")
app.conf.update(
    task_default_queue=QUEUE_NAME,
    # mock_job goes to QUEUE_NAME whatever a caller's defaults, so a producer and a
    # worker that share QUEUE_NAME agree.
    task_routes={"demo_tasks.mock_job": {"queue": QUEUE_NAME}},
    # At least once: ack after the task ran; a worker that dies mid-task leaves
    # the message to be redelivered.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    # A `task-sent` event per job (and per retry, with its ETA): `python -m
    # demo_tasks.status` counts the backlog from these and the workers' -E events.
    task_send_sent_event=True,
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
          retry_kwargs={"max_retries": MAX_RETRIES, "countdown": RETRY_DELAY}, retry_backoff=False)
def mock_job(sleep_duration: float = 0, raise_error: bool = False) -> str:
    """Log, sleep `sleep_duration` seconds, and raise JobError if `raise_error`.

    Celery retries a JobError (autoretry_for) twice, MOCK_JOB_RETRY_DELAY seconds apart
    (read by the worker); the third failure sends the job to the morgue.
    """
    logger.info("Executing MockJob(sleep_duration=%r, raise_error=%r)", sleep_duration, raise_error)
    time.sleep(float(sleep_duration))
    if raise_error:
        raise JobError("Job failed successfully.")
    return "done"


class _ExpectedFailureFilter(logging.Filter):
    """Drops Celery's traceback of a mock_job that failed on purpose (JobError).

    The morgue logs one WARNING line for that job; real errors keep their tracebacks.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], JobError))


logging.getLogger("celery.app.trace").addFilter(_ExpectedFailureFilter())


@signals.worker_ready.connect
def _warn_if_queue_name_not_consumed(sender: Any = None, **_: Any) -> None:
    """Say at start when this worker will never see the jobs this app sends."""
    consumer = sender
    queues = {queue.name for queue in getattr(getattr(consumer, "task_consumer", None), "queues", ())}
    if consumer is None or getattr(consumer, "app", None) is not app or not queues:
        return
    if QUEUE_NAME not in queues:
        logging.getLogger(__name__).warning(
            "This worker consumes %s but demo_tasks sends mock_job to %r (QUEUE_NAME). Set "
            "QUEUE_NAME=%s both here and in the shell that sends the jobs.",
            ", ".join(sorted(queues)), QUEUE_NAME, sorted(queues)[0])
