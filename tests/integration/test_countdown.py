"""Durable countdowns: kept in Pub/Sub until due, never early, across hops and crashes."""

from __future__ import annotations

import datetime
import json
import signal
import time

from tests.integration.conftest import pull_all, run_producer

SEND_WITH_COUNTDOWNS = """
import sys, time
for countdown in {countdowns}:
    due = time.time() + countdown
    record.apply_async((f"cd{{countdown}}@{{due:.3f}}",), countdown=countdown)
"""


def send(env, *countdowns: float) -> None:
    done = run_producer(env, SEND_WITH_COUNTDOWNS.format(countdowns=list(countdowns)))
    assert done.returncode == 0, done.stderr


def lateness(task_log) -> dict[str, float]:
    """token → seconds between its ETA and its start (negative = early)."""
    return {token: at - float(token.split("@")[1]) for token, _, at in task_log.events("start")
            if "@" in token}


def test_countdown_tasks_wait_in_pubsub_and_never_run_early(start_worker, e2e_env, task_log):
    start_worker("-c", "1")
    send(e2e_env, 2, 6, 15)
    run_producer(e2e_env, "record.delay('now')")
    # The pending countdowns neither fill the prefetch (1) nor block the pool.
    assert "now" in task_log.wait_for("done", 1, timeout=10)
    task_log.wait_for("start", 4, timeout=30)
    late = lateness(task_log)
    assert len(late) == 3, task_log.path.read_text()
    assert all(seconds >= 0 for seconds in late.values()), late
    assert all(seconds < 3 for seconds in late.values()), late


def test_a_delay_over_many_hops_is_never_dead_lettered(start_worker, e2e_env, task_log, project,
                                                        subscriber_client):
    options = {"max_defer_hop": 10, "dead_letter_attempts": 5}
    start_worker("-c", "1", transport_options=options)
    env = dict(e2e_env, E2E_TRANSPORT_OPTIONS='{"max_defer_hop": 10, "dead_letter_attempts": 5}')
    send(env, 45)  # 10 s hops: the 3rd delivery re-publishes, well before 5 attempts
    task_log.wait_for("start", 1, timeout=70)
    late = lateness(task_log)
    assert len(late) == 1 and 0 <= next(iter(late.values())) < 3, late
    time.sleep(1)
    assert pull_all(subscriber_client, f"projects/{project}/subscriptions/morgue") == []
    assert len(task_log.tokens("start")) == 1


def test_pending_countdowns_survive_a_killed_worker(start_worker, e2e_env, task_log):
    # The emulator hands a message whose deadline ends to a pull that was outstanding
    # when its client died, until that pull's timeout (docs: Emulator vs Google Cloud);
    # with pull_timeout=5 those pulls are gone before the first deferral ends (~10 s).
    options = {"pull_timeout": 5}
    first = start_worker("-c", "1", transport_options=options)
    send(e2e_env, 12, 16, 20, 24, 28)
    time.sleep(2)
    first.signal(signal.SIGKILL)
    start_worker("-c", "1", transport_options=options)
    task_log.wait_for("start", 5, timeout=50)
    late = lateness(task_log)
    assert len(late) == 5, task_log.path.read_text()
    assert all(seconds >= 0 for seconds in late.values()), late
    assert all(seconds < 3 for seconds in late.values()), late


def test_an_operator_sees_pending_countdowns_that_celery_inspect_cannot(start_worker, e2e_env,
                                                                          task_log):
    import subprocess
    import sys

    from tests.integration.conftest import ROOT

    start_worker("-c", "1")
    send(e2e_env, 120, 300)
    command = [sys.executable, "-m", "celery", "-A", "tests.apps.e2e_app", "pubsub", "countdowns",
               "--json"]
    deadline = time.monotonic() + 20
    while True:  # until the worker has pulled and deferred both
        shown = subprocess.run(command, cwd=ROOT, env=e2e_env, capture_output=True, text=True,
                               timeout=60)
        assert shown.returncode == 0, shown.stderr
        queues = {item["queue"]: item for item in json.loads(shown.stdout)["queues"]}
        if queues.get("e2e", {}).get("pending") == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    entry = queues["e2e"]
    assert (entry["pending"], entry["held"]) == (2, 0), shown.stdout
    next_due = datetime.datetime.fromisoformat(entry["next_eta"]).timestamp()
    last_due = datetime.datetime.fromisoformat(entry["last_eta"]).timestamp()
    assert 100 < next_due - time.time() <= 120 and 280 < last_due - time.time() <= 300, entry
    # Celery's own view has neither: they wait in Pub/Sub, not in the worker.
    scheduled = subprocess.run([sys.executable, "-m", "celery", "-A", "tests.apps.e2e_app", "inspect",
                                "scheduled", "--json"], cwd=ROOT, env=e2e_env, capture_output=True,
                               text=True, timeout=60)
    assert scheduled.returncode == 0, scheduled.stderr
    assert all(tasks == [] for tasks in json.loads(scheduled.stdout).values()), scheduled.stdout
    assert task_log.tokens("start") == []


def test_with_no_worker_running_the_countdowns_command_says_what_to_do(e2e_env):
    import subprocess
    import sys

    from tests.integration.conftest import ROOT

    shown = subprocess.run([sys.executable, "-m", "celery", "-A", "tests.apps.e2e_app", "pubsub",
                            "countdowns"], cwd=ROOT, env=e2e_env, capture_output=True, text=True,
                           timeout=60)
    assert shown.returncode == 1
    assert shown.stderr.strip().splitlines() == [
        "Error: no worker answered within 1 s; countdowns are counted by running workers "
        "(start one, or raise --timeout)"]
