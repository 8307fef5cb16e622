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
EXECUTING = re.compile(r"\[(\S+ \S+): INFO/\S+\] demo_tasks\.mock_job\[([0-9a-f-]+)\]: Executing MockJob")


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


def test_queue_name_routes_the_producer_and_a_worker_that_misses_it_says_so(e2e_env, tmp_path):
    worker_env = {key: value for key, value in e2e_env.items() if key != "QUEUE_NAME"}
    worker_env["MOCK_JOB_RETRY_DELAY"] = "1"  # read where the worker runs
    worker = Worker(worker_env, ["-Q", "reports", "-P", "threads", "-c", "4"], tmp_path / "worker.log",
                    app="demo_tasks")
    try:
        worker.wait_ready()
        assert "demo_tasks sends mock_job to 'default' (QUEUE_NAME). Set QUEUE_NAME=reports" in worker.log()
        # The producer's QUEUE_NAME routes the job to the worker's queue; the worker's
        # MOCK_JOB_RETRY_DELAY (1 s) spaces the retries, not the producer's (300 s).
        sent = subprocess.run([sys.executable, "-c", "from demo_tasks import mock_job\n"
                               "print(mock_job.delay(raise_error=True).id)"],
                              cwd=ROOT, env=dict(e2e_env, QUEUE_NAME="reports", MOCK_JOB_RETRY_DELAY="300"),
                              capture_output=True,
                              text=True, timeout=60)
        task_id = sent.stdout.strip()
        assert task_id, sent.stderr
        deadline = time.monotonic() + 20
        while f"Moved failed job demo_tasks.mock_job[{task_id}]" not in worker.log():
            assert time.monotonic() < deadline, worker.log()[-3000:]
            time.sleep(0.2)
        runs = [datetime.strptime(at, "%Y-%m-%d %H:%M:%S,%f") for at, found in EXECUTING.findall(worker.log())
                if found == task_id]
        assert len(runs) == 3
        assert all(0.9 <= (b - a).total_seconds() <= 3 for a, b in zip(runs, runs[1:], strict=False)), runs
        assert "Traceback" not in worker.log()  # a job failing on purpose is not a crash
    finally:
        worker.stop()
