"""Priorities on the emulator: a queue with a max priority is one topic + subscription per
step, and higher steps reach the consumer first; a queue without priorities is unchanged."""

from __future__ import annotations

import json
import time
from contextlib import closing

import pytest
from kombu import Consumer, Exchange, Producer, Queue

from kombu_pubsub import priorities, wire
from kombu_pubsub.errors import QueueMismatchError
from tests.integration.conftest import TaskLog, pull_all, run_producer, wait_until

STEPS = priorities.Steps((0, 3, 6, 9))
#: The steps' first pulls race when consuming starts: each lower step may hand over a few
#: messages (its first pull's, 1 + LOOKAHEAD) before the order settles.
STARTUP_RACE = 12


def mixed(count: int) -> list[int]:
    """`count` priorities 0–9 in an order that mixes them (7 is prime to 10)."""
    return [(index * 7) % 10 for index in range(count)]


def publish(connection, queue: Queue, values: list[int], declare: bool = True) -> None:
    producer = Producer(connection.default_channel)
    for index, priority in enumerate(values):
        producer.publish({"index": index, "priority": priority}, routing_key=queue.name,
                         declare=[queue] if declare else [], priority=priority, serializer="json")


def consume(connection, queue: Queue, count: int, prefetch: int = 1, timeout: float = 60) -> list[dict]:
    got: list[dict] = []

    def on_message(body, message):
        got.append(body)
        message.ack()

    channel = connection.channel()
    channel.basic_qos(0, prefetch, False)
    with Consumer(channel, [queue], callbacks=[on_message], accept=["json"]):
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            try:
                connection.drain_events(timeout=1)
            except TimeoutError:
                pass
    channel.close()
    return got


def out_of_order(steps: list[int]) -> int:
    """How many were handed over while a message of a higher step (published before any was
    consumed) still waited."""
    return sum(1 for index, step in enumerate(steps) if step < max(steps[index:]))


def subscriptions_on(publisher_client, project: str, topic: str) -> list[str]:
    return sorted(path.rsplit("/", 1)[-1] for path in publisher_client.list_topic_subscriptions(
        request={"topic": f"projects/{project}/topics/{topic}"}))


def visible(subscriber_client, path: str) -> bool:
    """True once a message waits on the subscription (it is given back at once)."""
    response = subscriber_client.pull(request={"subscription": path, "max_messages": 1,
                                               "return_immediately": True}, timeout=10)
    ack_ids = [item.ack_id for item in response.received_messages]
    if ack_ids:
        subscriber_client.modify_ack_deadline(request={"subscription": path, "ack_ids": ack_ids,
                                                       "ack_deadline_seconds": 0})
    return bool(ack_ids)


def test_higher_priorities_reach_the_consumer_first(connect, project, publisher_client):
    queue = Queue("jobs", routing_key="jobs", max_priority=9)
    values = mixed(60)
    with connect() as connection:
        publish(connection, queue, values)
        got = consume(connection, queue, len(values))
    assert sorted(body["index"] for body in got) == list(range(len(values)))
    steps = [STEPS.step_of(body["priority"]) for body in got]
    # Pulls of the four steps start together: the first arrivals may come before a
    # higher step's, once; after that the highest waiting step goes first.
    assert out_of_order(steps) <= STARTUP_RACE, steps
    for step in ["jobs", "jobs~p3", "jobs~p6", "jobs~p9"]:  # a topic + subscription per step
        assert subscriptions_on(publisher_client, project, step) == [step]


def test_a_queue_without_priorities_is_one_subscription_and_takes_every_priority(
        connect, project, publisher_client):
    queue = Queue("plain", routing_key="plain")
    values = mixed(20)
    with connect() as connection:
        publish(connection, queue, values)
        got = consume(connection, queue, len(values), prefetch=0)
    assert sorted(body["index"] for body in got) == list(range(len(values)))
    assert subscriptions_on(publisher_client, project, "plain") == ["plain"]


def test_get_takes_the_highest_step_first(connect, project, subscriber_client):
    # Kombu's transport-agnostic priority test, with its ascending convention.
    with connect() as connection, closing(connection.SimpleQueue(
            "simple", queue_opts={"max_priority": 10})) as queue:
        for message, priority in [("first", 1), ("second", 7), ("third", 1)]:
            queue.put({"msg": message}, priority=priority)
        assert wait_until(lambda: visible(subscriber_client, f"projects/{project}/subscriptions/simple~p6"),
                          timeout=10)
        received = []
        for _ in range(3):
            message = queue.get(timeout=5)
            message.ack()
            received.append(message.payload["msg"])
    assert received == ["second", "first", "third"]


def test_a_producer_that_never_declared_the_queue_still_routes_by_priority(
        connect, project, subscriber_client):
    queue = Queue("undeclared", routing_key="undeclared", max_priority=9)
    with connect() as worker, connect() as producer:
        queue(worker.default_channel).declare()
        publish(producer, queue, [0, 9, 4], declare=False)
    for subscription, priority in [("undeclared~p9", 9), ("undeclared~p3", 4), ("undeclared", 0)]:
        path = f"projects/{project}/subscriptions/{subscription}"
        got = wait_until(lambda path=path: pull_all(subscriber_client, path), timeout=10)
        assert [json.loads(wire.body(json.loads(item.message.data)))["priority"] for item in got] == \
            [priority], subscription


def test_a_connection_declaring_the_queue_without_priorities_uses_its_steps(
        connect, project, subscriber_client):
    with connect() as first:
        Queue("shared", max_priority=9)(first.default_channel).declare()
    with connect() as second:
        plain = Queue("shared", routing_key="shared")  # a worker without task_queue_max_priority
        publish(second, plain, [1, 8, 5])
        for step in ["shared", "shared~p3", "shared~p6"]:
            path = f"projects/{project}/subscriptions/{step}"
            assert wait_until(lambda path=path: visible(subscriber_client, path), timeout=10)
        with closing(second.SimpleQueue(plain)) as simple:
            received = []
            for _ in range(3):
                message = simple.get(timeout=5)
                message.ack()
                received.append(message.payload["priority"])
    assert received == [8, 5, 1]


def test_purge_clears_every_step(connect, project, subscriber_client):
    queue = Queue("purged", routing_key="purged", max_priority=9)
    with connect() as connection:
        publish(connection, queue, mixed(12))
        assert queue(connection.default_channel).purge() == 12
    for subscription in ["purged", "purged~p3", "purged~p6", "purged~p9"]:
        assert pull_all(subscriber_client, f"projects/{project}/subscriptions/{subscription}") == []


def test_delete_removes_every_step(connect, project, subscriber_client):
    queue = Queue("deleted", Exchange("deleted"), "deleted", max_priority=9)
    with connect() as connection:
        bound = queue(connection.default_channel)
        bound.declare()
        bound.delete()
    left = [sub.name.rsplit("/", 1)[-1] for sub in subscriber_client.list_subscriptions(
        request={"project": f"projects/{project}"})]
    assert left == ["morgue"]


def test_a_queue_that_exists_without_priorities_cannot_gain_them(connect):
    with connect() as connection:
        Queue("grown")(connection.default_channel).declare()
    with connect() as connection, pytest.raises(QueueMismatchError, match="celery pubsub delete grown"):
        Queue("grown", max_priority=9)(connection.default_channel).declare()


def test_a_worker_runs_higher_priority_tasks_first(e2e_env, start_worker, task_log: TaskLog):
    """100 tasks of mixed priorities published first, then one worker (-P solo, prefetch 1)."""
    env = dict(e2e_env, E2E_MAX_PRIORITY="9", E2E_ACKS_LATE="0")
    code = ("for index, priority in enumerate([(i * 7) % 10 for i in range(100)]):\n"
            "    record.apply_async((f'{index}-{priority}',), priority=priority)\n")
    result = run_producer(env, code)
    assert result.returncode == 0, result.stderr
    start_worker("-P", "solo", E2E_MAX_PRIORITY="9", E2E_ACKS_LATE="0")
    started = task_log.wait_for("start", 100, timeout=120)
    assert len(set(started)) == 100
    steps = [STEPS.step_of(int(token.split("-")[1])) for token in started]
    assert out_of_order(steps) <= STARTUP_RACE, steps
