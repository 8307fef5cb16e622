"""Endpoints named in the broker URL, and failover between alternate URLs, on two emulators:
the session's (PUBSUB_EMULATOR_HOST) and a second one started here."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator

import pytest
from google.api_core import exceptions as gexc
from kombu import Connection

from kombu_pubsub.errors import BrokerUnavailableError
from kombu_pubsub.pubsub.endpoint import FROM_URL, Endpoint
from tests.emulator import Emulator, free_port
from tests.integration.conftest import run_producer, wait_until

pytestmark = pytest.mark.skipif(shutil.which("gcloud") is None,
                                reason="a second emulator needs the gcloud CLI here")


@pytest.fixture(scope="module")
def second() -> Iterator[Emulator]:
    """An emulator PUBSUB_EMULATOR_HOST does not point at."""
    emulator = Emulator().start()
    try:
        yield emulator
    finally:
        emulator.resume()
        emulator.stop()


def engine_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name.startswith("kombu-pubsub-")}


def topic_exists(host: str, project: str, name: str) -> bool:
    client = Endpoint(host, emulator=True, source=FROM_URL).publisher_client()
    try:
        client.get_topic(request={"topic": f"projects/{project}/topics/{name}"}, timeout=10)
        return True
    except gexc.NotFound:
        return False
    finally:
        client.stop()


def round_trip(connection: Connection, queue_name: str) -> object:
    queue = connection.SimpleQueue(queue_name)
    try:
        queue.put({"queue": queue_name})
        message = queue.get(timeout=15)
        message.ack()
        return message.payload
    finally:
        queue.close()


def test_an_endpoint_in_the_url_beats_pubsub_emulator_host(second, emulator_host, project):
    assert second.host != emulator_host
    with Connection(f"pubsub://{second.host}/{project}") as connection:
        # Publisher, admin, subscriber and the pull client all call the URL's emulator.
        assert round_trip(connection, "here") == {"queue": "here"}
    assert topic_exists(second.host, project, "here")
    assert not topic_exists(emulator_host, project, "here")


def test_alternates_move_past_an_endpoint_nothing_listens_on(second, project):
    dead = f"127.0.0.1:{free_port()}"
    before = engine_threads()
    failures: list[BaseException] = []
    with Connection(f"pubsub://{dead}/{project};pubsub://{second.host}/{project}") as connection:
        started = time.monotonic()
        connection.ensure_connection(errback=lambda exc, interval: failures.append(exc), max_retries=3)
        assert time.monotonic() - started < 3  # a refused connect fails at once
        assert connection.transport.endpoint.target == second.host
        assert [type(exc).__name__ for exc in failures] == ["BrokerUnavailableError"]
        assert f"the emulator at {dead}" in str(failures[0])
        assert round_trip(connection, "after-failover") == {"queue": "after-failover"}
    assert topic_exists(second.host, project, "after-failover")
    # The failed connect stopped what it had started.
    assert engine_threads() <= before


def test_alternates_move_past_an_endpoint_that_accepts_but_never_answers(second, emulator_host, project):
    second.pause()  # its socket still accepts; nothing answers
    try:
        with Connection(f"pubsub://{second.host}/{project};pubsub://{emulator_host}/{project}",
                        connect_timeout=1) as connection:
            started = time.monotonic()
            connection.ensure_connection(max_retries=3)
            elapsed = time.monotonic() - started
            assert connection.transport.endpoint.target == emulator_host
            assert elapsed < 1 + 1.5, elapsed  # one probe bounded by connect_timeout
            assert round_trip(connection, "past-paused") == {"queue": "past-paused"}
    finally:
        second.resume()


def test_a_consumer_whose_endpoint_went_away_reconnects_to_the_next(emulator_host, project):
    first = Emulator().start()
    url = f"pubsub://{first.host}/{project};pubsub://{emulator_host}/{project}"
    try:
        options = {"rpc_timeout": 2}
        with Connection(url, transport_options=options) as connection:
            queue = connection.SimpleQueue("moving")
            queue.put({"n": 1})
            queue.get(timeout=15).ack()
            stats = connection.transport.stats
            assert wait_until(lambda: stats.counts()["acked"] == 1, timeout=10)  # nothing left to send
            assert connection.transport.endpoint.target == first.host
            first.stop()
            with pytest.raises(BrokerUnavailableError):
                queue.get(timeout=30)  # pulls failed for a few seconds: connection lost
            # As Celery does: a new connection from the same URL (before the lost one is
            # closed, which makes no call that could tell the endpoint is gone).
            with Connection(url, connect_timeout=1, transport_options=options) as again:
                started = time.monotonic()
                again.ensure_connection(max_retries=3)
                # The endpoint that went away is checked again instead of trusted, and skipped.
                assert again.transport.endpoint.target == emulator_host
                assert time.monotonic() - started < 1 + 1.5
                assert round_trip(again, "moved") == {"queue": "moved"}
    finally:
        first.stop()


def test_a_worker_whose_first_alternate_is_down_runs_tasks_on_the_next(start_worker, e2e_env, task_log,
                                                                       second, project):
    dead = f"127.0.0.1:{free_port()}"
    env = {"E2E_BROKER_URL": f"pubsub://{dead}/{project};pubsub://{second.host}/{project}",
           "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{free_port()}"}  # also dead: the URL decides
    worker = start_worker("-c", "1", **env)
    log = worker.log()
    assert "Cannot connect to pubsub://" in log and f"{dead}/{project}" in log, log[-3000:]
    assert "Will retry using next failover" in log
    done = run_producer(dict(e2e_env, **env), "record.delay('failed-over')")
    assert done.returncode == 0, done.stderr
    assert "failed-over" in task_log.wait_for("done", 1, timeout=30), worker.log()[-3000:]
    assert topic_exists(second.host, project, "e2e")
