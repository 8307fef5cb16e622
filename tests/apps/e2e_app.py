"""The Celery app end-to-end tests run in `celery worker` subprocesses.

Configured from the environment: PUBSUB_JOB_QUEUE_PROJECT_ID (or E2E_BROKER_URL, the
whole broker URL), QUEUE_NAME,
E2E_LOG (a file each task execution appends a line to), E2E_ACKS_LATE,
E2E_TRANSPORT_OPTIONS (JSON), E2E_RESULT_BACKEND (Celery's result_backend, none
by default), E2E_PREFETCH, E2E_WORKER_LOST_WAIT (Celery's
worker_lost_wait, default 10 s), E2E_RETRY_DELAY (seconds between `flaky`'s runs,
default 1.5), E2E_LOG_NAMES=1 (worker log lines name their logger), E2E_MAX_PRIORITY
(Celery's task_queue_max_priority; unset: queues without priorities).
"""

from __future__ import annotations

import json
import os
import time

from celery import Celery

import kombu_pubsub.morgue  # also registers pubsub://

app = Celery("e2e_app", broker=os.environ.get("E2E_BROKER_URL") or
             f"pubsub://{os.environ.get('PUBSUB_JOB_QUEUE_PROJECT_ID', 'job_queue')}")
app.conf.update(
    task_default_queue=os.environ.get("QUEUE_NAME", "default"),
    task_acks_late=os.environ.get("E2E_ACKS_LATE", "1") == "1",
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=int(os.environ.get("E2E_PREFETCH", "1")),
    worker_lost_wait=float(os.environ.get("E2E_WORKER_LOST_WAIT", "10")),
    broker_transport_options=json.loads(os.environ.get("E2E_TRANSPORT_OPTIONS", "{}")),
    result_backend=os.environ.get("E2E_RESULT_BACKEND") or None,
    broker_connection_retry_on_startup=True,
    task_queue_max_priority=int(os.environ.get("E2E_MAX_PRIORITY", "0")) or None,
    worker_hijack_root_logger=True,
)
if os.environ.get("E2E_LOG_NAMES") == "1":
    app.conf.worker_log_format = "[%(asctime)s: %(levelname)s/%(processName)s %(name)s] %(message)s"
kombu_pubsub.morgue.install(app)
if os.environ.get("KOMBU_PUBSUB_METRICS_PORT"):
    import kombu_pubsub.ops.metrics

    kombu_pubsub.ops.metrics.install(app)
RETRY_DELAY = float(os.environ.get("E2E_RETRY_DELAY", "1.5"))


class JobError(Exception):
    """Raised by `flaky` while its flag file exists."""


def _record(event: str, token: str, value: float | None = None) -> None:
    """Append 'EVENT TOKEN PID VALUE' to the task log; VALUE is the time now unless given."""
    with open(os.environ["E2E_LOG"], "a") as log:
        log.write(f"{event} {token} {os.getpid()} {time.time() if value is None else value:.3f}\n")


@app.task(name="e2e.record")
def record(token: str, sleep: float = 0.0) -> str:
    """Write 'start', sleep, write 'done': the test reads what ran, where and when."""
    _record("start", token)
    time.sleep(sleep)
    _record("done", token)
    return token


@app.task(name="e2e.add")
def add(x: int, y: int, sleep: float = 0.0) -> int:
    """x + y, after `sleep` seconds: results over a result backend."""
    time.sleep(sleep)
    return x + y


@app.task(name="e2e.total")
def total(numbers: list[int]) -> int:
    """The sum of a group's results: a chord's callback."""
    return sum(numbers)


@app.task(name="e2e.timed")
def timed(token: str, sent_at: float) -> str:
    """Write 'start', then 'latency': seconds from `sent_at` (the sender's time.time()) to the start."""
    latency = time.time() - sent_at
    _record("start", token)
    _record("latency", token, latency)
    return token


@app.task(name="e2e.flaky", autoretry_for=(JobError,),
          retry_kwargs={"max_retries": 2, "countdown": RETRY_DELAY}, retry_backoff=False)
def flaky(token: str, fail_while: str = "") -> str:
    """Fail with JobError while the file `fail_while` exists (always, if it is empty)."""
    _record("start", token)
    if not fail_while or os.path.exists(fail_while):
        raise JobError("Job failed successfully.")
    _record("done", token)
    return token


@app.task(name="e2e.kill_worker")
def kill_worker(token: str) -> None:
    """Kill the pool process running it, every time: a poison message."""
    import signal

    _record("start", token)
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(name="e2e.hold")
def hold(token: str, flag: str, limit: float = 60.0) -> str:
    """Write 'start', wait while the file `flag` exists (at most `limit` s), write 'done'."""
    _record("start", token)
    deadline = time.monotonic() + limit
    while os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.05)
    _record("done", token)
    return token
