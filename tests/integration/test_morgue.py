"""Retries at least the configured delay apart, then the morgue; poison messages; morgue tools."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.integration.conftest import ROOT, pull_all, run_producer


def celery(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "celery", "-A", "tests.apps.e2e_app", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def wait_for_morgue(env: dict[str, str], count: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        listed = celery(env, "pubsub", "morgue", "list")
        if f"{count} message(s) in the morgue" in listed.stdout or time.monotonic() > deadline:
            return listed.stdout + listed.stderr
        time.sleep(1)


def nack_until_dead_lettered(subscriber, source: str, morgue: str, timeout: float = 30) -> list[int]:
    """Pull from `source` and nack at once until the morgue holds a message; return the
    delivery attempts seen (raw client)."""
    attempts: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for received in pull_all(subscriber, source, ack=False):
            attempts.append(received.delivery_attempt)
            subscriber.modify_ack_deadline(request={
                "subscription": source, "ack_ids": [received.ack_id], "ack_deadline_seconds": 0})
        buried = pull_all(subscriber, morgue, ack=False)
        if buried:  # give it back: the morgue tools read it next
            subscriber.modify_ack_deadline(request={
                "subscription": morgue, "ack_ids": [m.ack_id for m in buried], "ack_deadline_seconds": 0})
            return attempts
        time.sleep(0.2)
    raise AssertionError(f"not dead-lettered within {timeout} s; delivery attempts seen: {attempts}")


def test_a_failing_job_runs_three_times_spaced_then_lands_in_the_morgue(
        start_worker, e2e_env, task_log, tmp_path):
    start_worker("-c", "2")
    flag = tmp_path / "failing"
    flag.touch()
    run_producer(e2e_env, f"flaky.delay('job1', fail_while={str(flag)!r})")
    listed = wait_for_morgue(e2e_env, 1, timeout=40)
    starts = [at for token, _, at in task_log.events("start") if token == "job1"]
    assert len(starts) == 3, task_log.path.read_text()
    assert all(later - earlier >= 1.5 for earlier, later in zip(starts, starts[1:], strict=False)), starts
    assert "e2e.flaky" in listed and "JobError: Job failed successfully." in listed
    time.sleep(3)  # and it is not retried any more
    assert len([t for t in task_log.tokens("start") if t == "job1"]) == 3

    task_id = listed.split("id=")[-1].split()[0]
    shown = celery(e2e_env, "pubsub", "morgue", "show", task_id)
    assert "executions: 3" in shown.stdout and "queue: e2e" in shown.stdout
    assert "Traceback" in shown.stdout and "args: ['job1']" in shown.stdout

    flag.unlink()  # the cause is fixed: replay runs it to success, with retries reset
    replayed = celery(e2e_env, "pubsub", "morgue", "replay", task_id)
    assert "1 message(s) replayed" in replayed.stdout, replayed.stderr
    assert "job1" in task_log.wait_for("done", 1, timeout=20)
    assert "0 message(s) in the morgue" in celery(e2e_env, "pubsub", "morgue", "list").stdout


def test_an_unknown_task_goes_to_the_morgue_with_its_reason(start_worker, e2e_env):
    start_worker("-c", "1")
    run_producer(e2e_env, "app.send_task('e2e.no_such_task', args=(1,), queue='e2e')")
    listed = wait_for_morgue(e2e_env, 1, timeout=20)
    assert "unknown task 'e2e.no_such_task'" in listed


def test_a_task_that_kills_its_worker_every_time_is_dead_lettered(
        start_worker, e2e_env, task_log, project, subscriber_client):
    # Celery waits worker_lost_wait (10 s by default) for a killed pool process before it
    # rejects its task; 1 s keeps five rounds short.
    start_worker("-c", "1", transport_options={"dead_letter_attempts": 5}, E2E_WORKER_LOST_WAIT="1")
    run_producer(e2e_env, "kill_worker.delay('poison')")
    listed = wait_for_morgue(e2e_env, 1, timeout=90)
    assert "dead-lettered after 5 delivery attempts" in listed, listed
    assert len(task_log.tokens("start")) == 5
    time.sleep(3)
    assert len(task_log.tokens("start")) == 5  # not redelivered any more
    assert pull_all(subscriber_client, f"projects/{project}/subscriptions/e2e") == []


def test_a_message_dead_lettered_from_a_queue_with_an_encoded_id_replays_onto_that_queue(
        e2e_env, project, subscriber_client):
    # '1jobs' starts with a digit, so its subscription id is 'q~1jobs' (naming.py), and
    # Pub/Sub names that id as the dead-lettered message's source.
    env = dict(e2e_env, QUEUE_NAME="1jobs", E2E_TRANSPORT_OPTIONS='{"dead_letter_attempts": 5}')
    sent = run_producer(env, "print(record.delay('undead').id)")
    assert sent.returncode == 0, sent.stderr
    task_id = sent.stdout.strip()
    source = f"projects/{project}/subscriptions/q~1jobs"
    # What a worker killed by the task each time does: take it, give it back. Pub/Sub
    # dead-letters it when it would deliver it a sixth time.
    attempts = nack_until_dead_lettered(subscriber_client, source, f"projects/{project}/subscriptions/morgue")
    assert attempts == [1, 2, 3, 4, 5]
    listed = wait_for_morgue(env, 1, timeout=30)
    assert "  1jobs  dead-lettered after 5 delivery attempts" in listed, listed

    replayed = celery(env, "pubsub", "morgue", "replay", task_id)
    assert "replayed e2e.record to 1jobs" in replayed.stdout, replayed.stdout + replayed.stderr
    back = pull_all(subscriber_client, source)
    assert [m.message.attributes["id"] for m in back] == [task_id]
    assert "0 message(s) in the morgue" in celery(env, "pubsub", "morgue", "list").stdout
    assert "q%7E1jobs" not in {s.name.rsplit("/", 1)[-1] for s in subscriber_client.list_subscriptions(
        request={"project": f"projects/{project}"})}


def test_morgue_purge_empties_it(start_worker, e2e_env):
    start_worker("-c", "1")
    run_producer(e2e_env, "for i in range(3):\n    app.send_task('e2e.nope', queue='e2e')\n")
    wait_for_morgue(e2e_env, 3, timeout=20)
    purged = celery(e2e_env, "pubsub", "morgue", "purge")
    assert "Purged 3 message(s)" in purged.stdout, purged.stderr
    assert "0 message(s) in the morgue" in celery(e2e_env, "pubsub", "morgue", "list").stdout


BAD_CONTENT = """
import base64, json
from google.cloud import pubsub_v1
envelope = {{"body": base64.b64encode(b"not really pickle").decode(), "content-type": {content_type!r},
            "content-encoding": "binary", "headers": {{"task": "e2e.record", "id": "bad-1"}},
            "properties": {{"body_encoding": "base64", "delivery_info": {{}}}}}}
pubsub_v1.PublisherClient().publish("projects/{project}/topics/e2e", json.dumps(envelope).encode()).result()
record.delay("after")
"""


def test_a_pickle_message_is_refused_into_the_morgue_not_lost(start_worker, e2e_env, project, task_log):
    start_worker("-c", "1")
    sent = run_producer(e2e_env, BAD_CONTENT.format(content_type="application/x-python-serialize",
                                                    project=project))
    assert sent.returncode == 0, sent.stderr
    assert "after" in task_log.wait_for("done", 1, timeout=20)  # the worker keeps going
    listed = wait_for_morgue(e2e_env, 1, timeout=20)
    assert "content type 'application/x-python-serialize' not accepted" in listed, listed
