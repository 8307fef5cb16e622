"""Queues are topic + subscription pairs, created on demand, race-safe, or refused clearly."""

from __future__ import annotations

import multiprocessing

import pytest
from kombu import Exchange, Queue

from kombu_pubsub import ResourceMissingError


def test_declaring_a_queue_creates_topic_and_subscription_with_its_name(
        connect, project, publisher_client, subscriber_client):
    with connect() as connection:
        Queue("work", Exchange("work", "direct"), "work")(connection.default_channel).declare()

    topic = publisher_client.get_topic(request={"topic": f"projects/{project}/topics/work"})
    sub = subscriber_client.get_subscription(
        request={"subscription": f"projects/{project}/subscriptions/work"})
    assert sub.topic == topic.name
    assert sub.ack_deadline_seconds == 30
    assert sub.message_retention_duration.total_seconds() == 7 * 86400
    assert "expiration_policy" in sub and not sub.expiration_policy.ttl  # never expires
    # Poison messages end in the morgue, whose subscription exists so nothing is dropped.
    assert sub.dead_letter_policy.dead_letter_topic == f"projects/{project}/topics/morgue"
    assert sub.dead_letter_policy.max_delivery_attempts == 10
    subscriber_client.get_subscription(request={"subscription": f"projects/{project}/subscriptions/morgue"})


def test_retention_and_expiry_are_configurable(connect, project, subscriber_client):
    with connect(message_retention="86400", subscription_ttl="172800", ack_deadline=45) as connection:
        Queue("tuned")(connection.default_channel).declare()
    sub = subscriber_client.get_subscription(
        request={"subscription": f"projects/{project}/subscriptions/tuned"})
    assert sub.message_retention_duration.total_seconds() == 86400
    assert sub.expiration_policy.ttl.total_seconds() == 172800
    assert sub.ack_deadline_seconds == 45


def test_names_pubsub_cannot_take_are_mapped(connect, project, subscriber_client):
    with connect() as connection:
        Queue("1@b")(connection.default_channel).declare()
    sub = subscriber_client.get_subscription(
        request={"subscription": f"projects/{project}/subscriptions/q~1%40b"})
    assert sub.topic == f"projects/{project}/topics/q~1%40b"


def _declare(project: str, host: str, barrier) -> str:
    import os

    os.environ["PUBSUB_EMULATOR_HOST"] = host
    from kombu import Connection

    import kombu_pubsub  # noqa: F401
    barrier.wait(30)
    with Connection(f"pubsub://{project}") as connection:
        Queue("raced")(connection.default_channel).declare()
    return "ok"


def test_eight_processes_racing_to_declare_one_queue_all_succeed(project, emulator_host, subscriber_client):
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(8)
        with context.Pool(8) as pool:
            results = pool.starmap(_declare, [(project, emulator_host, barrier)] * 8, chunksize=1)
    assert results == ["ok"] * 8
    subs = list(subscriber_client.list_subscriptions(request={"project": f"projects/{project}"}))
    assert sorted(s.name for s in subs) == [f"projects/{project}/subscriptions/morgue",
                                            f"projects/{project}/subscriptions/raced"]


def test_create_missing_off_names_the_missing_resource_and_the_fix(connect, project):
    with connect(create_missing=False) as connection:
        with pytest.raises(ResourceMissingError) as caught:
            Queue("absent")(connection.default_channel).declare()
    message = str(caught.value)
    assert f"projects/{project}/topics/absent" in message
    assert "gcloud pubsub topics create absent" in message


def test_create_missing_off_uses_what_exists(connect, project, publisher_client, subscriber_client):
    publisher_client.create_topic(request={"name": f"projects/{project}/topics/ready"})
    subscriber_client.create_subscription(request={
        "name": f"projects/{project}/subscriptions/ready", "topic": f"projects/{project}/topics/ready"})
    with connect(create_missing=False) as connection:
        queue = connection.SimpleQueue("ready")
        queue.put({"x": 1})
        assert queue.get(timeout=10).payload == {"x": 1}
        queue.close()


def test_a_durable_queue_bound_to_a_fanout_lives_on_the_exchange_topic(
        connect, project, subscriber_client):
    with connect() as connection:
        Queue("listens", Exchange("news", "fanout"))(connection.default_channel).declare()
    sub = subscriber_client.get_subscription(
        request={"subscription": f"projects/{project}/subscriptions/listens"})
    assert sub.topic == f"projects/{project}/topics/news"


def test_a_queue_bound_to_a_fanout_after_it_existed_keeps_what_waits_and_gets_the_fanout(
        connect, caplog):
    import logging

    from kombu import Consumer, Producer

    with connect() as connection:
        Producer(connection.default_channel).publish({"n": 0}, routing_key="late",
                                                     declare=[Queue("late")], serializer="json")
    exchange = Exchange("bulletin", "fanout")
    with connect() as connection:
        with caplog.at_level(logging.WARNING, logger="kombu_pubsub.channel"):
            Producer(connection.default_channel, exchange=exchange).publish(
                {"n": 1}, declare=[Queue("late", exchange)], serializer="json")
        assert "existed before the binding" in caplog.text
        got = []
        with Consumer(connection, [Queue("late", exchange)], accept=["json"],
                      callbacks=[lambda body, message: (got.append(body["n"]), message.ack())]):
            for _ in range(20):
                if len(got) == 2:
                    break
                try:
                    connection.drain_events(timeout=0.5)
                except TimeoutError:
                    pass
    assert sorted(got) == [0, 1]
