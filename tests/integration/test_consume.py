"""Consuming: prefetch honoured, leases held, rejects reach Pub/Sub, purge empties, bad data buried."""

from __future__ import annotations

import threading
import time

import pytest
from kombu import Consumer, Queue

from tests.integration.conftest import pull_all, wait_until


def drain(connection, until, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        try:
            connection.drain_events(timeout=0.2)
        except TimeoutError:
            pass


def fill(connection, name: str, count: int) -> Queue:
    queue = Queue(name)
    producer = connection.Producer()
    for i in range(count):
        producer.publish({"i": i}, routing_key=name, declare=[queue], serializer="json")
    return queue


def test_never_more_unacked_deliveries_than_the_prefetch(connect):
    with connect() as connection:
        queue = fill(connection, "qos", 20)
        held = []
        with Consumer(connection, [queue], callbacks=[lambda body, m: held.append(m)], prefetch_count=3):
            drain(connection, lambda: False, timeout=2.0)
            assert len(held) == 3
            held[0].ack()
            drain(connection, lambda: len(held) >= 4, timeout=5.0)
            drain(connection, lambda: False, timeout=1.0)
            assert len(held) == 4
            for message in held[1:]:
                message.ack()
            drain(connection, lambda: len(held) >= 7, timeout=5.0)
            assert len(held) == 7


def test_reject_with_requeue_redelivers_the_same_message_without_a_copy(connect, project, subscriber_client):
    with connect() as connection:
        queue = fill(connection, "requeue", 1)
        seen = []
        with Consumer(connection, [queue], callbacks=[lambda body, m: seen.append(m)], prefetch_count=1):
            drain(connection, lambda: len(seen) == 1, timeout=5)
            seen[0].reject(requeue=True)
            drain(connection, lambda: len(seen) == 2, timeout=10)
            assert len(seen) == 2 and seen[1].payload == {"i": 0}
            seen[1].ack()
            time.sleep(0.5)
    assert pull_all(subscriber_client, f"projects/{project}/subscriptions/requeue") == []


def test_reject_without_requeue_moves_the_message_to_the_morgue(connect, project, subscriber_client):
    with connect() as connection:
        queue = fill(connection, "dropme", 1)
        seen = []
        with Consumer(connection, [queue], callbacks=[lambda body, m: seen.append(m)], prefetch_count=1):
            drain(connection, lambda: len(seen) == 1, timeout=5)
            seen[0].reject(requeue=False)
            drain(connection, lambda: False, timeout=1.5)
            assert len(seen) == 1
    buried = pull_all(subscriber_client, f"projects/{project}/subscriptions/morgue")
    assert len(buried) == 1
    assert buried[0].message.attributes["morgue_reason"] == "rejected without requeue"
    assert buried[0].message.attributes["morgue_queue"] == "dropme"
    assert pull_all(subscriber_client, f"projects/{project}/subscriptions/dropme") == []


def test_a_message_held_past_its_ack_deadline_is_not_redelivered(connect):
    with connect(ack_deadline=10) as holder, connect() as other:
        queue = fill(holder, "lease", 1)
        held, stolen = [], []
        with Consumer(holder, [queue], callbacks=[lambda b, m: held.append(m)], prefetch_count=1), \
                Consumer(other, [queue], callbacks=[lambda b, m: stolen.append(m)], prefetch_count=1):
            drain(holder, lambda: len(held) == 1, timeout=5)
            drain(other, lambda: bool(stolen), timeout=16)  # 1.6 ack deadlines
            assert stolen == []
            held[0].ack()


def test_closing_a_channel_releases_its_unacked_messages_at_once(connect):
    with connect() as first, connect() as second:
        queue = fill(first, "release", 5)
        held, taken = [], []
        consumer = Consumer(first, [queue], callbacks=[lambda b, m: held.append(m)], prefetch_count=5)
        consumer.consume()
        drain(first, lambda: len(held) == 5, timeout=5)
        first.release()  # warm shutdown: nothing acked, everything nacked
        started = time.monotonic()
        with Consumer(second, [queue], callbacks=[lambda b, m: (taken.append(m), m.ack())]):
            drain(second, lambda: len(taken) == 5, timeout=10)
        assert len(taken) == 5
        assert time.monotonic() - started < 10  # the ack deadline is 30 s


def test_a_worker_told_to_stop_releases_its_prefetch_and_drain_events_stops_waiting(connect):
    # What Celery's worker_shutting_down signal (SIGTERM) triggers: see Transport.stop_consuming_soon.
    with connect() as idle:
        with Consumer(idle, [Queue("stopping-idle")], callbacks=[lambda b, m: None]):
            drain(idle, lambda: False, timeout=0.5)
            # A drain_events waiting when the stop comes returns at once ...
            threading.Timer(0.5, idle.transport.stop_consuming_soon).start()
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                idle.drain_events(timeout=30)
            # ... and no later call waits its timeout out (Celery makes one more).
            for _ in range(3):
                with pytest.raises(TimeoutError):
                    idle.drain_events(timeout=30)
            assert time.monotonic() - started < 10

    with connect() as first, connect() as second:
        queue = fill(first, "stopping", 6)
        held, taken = [], []
        with Consumer(first, [queue], callbacks=[lambda b, m: held.append(m)], prefetch_count=2):
            drain(first, lambda: len(held) == 2, timeout=5)
            held[0].ack()  # room for one more: the puller takes it into the inbox
            assert wait_until(lambda: len(first.transport.engine.inbox) == 1, timeout=10)
            first.transport.stop_consuming_soon()
            with pytest.raises(TimeoutError):
                first.drain_events(timeout=1)
            assert len(held) == 2  # the buffered one was not delivered here ...
            # ... it and the 3 never pulled go to another consumer while this one still
            # holds its unacked message.
            with Consumer(second, [queue], callbacks=[lambda b, m: (taken.append(m.payload), m.ack())]):
                drain(second, lambda: len(taken) == 4, timeout=10)
            assert sorted(p["i"] for p in taken) == [2, 3, 4, 5]
            held[1].ack()


def test_purge_empties_the_queue_and_counts(connect):
    with connect() as connection:
        fill(connection, "purgeme", 25)
        channel = connection.default_channel
        assert channel.queue_purge("purgeme") == 25
        assert channel.queue_purge("purgeme") == 0


@pytest.mark.parametrize(("data", "reason"), [
    (b"not json at all", "not UTF-8 JSON"),
    (b"", "empty message data"),
    (b'{"hello": "world"}', "lacks the Kombu envelope"),
])
def test_undecodable_messages_go_to_the_morgue_with_their_reason(
        connect, project, publisher_client, subscriber_client, data, reason):
    with connect() as connection:
        queue = Queue("bad")
        queue(connection.default_channel).declare()
        publisher_client.publish(f"projects/{project}/topics/bad", data, origin="test").result()
        fill(connection, "bad", 1)
        good = []
        with Consumer(connection, [queue], callbacks=[lambda b, m: (good.append(b), m.ack())]):
            drain(connection, lambda: len(good) == 1, timeout=5)
            drain(connection, lambda: False, timeout=0.5)
    assert good == [{"i": 0}]
    buried = pull_all(subscriber_client, f"projects/{project}/subscriptions/morgue")
    assert len(buried) == 1
    assert reason in buried[0].message.attributes["morgue_reason"]
    assert buried[0].message.data == data
    assert pull_all(subscriber_client, f"projects/{project}/subscriptions/bad") == []


def test_a_consumer_that_raises_sends_the_message_to_the_morgue_and_keeps_consuming(
        connect, project, subscriber_client):
    with connect() as connection:
        queue = fill(connection, "raising", 2)
        seen = []

        def take(body, message):
            seen.append(body)
            if len(seen) == 1:
                raise ValueError("cannot take this one")
            message.ack()

        with Consumer(connection, [queue], callbacks=[take], prefetch_count=1):
            drain(connection, lambda: len(seen) == 2, timeout=10)
    buried = pull_all(subscriber_client, f"projects/{project}/subscriptions/morgue")
    assert [m.message.attributes["morgue_reason"] for m in buried] == [
        "the consumer raised ValueError: cannot take this one"]
    assert pull_all(subscriber_client, f"projects/{project}/subscriptions/raising") == []


def test_a_no_ack_consumer_that_raises_is_not_said_to_move_anything_to_the_morgue(connect, caplog):
    # Its message was acked on delivery: nothing is left to move, and the log says so.
    with connect() as connection:
        queue = fill(connection, "noack-raises", 1)

        def broken(body, message):
            raise RuntimeError("cannot take it")

        with Consumer(connection, [queue], callbacks=[broken], no_ack=True):
            drain(connection, lambda: "the message is gone" in caplog.text, timeout=10)
        morgue = connection.SimpleQueue("morgue")
        with pytest.raises(morgue.Empty):
            morgue.get(timeout=1)
        morgue.close()
    assert "the message is gone" in caplog.text
    assert "moving it to the morgue" not in caplog.text
