"""Celery's own tools on Pub/Sub: inspect, control, events and Flower, with no leaked subscriptions."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from kombu import Exchange, Queue

from tests.emulator import free_port, port_open
from tests.integration.conftest import ROOT, run_producer, wait_until

INSPECT_COMMANDS = ["ping", "active", "reserved", "scheduled", "stats", "active_queues"]
TASK_EVENTS = ["task received", "task started", "task succeeded", "task retried", "task failed"]


def celery(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "celery", "-A", "tests.apps.e2e_app", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def answering(output: str) -> list[str]:
    """The worker names in `celery inspect|control` output, one per reply."""
    return re.findall(r"^->  (\S+): OK", output, flags=re.MULTILINE)


def resources(client, kind: str, project: str) -> set[str]:
    if kind == "subscriptions":
        listed = client.list_subscriptions(request={"project": f"projects/{project}"})
    else:
        listed = client.list_topics(request={"project": f"projects/{project}"})
    return {item.name for item in listed}


@pytest.fixture
def background(e2e_env: dict[str, str], tmp_path: Path) -> Iterator:
    """Start `celery ...` programs that run until the test ends (events, flower)."""
    started: list[tuple[subprocess.Popen, object]] = []

    def start(*args: str, **env: str) -> Path:
        log_path = tmp_path / f"{args[0]}-{len(started)}.log"
        log = open(log_path, "w")  # noqa: SIM115 - closed at teardown
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.apps.e2e_app", *args],
            cwd=ROOT, env=dict(e2e_env, **env), stdout=log, stderr=subprocess.STDOUT)
        started.append((process, log))
        return log_path

    yield start
    for process, log in started:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def test_inspect_answers_from_every_worker_within_the_default_timeout(start_worker, e2e_env):
    start_worker("-n", "one@%h", "-c", "1")
    start_worker("-n", "two@%h", "-P", "threads", "-c", "2")
    for command in INSPECT_COMMANDS:
        result = celery(e2e_env, "inspect", command)  # Celery's default timeout: 1 s
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        names = sorted(name.split("@")[0] for name in answering(result.stdout))
        assert names == ["one", "two"], (command, result.stdout)  # each exactly once
    assert "2 nodes online." in celery(e2e_env, "inspect", "ping").stdout


def test_ping_round_trip_and_each_broadcast_reaches_each_worker_once(start_worker, e2e_env, record_property):
    start_worker("-n", "one@%h", "-c", "1")
    start_worker("-n", "two@%h", "-P", "threads")
    measured = run_producer(e2e_env, """
import json, statistics, time
app.control.ping(timeout=5, limit=2)  # reply queue declared, connection warm
times, counts = [], []
for _ in range(20):
    start = time.perf_counter()
    replies = app.control.ping(timeout=5, limit=2)
    times.append(time.perf_counter() - start)
    counts.append(len(replies))
everyone = app.control.ping(timeout=1.5)  # no limit: every reply that comes within 1.5 s
print(json.dumps({"p50_ms": statistics.median(times) * 1000, "max_ms": max(times) * 1000,
                  "counts": counts, "everyone": sorted(k for r in everyone for k in r)}))
""")
    assert measured.returncode == 0, measured.stderr
    figures = json.loads(measured.stdout.strip().splitlines()[-1])
    record_property("ping_round_trip_2_workers",
                    f"p50 {figures['p50_ms']:.1f} ms, max {figures['max_ms']:.1f} ms")
    assert figures["counts"] == [2] * 20
    assert [name.split("@")[0] for name in figures["everyone"]] == ["one", "two"]
    assert figures["max_ms"] < 1000, figures  # within Celery's default 1 s timeout


def test_control_commands_reach_the_worker(start_worker, e2e_env, task_log):
    worker = start_worker("-n", "ctl@%h", "-P", "threads")
    added = celery(e2e_env, "control", "add_consumer", "extra")
    assert "add consumer extra" in added.stdout, added.stdout + added.stderr
    run_producer(e2e_env, "record.apply_async(('x1',), queue='extra')")
    assert "x1" in task_log.wait_for("done", 1, timeout=20)
    assert "'name': 'extra'" in celery(e2e_env, "inspect", "active_queues").stdout

    cancelled = celery(e2e_env, "control", "cancel_consumer", "extra")
    assert "no longer consuming from extra" in cancelled.stdout, cancelled.stdout
    assert "'name': 'extra'" not in celery(e2e_env, "inspect", "active_queues").stdout

    limited = celery(e2e_env, "control", "rate_limit", "e2e.record", "10/m")
    assert "new rate limit set successfully" in limited.stdout, limited.stdout

    celery(e2e_env, "control", "shutdown")  # the worker stops without replying, on any broker
    assert worker.process.wait(30) == 0
    assert "Got shutdown from remote" in worker.log()


def test_events_dump_shows_task_events_as_they_happen(start_worker, e2e_env, background, project,
                                                     subscriber_client):
    dump = background("events", "--dump")
    assert wait_until(lambda: any("celeryev" in name for name in
                                  resources(subscriber_client, "subscriptions", project)), 30)
    start_worker("-E", "-P", "threads", E2E_RETRY_DELAY="0.5")
    run_producer(e2e_env, "record.delay('ev1'); flaky.delay('ev2')")
    # Heartbeats come every 2 s; the task events may all be in before the first.
    shown = wait_until(lambda: "task failed" in dump.read_text() and "heartbeat" in dump.read_text()
                       and dump.read_text(), 30)
    assert shown, dump.read_text()[-3000:]
    for event in TASK_EVENTS:
        assert event in shown, event
    assert shown.count("task retried: e2e.flaky") == 2
    assert "heartbeat" in shown


def test_flower_shows_workers_and_task_states_live(start_worker, e2e_env, background):
    port = free_port()
    log = background("flower", f"--port={port}", "--address=127.0.0.1",
                     FLOWER_UNAUTHENTICATED_API="true")
    assert wait_until(lambda: port_open("127.0.0.1", port), 30), log.read_text()[-3000:]
    start_worker("-E", "-n", "seen@%h", "-P", "threads", E2E_RETRY_DELAY="0.5")

    def api(path: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
            return json.load(response)

    run_producer(e2e_env, "record.delay('fl1'); flaky.delay('fl2')")
    expected = {"e2e.record": "SUCCESS", "e2e.flaky": "FAILURE"}

    def states() -> dict[str, str]:
        return {task["name"]: task["state"] for task in api("/api/tasks").values()}

    assert wait_until(lambda: states() == expected, 40), states()
    workers = api("/api/workers?refresh=1")
    names = [name for name in workers if name.startswith("seen@")]
    assert names and workers[names[0]]["stats"]["pool"]["max-concurrency"] >= 1, workers


def test_a_hundred_inspect_pings_leave_no_subscription_behind(start_worker, e2e_env, project,
                                                              subscriber_client, publisher_client):
    start_worker("-n", "only@%h", "-P", "threads")
    before = (resources(subscriber_client, "subscriptions", project),
              resources(publisher_client, "topics", project))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: celery(e2e_env, "inspect", "ping"), range(100)))
    assert all("1 node online." in result.stdout for result in results), \
        [r.stdout + r.stderr for r in results if "1 node online." not in r.stdout][:2]
    after = (resources(subscriber_client, "subscriptions", project),
             resources(publisher_client, "topics", project))
    print(f"subscriptions before/after 100 pings: {len(before[0])}/{len(after[0])}; "
          f"topics {len(before[1])}/{len(after[1])}")
    assert after == before


def test_closing_one_connection_keeps_another_connections_temporary_queues(
        connect, project, subscriber_client):
    first, second = connect(), connect()
    queues = {}
    for name, connection in (("tmp-first", first), ("tmp-second", second)):
        queue = Queue(name, Exchange(name), routing_key=name, auto_delete=True)
        queues[name] = connection.SimpleQueue(queue)
    path = f"projects/{project}/subscriptions/tmp-second"
    subscription = subscriber_client.get_subscription(request={"subscription": path})
    assert subscription.expiration_policy.ttl.total_seconds() == 86400  # temporary_ttl backstop

    queues["tmp-first"].close()
    first.release()
    names = resources(subscriber_client, "subscriptions", project)
    assert f"projects/{project}/subscriptions/tmp-first" not in names
    assert path in names
    queues["tmp-second"].put({"still": "here"})
    assert queues["tmp-second"].get(timeout=10).payload == {"still": "here"}


def test_events_reach_only_receivers_whose_pattern_matches(connect):
    sender, receiver = connect(), connect()
    exchange = Exchange("evx", type="topic")
    wanted = receiver.SimpleQueue(Queue("ev-tasks", exchange, routing_key="task.#", auto_delete=True))
    with sender.Producer() as producer:
        for key in ("worker.heartbeat", "task.succeeded"):
            producer.publish({"key": key}, exchange=exchange, routing_key=key, declare=[exchange])
    assert wanted.get(timeout=15).payload == {"key": "task.succeeded"}
    with pytest.raises(wanted.Empty):
        wanted.get(timeout=2)


def test_a_durable_queue_on_a_topic_exchange_is_routed_by_the_publishers_bindings(connect):
    connection = connect()
    exchange = Exchange("jobs", type="topic")
    queue = connection.SimpleQueue(Queue("feed", exchange, routing_key="feed.#"))
    with connection.Producer() as producer:
        producer.publish({"n": 1}, exchange=exchange, routing_key="feed.import", declare=[exchange])
    assert queue.get(timeout=15).payload == {"n": 1}


def test_a_temporary_queue_made_by_another_connection_outlives_this_ones_close(
        connect, project, subscriber_client):
    """Two workers with one node name share a mailbox: the first to stop must not delete it."""
    maker, sharer = connect(), connect()
    queue = Queue("shared-box", Exchange("shared-box"), routing_key="shared-box", auto_delete=True)
    made = maker.SimpleQueue(queue)
    shared = sharer.SimpleQueue(queue)
    shared.close()
    sharer.release()
    path = f"projects/{project}/subscriptions/shared-box"
    assert path in resources(subscriber_client, "subscriptions", project)
    made.put({"n": 1})
    assert made.get(timeout=10).payload == {"n": 1}
    made.close()
    maker.release()
    assert path not in resources(subscriber_client, "subscriptions", project)
