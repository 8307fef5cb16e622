"""The Celery app the operator-command tests run `celery pubsub queues|provision|delete` on.

Routes to queues three ways (default queue, task_queues, task_routes) and has a
router function and a broadcast queue, which the commands cannot resolve.
Configured from the environment: PUBSUB_JOB_QUEUE_PROJECT_ID, OPS_TRANSPORT_OPTIONS (JSON),
OPS_MAX_PRIORITY (Celery's task_queue_max_priority; unset: no priorities).
"""

from __future__ import annotations

import json
import os
from typing import Any

from celery import Celery
from kombu import Queue
from kombu.common import Broadcast

import kombu_pubsub  # noqa: F401  registers pubsub://


def route_by_size(name: str, args: Any, kwargs: Any, options: Any, task: Any = None,
                  **kw: Any) -> dict[str, str] | None:
    """A router function: the queues it picks cannot be read from the configuration."""
    return {"queue": "big"} if kwargs.get("size", 0) > 100 else None


app = Celery("ops_app", broker=f"pubsub://{os.environ.get('PUBSUB_JOB_QUEUE_PROJECT_ID', 'job_queue')}")
app.conf.update(
    task_default_queue="default",
    task_queues=[Queue("default"), Queue("reports"), Broadcast("ops_broadcast", queue="ops_broadcast")],
    task_routes=[route_by_size, {"ops.bill": {"queue": "billing"}, "ops.mail.*": "mail"}],
    broker_transport_options=json.loads(os.environ.get("OPS_TRANSPORT_OPTIONS", "{}")),
    task_queue_max_priority=int(os.environ.get("OPS_MAX_PRIORITY", "0")) or None,
)
