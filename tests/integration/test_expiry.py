"""Expiry on the emulator: a message past its expiration or its queue's TTL goes to the morgue,
never to a consumer; a header JSON cannot encode fails the publish with Kombu's EncodeError."""

from __future__ import annotations

import datetime
import time

import pytest
from google.api_core import exceptions as gexc
from kombu import Consumer, Queue
from kombu.exceptions import EncodeError

from kombu_pubsub.ops import metrics
from tests.integration.conftest import pull_all, wait_until


def consume(connection, queue: Queue, until, timeout: float = 10.0) -> list:
    """The bodies a consumer of `queue` receives (acked) until `until(bodies)` or `timeout`."""
    bodies: list = []

    def take(body, message) -> None:
        bodies.append(body)
        message.ack()

    with Consumer(connection, [queue], callbacks=[take], prefetch_count=10):
        deadline = time.monotonic() + timeout
        while not until(bodies) and time.monotonic() < deadline:
            try:
                connection.drain_events(timeout=0.2)
            except TimeoutError:
                pass
    return bodies


def morgue(subscriber_client, project: str) -> list:
    """What reached the morgue: wait for the first entry, then take all."""
    path = f"projects/{project}/subscriptions/morgue"
    found: list = []

    def take() -> list:
        try:
            found.extend(pull_all(subscriber_client, path))
        except gexc.NotFound:  # the first burial creates the morgue
            pass
        return found

    wait_until(take, timeout=10)
    return found


def exported(name: str) -> float:
    """A counter's value as the Prometheus collector exports it (summed over open connections)."""
    families = {family.name: family for family in metrics.Collector().collect()}
    return families[name].samples[0].value


def test_an_expired_message_goes_to_the_morgue_and_a_fresh_one_is_delivered(connect, project,
                                                                           subscriber_client):
    with connect() as connection:
        queue = Queue("expiring")
        producer = connection.Producer()
        producer.publish({"n": "stale"}, routing_key="expiring", declare=[queue], expiration=1)
        producer.publish({"n": "fresh"}, routing_key="expiring", expiration=60)
        time.sleep(1.5)  # the first one's expiration passes while nobody consumes
        bodies = consume(connection, queue, until=lambda got: got)
        time.sleep(0.5)  # nothing else comes
        assert bodies == [{"n": "fresh"}]
        [entry] = morgue(subscriber_client, project)
        assert entry.message.attributes["morgue_reason"].startswith("expired: 1.")
        assert entry.message.attributes["morgue_reason"].endswith("s old, over its expiration of 1s")
        assert entry.message.attributes["morgue_queue"] == "expiring"
        assert connection.transport.stats.counts()["expired"] == 1
        assert exported("kombu_pubsub_expired") == 1


@pytest.mark.parametrize("declared_by", ["consumer", "producer"])
def test_a_queue_message_ttl_expires_messages_whoever_declared_it(declared_by, connect, project,
                                                                  subscriber_client):
    with_ttl, plain = Queue("ttl", message_ttl=1), Queue("ttl")
    with connect() as producer_connection, connect() as consumer_connection:
        producer = producer_connection.Producer()
        producer.publish({"n": 1}, routing_key="ttl",
                         declare=[with_ttl if declared_by == "producer" else plain])
        time.sleep(1.5)
        queue = with_ttl if declared_by == "consumer" else plain
        assert consume(consumer_connection, queue, until=lambda got: False, timeout=2) == []
    [entry] = morgue(subscriber_client, project)
    assert entry.message.attributes["morgue_reason"].endswith("s old, over its queue message TTL of 1s")


def test_basic_get_passes_over_an_expired_message_to_the_fresh_one_behind_it(connect, project,
                                                                             subscriber_client):
    with connect() as producer_connection, connect() as connection:
        producer = producer_connection.Producer()  # declares no TTL: the getting channel knows it
        producer.publish({"n": "stale"}, routing_key="getting", declare=[Queue("getting")])
        time.sleep(1.5)
        producer.publish({"n": "fresh"}, routing_key="getting")
        bound = Queue("getting", message_ttl=1)(connection.default_channel)
        bound.declare()
        message = wait_until(lambda: bound.get(), timeout=10)
        assert message.payload == {"n": "fresh"}
        message.ack()
        assert bound.get() is None
    [entry] = morgue(subscriber_client, project)
    assert entry.message.attributes["morgue_reason"].endswith("s old, over its queue message TTL of 1s")


def test_a_countdown_that_would_run_after_its_deadline_goes_to_the_morgue_at_once(connect, project,
                                                                                  subscriber_client):
    eta = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=60)
    with connect() as connection:
        queue = Queue("later")
        connection.Producer().publish({"n": 1}, routing_key="later", declare=[queue], expiration=5,
                                      headers={"eta": eta.isoformat()})
        assert consume(connection, queue, until=lambda got: False, timeout=1.5) == []
        [entry] = morgue(subscriber_client, project)
    assert entry.message.attributes["morgue_reason"].endswith(
        "s old at its ETA, over its expiration of 5s")


def test_a_header_json_cannot_encode_fails_the_publish_naming_it(connect, project, subscriber_client):
    with connect() as connection:
        queue = Queue("headers")
        producer = connection.Producer()
        with pytest.raises(EncodeError, match="header 'bad' cannot be encoded as JSON"):
            producer.publish({"x": 1}, routing_key="headers", declare=[queue],
                             headers={"bad": object()})
        assert pull_all(subscriber_client, f"projects/{project}/subscriptions/headers") == []


def test_a_celery_task_sent_with_expires_goes_to_the_morgue_once_expired(connect, project,
                                                                        subscriber_client):
    # Celery turns apply_async(expires=…) into Kombu's expiration property as well.
    from celery import Celery

    app = Celery("expiring", broker=f"pubsub://{project}")
    try:
        with connect() as connection:
            queue = Queue("celery-expiring")
            queue(connection.default_channel).declare()
            app.send_task("tasks.never_run", queue="celery-expiring", expires=1)
            time.sleep(1.5)
            assert consume(connection, queue, until=lambda got: False, timeout=1.5) == []
            [entry] = morgue(subscriber_client, project)
    finally:
        app.close()
    assert entry.message.attributes["task"] == "tasks.never_run"
    assert entry.message.attributes["morgue_reason"].endswith("s old, over its expiration of 1s")
