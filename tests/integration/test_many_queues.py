"""Fairness across queues: a worker consuming many queues starts each task about as soon as
a worker consuming one queue does, whichever queue the task was sent to.

Each test measures a one-queue worker first, in the same run on the same machine, so a
slow or loaded machine moves the baseline and the many-queue figure together.
"""

from __future__ import annotations

import math

import pytest

from tests.integration.conftest import TaskLog, run_producer, wait_until

QUEUE_COUNTS = [1, 10, 50]
TASKS = 30
#: Celery's default worker_prefetch_multiplier: with -c 4, up to 16 tasks prefetched.
PREFETCH = "4"
#: The many-queue p99 start latency may be this many times the one-queue p99 ...
RATIO = 3.0
#: ... plus this, seconds: the emulator's delivery latency alone varies by tens of ms.
ALLOWANCE = 0.5
#: No task may wait longer than this to start, seconds.
MAX_LATENCY = 3.0
#: Seconds to wait for the last task to start once all are sent.
PATIENCE = 20.0

# One task every 0.2-0.3 s to a random queue: well under what 4 threads handle, so any
# wait is the transport's, not the pool's. The sleep paces the load; it syncs nothing.
SEND = """
import random, time
from tests.apps.e2e_app import timed
rng = random.Random({seed})
for i in range({tasks}):
    timed.apply_async((f"{prefix}-t{{i}}", time.time()), queue=f"{prefix}{{rng.randrange({queues})}}")
    time.sleep(rng.uniform(0.2, 0.3))
"""


def p99(latencies: list[float]) -> float:
    """Nearest-rank 99th percentile (with 30 samples: the largest)."""
    ordered = sorted(latencies)
    return ordered[math.ceil(0.99 * len(ordered)) - 1]


def summary(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    if not ordered:
        return "none"
    return f"p50 {ordered[len(ordered) // 2]:.3f} s, p99 {p99(ordered):.3f} s, max {ordered[-1]:.3f} s"


def start_latencies(start_worker, env: dict[str, str], task_log: TaskLog, queues: int,
                    prefix: str) -> list[float]:
    """Start a `-P threads -c 4` worker on queues PREFIX0..PREFIX{queues-1}, send TASKS tasks
    to them at random, and return each task's seconds from send to start. The worker is
    stopped before returning, so measurements never overlap."""
    names = ",".join(f"{prefix}{i}" for i in range(queues))
    worker = start_worker("-P", "threads", "-c", "4", queues=names, E2E_PREFETCH=PREFETCH)
    try:
        sent = run_producer(env, SEND.format(seed=queues, tasks=TASKS, prefix=prefix, queues=queues))
        assert sent.returncode == 0, sent.stderr[-3000:]
        tokens = {f"{prefix}-t{i}" for i in range(TASKS)}
        started = wait_until(lambda: tokens <= set(task_log.tokens("start")), PATIENCE)
        latencies = [value for token, _, value in task_log.events("latency") if token in tokens]
        assert started, (f"{len(tokens - set(task_log.tokens('start')))} of {TASKS} tasks sent to "
                         f"{queues} queue(s) not started {PATIENCE:.0f} s after the last was sent; "
                         f"the others: {summary(latencies)}\n{worker.log()[-3000:]}")
    finally:
        worker.stop()
    return latencies


@pytest.mark.parametrize("queues", QUEUE_COUNTS)
def test_a_worker_consuming_many_queues_starts_each_task_as_promptly_as_with_one(
        queues, start_worker, e2e_env, task_log, record_property):
    baseline = start_latencies(start_worker, e2e_env, task_log, 1, "base")
    measured = baseline if queues == 1 else start_latencies(start_worker, e2e_env, task_log, queues, "q")
    print(f"\nstart latency, 1 queue: {summary(baseline)}"
          f"\nstart latency, {queues} queue(s): {summary(measured)}"
          f"\nFIGURE start_latency_p99_s[{queues} queues]: {p99(measured):.3f} "
          f"(1 queue: {p99(baseline):.3f})")
    record_property("p99_s", round(p99(measured), 3))
    record_property("baseline_p99_s", round(p99(baseline), 3))
    assert max(measured) < MAX_LATENCY, summary(measured)
    assert p99(measured) <= RATIO * p99(baseline) + ALLOWANCE, \
        f"{queues} queues: {summary(measured)}; 1 queue: {summary(baseline)}"
