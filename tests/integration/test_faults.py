"""Reliability under faults and bad input, each with the figure it measures.

Every test prints ``FIGURE name: value`` (see them with ``pytest -s``) and
records the same with ``record_property``; ``pytest --figures PATH`` writes them
for the guarantees page (docs/development.md says how).
"""

from __future__ import annotations

import base64
import json
import re
import signal
import statistics
import threading
import time
import uuid
from typing import Any

from tests.integration.conftest import pull_all, run_producer

HOLD = "from tests.apps.e2e_app import hold\n"


def figure(record_property: Any, name: str, value: Any) -> None:
    """Report a measured figure: printed for -s, recorded for --junitxml."""
    print(f"\nFIGURE {name}: {value}")
    record_property(name, value)


def test_fifty_tasks_in_flight_all_complete_after_their_worker_is_killed(
        start_worker, e2e_env, task_log, tmp_path, record_property):
    flag = tmp_path / "holding"
    flag.touch()
    options = {"ack_deadline": 10, "pull_timeout": 5}
    first = start_worker("-P", "threads", "-c", "50", transport_options=options)
    sent = run_producer(e2e_env, HOLD + f"for i in range(50):\n    hold.delay(f'h{{i}}', {str(flag)!r})\n")
    assert sent.returncode == 0, sent.stderr
    assert len(set(task_log.wait_for("start", 50, timeout=30))) == 50
    first.signal(signal.SIGKILL)
    killed_at = time.time()
    flag.unlink()  # the tasks that run again finish at once
    start_worker("-P", "threads", "-c", "10", transport_options=options, wait=False)
    done = task_log.wait_for("done", 50, timeout=60)
    assert sorted(set(done)) == sorted(f"h{i}" for i in range(50)), task_log.path.read_text()
    starts = task_log.tokens("start")
    recovery = max(at for _, _, at in task_log.events("done")) - killed_at
    figure(record_property, "killed_worker_recovery_s", round(recovery, 1))
    figure(record_property, "killed_worker_runs_again", f"{len(starts) - 50} of 50")
    figure(record_property, "killed_worker_completed_twice", len(done) - 50)
    assert recovery < 10 + 20  # one ack deadline, plus a worker start-up on two busy cores


SEND_COUNTDOWNS = """
import time
for i in range({count}):
    countdown = {first} + (i % 40) * {step}
    due = time.time() + countdown
    record.apply_async((f"cd{{i}}@{{due:.3f}}",), countdown=countdown)
"""


def test_two_hundred_countdowns_survive_a_killed_worker_and_none_runs_early(
        start_worker, e2e_env, task_log, record_property):
    # pull_timeout=5: the emulator may hand a message to a dead worker's outstanding
    # pull until that pull times out (docs: Emulator vs Google Cloud).
    options = {"pull_timeout": 5}
    first = start_worker("-c", "2", transport_options=options)
    sent = run_producer(e2e_env, SEND_COUNTDOWNS.format(count=200, first=12, step=0.2))
    assert sent.returncode == 0, sent.stderr
    time.sleep(2)
    first.signal(signal.SIGKILL)
    start_worker("-c", "2", transport_options=options)
    task_log.wait_for("start", 200, timeout=60)
    late = {token: at - float(token.split("@")[1]) for token, _, at in task_log.events("start")}
    assert len(late) == 200, f"{len(late)} of 200 ran"
    seconds = sorted(late.values())
    figure(record_property, "countdowns_after_crash_lateness_p50_s", round(statistics.median(seconds), 2))
    figure(record_property, "countdowns_after_crash_lateness_max_s", round(seconds[-1], 2))
    figure(record_property, "countdowns_after_crash_early", sum(s < 0 for s in seconds))
    figure(record_property, "countdowns_after_crash_ran_twice", len(task_log.tokens("start")) - 200)
    assert seconds[0] >= 0, seconds[:5]
    assert seconds[-1] < 5, seconds[-5:]


PACED_LOAD = """
import time
started = time.monotonic()
for i in range({count}):
    time.sleep(max(0.0, started + i / {rate} - time.monotonic()))
    record.delay(f"load{{i}}@{{time.time():.3f}}", {sleep})
"""


def test_warm_shutdown_under_load_finishes_running_tasks_and_releases_prefetched_ones(
        start_worker, e2e_env, task_log, record_property):
    # The leaving worker (prefork -c 1, prefetch 4) runs a 20 s task, so the tasks it
    # takes from the 5/s load wait in its prefetch. The staying worker (threads -c 8)
    # has room for the whole load and starts a task within a second of its sending:
    # a task that starts there later had been held by the leaving one. Node names are
    # unique, as Celery requires of workers sharing a broker.
    leaving = start_worker("-c", "1", "-n", "leaving@%h", E2E_PREFETCH="4")
    # 20 s: long enough to be still running at SIGTERM on a slow, busy machine.
    run_producer(e2e_env, "import time\nrecord.delay(f'long@{time.time():.3f}', 20)")
    task_log.wait_for("start", 1, timeout=20)
    # Fill the leaving worker's prefetch while it is the only consumer: once the
    # staying worker pulls too, which worker gets a message is the emulator's choice,
    # and the leaving one may end up holding nothing to release.
    run_producer(e2e_env, PACED_LOAD.format(count=3, rate=100, sleep=0.8).replace("load", "held"))
    time.sleep(1.5)
    staying = start_worker("-P", "threads", "-c", "8", "-n", "staying@%h")
    load = threading.Thread(target=run_producer,
                            args=(e2e_env, PACED_LOAD.format(count=40, rate=5, sleep=0.8)))
    load.start()
    time.sleep(2.5)
    leaving.warm_shutdown()
    stopped_at = time.time()
    load.join(30)
    done = task_log.wait_for("done", 44, timeout=40)
    assert len(set(done)) == 44, "lost tasks"
    leaving.process.wait(30)

    stays = staying.process.pid  # the threads pool runs tasks in the worker's own process
    started = {token: (pid, at) for token, pid, at in task_log.events("start")}
    finished = {token: (pid, at) for token, pid, at in task_log.events("done")}
    running = [t for t, (pid, at) in started.items()
               if pid != stays and at < stopped_at <= finished[t][1]]
    assert [t.split("@")[0] for t in running] == ["long"]
    assert finished[running[0]][0] == started[running[0]][0]  # it finished where it ran
    sent = {token: float(token.split("@")[1]) for token in started}
    released = [t for t, (pid, at) in started.items() if pid == stays and at - sent[t] > 1.0]
    after_stop = [t for t, (pid, at) in started.items() if pid != stays and at >= stopped_at]
    waits = [started[t][1] - stopped_at for t in released]
    figure(record_property, "warm_shutdown_running_finished", f"{len(running)} of {len(running)}")
    left = finished[running[0]][1] - stopped_at
    figure(record_property, "warm_shutdown_running_task_left_s", round(left, 2))
    figure(record_property, "warm_shutdown_started_on_leaving_worker_after_sigterm", len(after_stop))
    figure(record_property, "warm_shutdown_released", len(released))
    figure(record_property, "warm_shutdown_released_started_after_s", round(max(waits, default=0), 2))
    figure(record_property, "warm_shutdown_lost", 44 - len(set(done)))
    figure(record_property, "warm_shutdown_ran_twice", len(task_log.tokens("start")) - 44)
    assert leaving.process.returncode == 0
    assert released, "the leaving worker held no prefetched task: nothing was tested"
    # Released at SIGTERM: not when the running task ends (about 7 s later), let alone
    # after the 30 s ack deadline.
    assert max(waits) < 3.0, waits


def envelope(body: bytes, content_type: str = "application/json", headers: dict | None = None,
             raw_body: Any = None) -> bytes:
    """Kombu's virtual-transport envelope, as a raw producer might (mis)write it."""
    return json.dumps({
        "body": base64.b64encode(body).decode() if raw_body is None else raw_body,
        "content-type": content_type, "content-encoding": "utf-8", "headers": headers or {},
        "properties": {"body_encoding": "base64", "delivery_info": {"routing_key": "e2e"}},
    }).encode()


def task_headers(case: str, task: str = "e2e.record") -> dict[str, str]:
    return {"task": task, "id": case, "lang": "py"}


BODY = json.dumps([["bad"], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
#: case → (Pub/Sub message data, the reason it must reach the morgue with)
BAD_MESSAGES: dict[str, tuple[bytes, str]] = {
    "not-json": (b"not json at all", "not UTF-8 JSON"),
    "random-bytes": (bytes(range(200, 256)) * 3, "not UTF-8 JSON"),
    "empty": (b"", "empty message data"),
    "json-not-envelope": (b'{"hello": "world"}', "lacks the Kombu envelope"),
    "unknown-content-type": (envelope(b"x", "application/x-unknown", task_headers("unknown-content-type")),
                             "content type 'application/x-unknown' not accepted"),
    "pickle": (envelope(b"\x80\x04N.", "application/x-python-serialize", task_headers("pickle")),
               "content type 'application/x-python-serialize' not accepted"),
    "no-task-header": (envelope(b'{"hello": "world"}', headers={"id": "no-task-header"}),
                       "not a task message: no 'task' header"),
    "no-task-header-body-not-json": (envelope(b"nope", headers={"id": "no-task-header-body-not-json"}),
                                     "not valid JSON"),
    "protocol-1-without-id": (envelope(b'{"task": "e2e.record", "kwargs": {}}',
                                       headers={"id": "protocol-1-without-id"}),
                              "not a protocol 1 task message"),
    "unknown-task": (envelope(BODY.encode(), headers=task_headers("unknown-task", "e2e.no_such_task")),
                     "unknown task 'e2e.no_such_task'"),
    "body-not-json": (envelope(b"nope", headers=task_headers("body-not-json")), "not valid JSON"),
    "body-not-args-kwargs-embed": (envelope(b'"hello"', headers=task_headers("body-not-args-kwargs-embed")),
                                   "not [args, kwargs, embed]"),
    "no-id-header": (envelope(BODY.encode(), headers={"task": "e2e.record"}), "without an 'id' header"),
    "body-not-base64": (envelope(b"", headers=task_headers("body-not-base64"), raw_body="!!!not base64!!!"),
                        "not valid base64"),
}
PROTOCOL_1 = envelope(json.dumps({"task": "e2e.record", "id": "p1", "args": ["protocol-1"],
                                  "kwargs": {}}).encode(), headers={"id": "p1"})

PUBLISH_RAW = """
import json
from google.cloud import pubsub_v1
client = pubsub_v1.PublisherClient()
for case, data in json.load(open({path!r})).items():
    client.publish("projects/{project}/topics/e2e", data.encode("latin-1"), case=case).result()
record.delay("after")
"""


def publish_raw(env: dict[str, str], project: str, tmp_path: Any, messages: dict[str, bytes]) -> None:
    path = tmp_path / "raw.json"
    path.write_text(json.dumps({case: data.decode("latin-1") for case, data in messages.items()}))
    sent = run_producer(env, PUBLISH_RAW.format(path=str(path), project=project))
    assert sent.returncode == 0, sent.stderr


def case_of(received: Any) -> str:
    attributes = received.message.attributes
    return attributes.get("case") or attributes.get("id", "?")


def test_bad_messages_reach_the_morgue_with_their_reason_and_the_worker_keeps_going(
        start_worker, e2e_env, task_log, project, subscriber_client, tmp_path, record_property):
    worker = start_worker("-c", "1")
    messages = {case: data for case, (data, _) in BAD_MESSAGES.items()}
    publish_raw(e2e_env, project, tmp_path, {**messages, "protocol-1": PROTOCOL_1})
    buried: dict[str, list[str]] = {}
    deadline = time.monotonic() + 40
    while len(buried) < len(BAD_MESSAGES) and time.monotonic() < deadline:
        for received in pull_all(subscriber_client, f"projects/{project}/subscriptions/morgue"):
            buried.setdefault(case_of(received), []).append(received.message.attributes["morgue_reason"])
        time.sleep(0.5)
    assert set(buried) == set(BAD_MESSAGES), f"missing: {set(BAD_MESSAGES) - set(buried)}"
    for case, (_, reason) in BAD_MESSAGES.items():
        assert reason in buried[case][0], (case, buried[case])
    # A valid protocol 1 message (no 'task' header) runs; the worker kept going.
    assert {"after", "protocol-1"} <= set(task_log.wait_for("done", 2, timeout=20))
    time.sleep(3)  # nothing comes back: no message is redelivered over and over
    again = pull_all(subscriber_client, f"projects/{project}/subscriptions/morgue")
    assert [case_of(m) for m in again] == []
    assert all(len(reasons) == 1 for reasons in buried.values()), buried
    assert worker.process.poll() is None and "Unrecoverable error" not in worker.log()
    assert pull_all(subscriber_client, f"projects/{project}/subscriptions/e2e") == []
    figure(record_property, "bad_messages_in_morgue", f"{len(buried)} of {len(BAD_MESSAGES)}")


def test_a_task_over_10mb_fails_at_delay_with_a_clear_error(e2e_env, project, subscriber_client):
    code = """
from kombu_pubsub import MessageTooLargeError
try:
    record.delay("x" * 11_000_000)
except MessageTooLargeError as exc:
    print("raised", exc)
"""
    done = run_producer(e2e_env, code)
    assert done.stdout.startswith("raised"), done.stdout + done.stderr
    assert "exceeds Pub/Sub's 10 MB limit" in done.stdout
    assert pull_all(subscriber_client, f"projects/{project}/subscriptions/e2e") == []


LOG_RECORD = re.compile(r"^\[[^\]]*: (?P<level>[A-Z]+)/(?P<process>\S+) (?P<logger>\S+)\] ", re.M)


def loggers_mentioning(log: str, secret: str) -> set[str]:
    """The loggers of the records (tracebacks included) in a worker log that contain `secret`."""
    starts = list(LOG_RECORD.finditer(log))
    found = set()
    for match, after in zip(starts, [*starts[1:], None], strict=True):
        record = log[match.start():after.start() if after else len(log)]
        if secret in record:
            found.add(f"{match['logger']} {match['level']}")
    return found


def test_the_transport_never_logs_payloads_even_at_debug(
        start_worker, e2e_env, task_log, project, subscriber_client, tmp_path, record_property):
    secret = f"secret-{uuid.uuid4().hex}"
    worker = start_worker("-c", "1", "-l", "debug", E2E_LOG_NAMES="1")
    # One refused by the transport, one rejected by Celery (unknown task), one that runs.
    refused = envelope(json.dumps([[secret], {}, 7]).encode(), headers=task_headers("refused"))
    unknown = envelope(json.dumps([[secret], {}, {}]).encode(), headers=task_headers("unknown", "e2e.nope"))
    publish_raw(e2e_env, project, tmp_path, {"refused": refused, "unknown": unknown})
    sent = run_producer(e2e_env, f"record.delay({secret!r}, sleep=0.1)")
    assert sent.returncode == 0, sent.stderr
    assert secret in task_log.wait_for("done", 2, timeout=20)
    buried: list = []
    deadline = time.monotonic() + 20
    while len(buried) < 2 and time.monotonic() < deadline:
        buried += pull_all(subscriber_client, f"projects/{project}/subscriptions/morgue")
        time.sleep(0.3)
    assert sorted(case_of(m) for m in buried) == ["refused", "unknown"]
    worker.stop()
    log = worker.log()
    assert " DEBUG/" in log and "kombu_pubsub." in log  # the transport did log, at DEBUG
    mentions = loggers_mentioning(log, secret)
    figure(record_property, "secret_logged_by", sorted(mentions) or "nobody")
    assert not [m for m in mentions if m.startswith("kombu_pubsub")], mentions
