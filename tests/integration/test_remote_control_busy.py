"""A worker whose pool is full of long tasks still answers remote control, as an idle one does.

`celery inspect ping` gets its reply within Celery's default 1 s timeout while every pool
slot is taken and more tasks wait reserved; `celery control revoke` of a reserved task
means it never runs. The threads pool is the control for ping: its main thread is never
the one running a task. Revoke is checked on prefork only: Celery's threads pool hands a
reserved task to its executor at once and runs it even once revoked, whatever the broker.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest

from tests.integration.conftest import ROOT, TaskLog, Worker, run_producer, wait_until

POOLS = ["prefork", "threads"]
#: Seconds each queued task runs: six of them keep one slot busy for 24 s.
LONG = 4.0
#: worker_prefetch_multiplier, Celery's default: with -c 1, one task runs and three wait reserved.
PREFETCH = "4"
#: Seconds to wait for what should take one or two (loaded 2-core CI machines).
PATIENCE = 30.0


def celery(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`celery -A tests.apps.e2e_app ARGS`, as a user types it."""
    return subprocess.run([sys.executable, "-m", "celery", "-A", "tests.apps.e2e_app", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def answering(output: str) -> list[str]:
    """The node names (before the @) in `celery inspect|control` output, one per reply."""
    return [name.split("@")[0] for name in re.findall(r"^->  (\S+): OK", output, flags=re.MULTILINE)]


def received(worker: Worker, task_ids: list[str]) -> list[str]:
    """The tasks among `task_ids` the worker logged as received (reserved or running)."""
    return [task_id for task_id in task_ids if f"[{task_id}] received" in worker.log()]


def busy_worker(start_worker, pool: str) -> Worker:
    return start_worker("-P", pool, "-c", "1", E2E_PREFETCH=PREFETCH)


@pytest.mark.parametrize("pool", POOLS)
def test_a_worker_busy_with_long_tasks_answers_ping_three_times_in_a_row(
        pool, start_worker, e2e_env, task_log: TaskLog):
    worker = busy_worker(start_worker, pool)
    tokens = [f"long{i}" for i in range(6)]
    sent = run_producer(e2e_env, f"for token in {tokens!r}:\n"
                                 f"    record.apply_async((token, {LONG}), task_id=token)\n")
    assert sent.returncode == 0, sent.stderr[-3000:]
    assert wait_until(lambda: task_log.tokens("start"), PATIENCE), worker.log()[-3000:]
    # One task running, at least one more reserved: the pool is full and work is waiting.
    assert wait_until(lambda: len(received(worker, tokens)) >= 2, PATIENCE), worker.log()[-3000:]

    took = []
    for attempt in range(3):
        began = time.monotonic()
        pinged = celery(e2e_env, "inspect", "ping", "--timeout", "1")
        took.append(round(time.monotonic() - began, 1))
        assert answering(pinged.stdout) == ["worker0"], \
            (f"ping {attempt + 1} of 3: no reply from the busy worker\n{pinged.stdout}{pinged.stderr}"
             f"\nworker log:\n{worker.log()[-3000:]}")
    print(f"three pings of a busy {pool} worker, seconds each (process start included): {took}")
    # Still busy when the last reply came: the replies came from a worker with tasks to do.
    assert len(set(task_log.tokens("done"))) < len(tokens), task_log.path.read_text()
    worker.signal(signal.SIGKILL)  # nothing left to check; its queued tasks need not run


def test_revoking_a_task_a_busy_worker_holds_reserved_means_it_never_runs(
        start_worker, e2e_env, task_log: TaskLog, tmp_path):
    worker = busy_worker(start_worker, "prefork")
    flag = tmp_path / "holding"  # the running task holds the only slot while it exists
    flag.touch()
    try:
        sent = run_producer(e2e_env, f"from tests.apps.e2e_app import hold\n"
                                     f"hold.delay('busy', {str(flag)!r})\n")
        assert sent.returncode == 0, sent.stderr[-3000:]
        assert wait_until(lambda: "busy" in task_log.tokens("start"), PATIENCE), worker.log()[-3000:]
        sent = run_producer(e2e_env, "record.apply_async(('doomed',), task_id='doomed')\n")
        assert sent.returncode == 0, sent.stderr[-3000:]
        assert wait_until(lambda: received(worker, ["doomed"]), PATIENCE), worker.log()[-3000:]

        revoked = celery(e2e_env, "control", "revoke", "doomed")
    finally:
        flag.unlink(missing_ok=True)
    # Sent after 'doomed' was received, so done after 'doomed' was dealt with, with one slot.
    sent = run_producer(e2e_env, "record.apply_async(('after',), task_id='after')\n")
    assert sent.returncode == 0, sent.stderr[-3000:]
    assert wait_until(lambda: {"busy", "after"} <= set(task_log.tokens("done")), PATIENCE), \
        worker.log()[-3000:]
    assert "doomed" not in task_log.tokens("start"), worker.log()[-3000:]
    assert answering(revoked.stdout) == ["worker0"], \
        f"{revoked.stdout}{revoked.stderr}\nworker log:\n{worker.log()[-3000:]}"
