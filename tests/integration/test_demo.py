"""The demo end to end: spawner load at 5 jobs/s against a real worker, short retry delay."""

from __future__ import annotations

import collections
import re
import subprocess
import sys
import time
from datetime import datetime

import pytest

from tests.integration.conftest import ROOT, Worker

pytestmark = pytest.mark.e2e  # starts a `celery worker` subprocess without start_worker

# Celery logs the hand-over to the pool (at the ETA) at DEBUG: that is when a run starts.
STARTED = re.compile(r"\[(\S+ \S+): DEBUG/MainProcess\] TaskPool: Apply "
                     r".*?'demo_tasks\.mock_job', '([0-9a-f-]+)'")
SUCCEEDED = re.compile(r"Task demo_tasks\.mock_job\[([0-9a-f-]+)\] succeeded")


def test_every_spawned_job_succeeds_or_reaches_the_morgue_after_three_spaced_runs(e2e_env, tmp_path):
    env = dict(e2e_env, QUEUE_NAME="default", MOCK_JOB_RETRY_DELAY="2")
    worker = Worker(env, ["-Q", "default", "-P", "threads", "-c", "40", "-l", "debug"],
                    tmp_path / "worker.log", app="demo_tasks")
    try:
        worker.wait_ready()
        spawned = subprocess.run([sys.executable, "-m", "demo_tasks.spawner", "--rate", "5",
                                  "--duration", "20", "--seed", "7"], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=60)
        sent = int(re.search(r"sent (\d+) jobs in", spawned.stdout).group(1))
        assert sent >= 95, spawned.stdout
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            log = worker.log()
            finished = set(SUCCEEDED.findall(log)) | morgue_ids(env)
            if len(finished) >= sent:
                break
            time.sleep(2)
        receipts = collections.defaultdict(list)
        for at, task_id in STARTED.findall(worker.log()):
            receipts[task_id].append(datetime.strptime(at, "%Y-%m-%d %H:%M:%S,%f"))
        succeeded, buried = set(SUCCEEDED.findall(worker.log())), morgue_ids(env)
        assert len(receipts) == sent  # none lost
        assert succeeded | buried == set(receipts)
        assert not succeeded & buried
        for task_id in buried:
            runs = receipts[task_id]
            assert len(runs) == 3, (task_id, runs)
            assert all((b - a).total_seconds() >= 1.9 for a, b in zip(runs, runs[1:], strict=False))
        assert buried, "the seeded load has failing jobs"
    finally:
        worker.stop()


def morgue_ids(env: dict[str, str]) -> set[str]:
    listed = subprocess.run([sys.executable, "-m", "celery", "-A", "demo_tasks", "pubsub", "morgue", "list"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60).stdout
    return set(re.findall(r"id=([0-9a-f-]+)", listed))
