"""Publishing loses nothing: awaited by default, flushed in fast mode, bounded when Pub/Sub is down."""

from __future__ import annotations

import json
import time

import pytest
from kombu import Connection, Queue
from kombu.exceptions import OperationalError

from kombu_pubsub import MessageTooLargeError, PublishError, wire
from tests.emulator import free_port
from tests.integration.conftest import pull_all, run_producer

PRODUCE_500_AND_EXIT = """
import os
for i in range(500):
    record.delay(f"t{i}")
os._exit(0)  # no interpreter shutdown, no atexit: only what was accepted survives
"""


def test_500_delays_then_an_abrupt_exit_lose_nothing(e2e_env, project, subscriber_client, record_property):
    done = run_producer(e2e_env, PRODUCE_500_AND_EXIT)
    assert done.returncode == 0, done.stderr
    messages = pull_all(subscriber_client, f"projects/{project}/subscriptions/e2e")
    print(f"\nFIGURE producer_exit_delivered: {len(messages)} of 500")
    record_property("producer_exit_delivered", len(messages))
    assert len(messages) == 500


def test_fast_mode_flushes_at_normal_interpreter_exit(e2e_env, project, subscriber_client):
    env = dict(e2e_env, E2E_TRANSPORT_OPTIONS='{"fast_publish": "true"}')
    done = run_producer(env, "for i in range(500):\n    record.delay(f't{i}')\n")
    assert done.returncode == 0, done.stderr
    messages = pull_all(subscriber_client, f"projects/{project}/subscriptions/e2e")
    assert len(messages) == 500


def test_fast_mode_flushes_on_connection_close(connect, project, subscriber_client):
    with connect(fast_publish=True) as connection:
        queue = connection.SimpleQueue("fast")
        for i in range(200):
            queue.put({"i": i})
        queue.close()
    assert len(pull_all(subscriber_client, f"projects/{project}/subscriptions/fast")) == 200


def test_publish_to_a_broker_that_is_down_raises_within_the_bound(monkeypatch, project):
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{free_port()}")  # nothing listens
    started = time.monotonic()
    with Connection(f"pubsub://{project}", transport_options={"publish_timeout": 2}) as connection:
        producer = connection.Producer()
        with pytest.raises(OperationalError) as caught:
            # Celery's default publish retry policy; Kombu's own waits 2 s, 4 s, ...
            # between reconnects, on any broker.
            producer.publish({"x": 1}, routing_key="down", declare=[Queue("down")], retry=True,
                             retry_policy={"max_retries": 3, "interval_start": 0,
                                           "interval_step": 0.2, "interval_max": 0.2})
    elapsed = time.monotonic() - started
    assert elapsed < 2 + 1.5, elapsed  # one bound, not one per kombu retry
    assert "reachable" in str(caught.value) or "did not answer" in str(caught.value)


def test_celery_delay_to_a_broker_that_is_down_raises_a_kombu_error(e2e_env, record_property):
    env = dict(e2e_env, PUBSUB_EMULATOR_HOST=f"127.0.0.1:{free_port()}",
               E2E_TRANSPORT_OPTIONS='{"publish_timeout": 2}')
    code = """
import time
from kombu.exceptions import KombuError
started = time.monotonic()
try:
    record.delay("x")
except KombuError as exc:
    print("raised", type(exc).__name__, round(time.monotonic() - started, 1))
"""
    done = run_producer(env, code, timeout=60)
    assert done.stdout.startswith("raised"), done.stdout + done.stderr
    print(f"\nFIGURE broker_down_delay_raised: {done.stdout.strip()} s (publish_timeout=2)")
    record_property("broker_down_delay_raised_s", float(done.stdout.split()[-1]))
    # One bound across Celery's retries: publish_timeout plus their short pauses.
    assert float(done.stdout.split()[-1]) < 2 + 1.5


def test_a_message_over_10mb_fails_at_publish_with_a_clear_error(connect):
    with connect() as connection:
        queue = connection.SimpleQueue("big")
        with pytest.raises(MessageTooLargeError, match="10 MB"):
            queue.put({"blob": "x" * 11_000_000})
        queue.close()


def test_publishing_to_a_deleted_topic_recreates_it(connect, project, publisher_client):
    with connect() as connection:
        queue = connection.SimpleQueue("phoenix")
        queue.put({"n": 1})
        publisher_client.delete_topic(request={"topic": f"projects/{project}/topics/phoenix"})
        with pytest.raises(PublishError):
            connection.default_channel.connection.publisher.publish(
                f"projects/{project}/topics/phoenix", b"{}", {})
        queue.put({"n": 2})  # the channel notices the loss and re-creates the pair
        assert queue.get(timeout=10).payload == {"n": 2}
        queue.close()


def test_a_message_put_on_a_queue_arrives_on_its_subscription(connect, project, subscriber_client):
    with connect() as connection:  # the emulator at PUBSUB_EMULATOR_HOST, as the raw client
        queue = connection.SimpleQueue("arrives")
        queue.put({"n": 1}, headers={"token": "t1"})
        queue.close()
    messages = pull_all(subscriber_client, f"projects/{project}/subscriptions/arrives")
    assert len(messages) == 1
    envelope = wire.decode(messages[0].message.data)
    assert envelope["headers"]["token"] == "t1"
    assert json.loads(wire.body(envelope)) == {"n": 1}


def test_fast_mode_failures_are_logged_and_counted(connect, project, caplog):
    with connect(fast_publish=True, publish_timeout=2) as connection:
        publisher = connection.default_channel.connection.publisher
        publisher.publish(f"projects/{project}/topics/never-created", b"{}", {})
        assert publisher.flush() == 0
        assert publisher.failed == 1 and publisher.published == 0
    assert "Fast-mode publish failed; the message is lost" in caplog.text


def test_a_publish_while_pubsub_stops_answering_raises_publish_error_within_the_bound(private_emulator):
    project = "test-paused"
    with Connection(f"pubsub://{project}", transport_options={"rpc_timeout": 2}) as connection:
        queue = connection.SimpleQueue("paused")
        queue.put({"n": 1})
        private_emulator.pause()
        started = time.monotonic()
        with pytest.raises(PublishError) as caught:
            queue.put({"n": 2})
        elapsed = time.monotonic() - started
        private_emulator.resume()
        queue.close()
    # The publish's own error, not one from a probe made after it failed.
    assert type(caught.value) is PublishError and "rpc_timeout" in str(caught.value)
    assert elapsed < 2 + 1.5, elapsed


def test_a_new_connection_in_an_outage_shorter_than_the_publish_timeout_waits_and_publishes(
        private_emulator):
    # What a task's retry does (Celery rejects the task when the retry cannot be sent):
    # a fresh connection, after this process saw Pub/Sub fail, publishing with retry=True.
    import threading

    from kombu import Producer

    project = "test-outage"
    with Connection(f"pubsub://{project}", transport_options={"rpc_timeout": 1}) as connection:
        queue = connection.SimpleQueue("retries")
        queue.put({"n": 0})
        private_emulator.pause()
        with pytest.raises(PublishError):
            queue.put({"n": 1})  # this process now knows Pub/Sub is failing
        resume = threading.Timer(6.0, private_emulator.resume)  # longer than connect_timeout
        resume.start()
        started = time.monotonic()
        with Connection(f"pubsub://{project}", transport_options={"rpc_timeout": 20}) as fresh:
            Producer(fresh).publish({"n": 2}, routing_key="retries", retry=True, serializer="json")
        elapsed = time.monotonic() - started
        resume.join()
        got = sorted(queue.get(timeout=10).payload["n"] for _ in range(2))
        queue.close()
    assert 5 < elapsed < 20, elapsed
    assert got == [0, 2]


PRODUCE_FROM_8_THREADS_AND_EXIT = """
import os, threading
from kombu_pubsub.pubsub import convoy

def send(thread):
    for i in range(50):
        record.delay(f"t{thread}-{i}")

threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("REQUESTS", convoy.shared().requests, flush=True)
os._exit(0)  # only what Pub/Sub accepted survives
"""


def test_threads_delaying_at_once_share_requests_and_every_task_arrives_once(
        e2e_env, project, subscriber_client):
    done = run_producer(e2e_env, PRODUCE_FROM_8_THREADS_AND_EXIT)
    assert done.returncode == 0, done.stderr
    messages = pull_all(subscriber_client, f"projects/{project}/subscriptions/e2e")
    args = sorted(json.loads(message.message.data)["headers"]["argsrepr"] for message in messages)
    assert args == sorted(repr((f"t{thread}-{i}",)) for thread in range(8) for i in range(50))
    requests = int(done.stdout.split("REQUESTS")[1].split()[0])
    assert requests < 400  # some publishes shared a request
