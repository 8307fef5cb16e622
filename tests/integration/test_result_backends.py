"""Result backends with the Pub/Sub broker: rpc:// (replies over Pub/Sub) and Redis.

Each caller is a short script in a subprocess, since what a process leaves behind
when it exits is what these tests are about; the worker is the stock `celery worker`.
"""

from __future__ import annotations

import json
import re
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.conftest import run_producer, wait_until
from tests.integration.test_remote_control import answering, celery, resources
from tests.redis_server import RedisServer

RPC = {"E2E_RESULT_BACKEND": "rpc://"}
IMPORTS = ("import json, time\nfrom celery import chain, chord, group\n"
           "from tests.apps.e2e_app import add, total\n")
#: Chains, groups (and chords where the backend has them), printed as one JSON line.
CANVAS = IMPORTS + """
got = {
    "get": add.delay(2, 3).get(timeout=30),
    "chain": chain(add.s(1, 2), add.s(3), add.s(4)).delay().get(timeout=30),
    "group": group(add.s(i, i) for i in range(5)).delay().get(timeout=30),
}
if CHORDS:
    got["chord"] = chord(add.s(i, i) for i in range(5))(total.s()).get(timeout=30)
print(json.dumps(got))
"""
EXPECTED = {"get": 5, "chain": 10, "group": [0, 2, 4, 6, 8]}


def snapshot(project: str, subscriber_client, publisher_client) -> tuple[set[str], set[str]]:
    return (resources(subscriber_client, "subscriptions", project),
            resources(publisher_client, "topics", project))


def warnings_in(output: str) -> list[str]:
    return [line for line in output.splitlines()
            if "WARNING" in line or "already existed" in line or "Traceback" in line]


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's redis-server (skipped where none is installed)."""
    return redis_server.url


def test_rpc_results_for_get_chains_and_groups(start_worker, e2e_env):
    start_worker("-P", "threads", "-c", "4", **RPC)
    done = run_producer(dict(e2e_env, **RPC), "CHORDS = False\n" + CANVAS)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == EXPECTED
    assert not warnings_in(done.stderr), done.stderr


def test_redis_results_for_get_chains_groups_and_chords(start_worker, e2e_env, redis_url):
    backend = {"E2E_RESULT_BACKEND": redis_url}
    start_worker("-P", "threads", "-c", "4", **backend)
    done = run_producer(dict(e2e_env, **backend), "CHORDS = True\n" + CANVAS)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {**EXPECTED, "chord": 20}


def test_scripts_that_get_an_rpc_result_and_exit_leave_no_reply_queue(
        start_worker, e2e_env, project, subscriber_client, publisher_client):
    """No app.close(): the interpreter's exit deletes the reply topic and subscription."""
    start_worker("-P", "threads", **RPC)
    before = snapshot(project, subscriber_client, publisher_client)
    script = IMPORTS + "print(add.delay(2, 3).get(timeout=30))\n"
    with ThreadPoolExecutor(5) as pool:
        runs = list(pool.map(lambda _: run_producer(dict(e2e_env, **RPC), script), range(5)))
    for run in runs:
        assert run.returncode == 0 and run.stdout.split() == ["5"], run.stdout + run.stderr
        assert not warnings_in(run.stdout + run.stderr), run.stderr
    after = snapshot(project, subscriber_client, publisher_client)
    assert after == before, (after[0] - before[0], after[1] - before[1])


def test_a_result_sent_before_the_caller_listens_waits_for_it(start_worker, e2e_env):
    """The reply queue exists from delay() on, as a broker's declare makes it."""
    start_worker("-P", "threads", **RPC)
    late = run_producer(dict(e2e_env, **RPC), IMPORTS + """
result = add.delay(20, 22)
time.sleep(4)  # the task has long finished and replied
print(result.get(timeout=10))
""")
    assert late.returncode == 0, late.stderr
    assert late.stdout.split() == ["42"]


def test_a_caller_that_exits_before_its_result_leaves_nothing_behind(
        start_worker, e2e_env, project, subscriber_client, publisher_client):
    """The worker's reply to a departed caller is dropped, not given a new queue."""
    worker = start_worker("-P", "threads", **RPC)
    before = snapshot(project, subscriber_client, publisher_client)
    gone = run_producer(dict(e2e_env, **RPC), IMPORTS + "add.delay(1, 1, sleep=2)\n")
    assert gone.returncode == 0, gone.stderr
    assert wait_until(lambda: "succeeded in" in worker.log(), 30), worker.log()[-3000:]
    assert wait_until(lambda: "Dropped a reply" in worker.log(), 10), worker.log()[-3000:]
    after = snapshot(project, subscriber_client, publisher_client)
    assert after == before, (after[0] - before[0], after[1] - before[1])


def test_a_worker_killed_and_restarted_under_its_name_takes_its_mailbox_back_quietly(
        start_worker, e2e_env):
    first = start_worker("-n", "boxed@%h", "-P", "threads")
    first.signal(signal.SIGKILL)  # the mailbox subscription is left behind
    first.process.wait(10)
    second = start_worker("-n", "boxed@%h", "-P", "threads")
    ping = celery(e2e_env, "inspect", "ping")
    assert [name.split("@")[0] for name in answering(ping.stdout)] == ["boxed"], ping.stdout
    log = second.log()
    assert "replacing it" in log  # the leftover was found, and dealt with below WARNING
    mailbox = [line for line in log.splitlines() if "WARNING" in line
               and ("pidbox" in line or "Temporary queue" in line)]
    assert not mailbox, mailbox


def test_two_live_workers_with_one_node_name_are_warned_about(start_worker):
    start_worker("-n", "twin@%h", "-P", "threads")
    second = start_worker("-n", "twin@%h", "-P", "threads")
    warned = [line for line in second.log().splitlines()
              if "WARNING" in line and re.search(r"also used by another live process", line)]
    assert warned and "twin@" in warned[0], second.log()[-3000:]
