"""What Kombu expects of any broker, run against kombu_pubsub and Kombu's memory transport.

Each case runs twice: on ``pubsub://`` (the emulator) and on ``memory://``, the
reference: Kombu's in-process virtual transport, which implements every
behaviour here as RabbitMQ and Redis do for queues declared in one process. A
case that passes on memory and fails on pubsub is a difference from the
brokers Celery users know; its assertion message says which behaviour.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from typing import Any

import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue


@pytest.fixture(params=["pubsub", "memory"])
def broker(request: pytest.FixtureRequest) -> Iterator[Callable[[], Connection]]:
    """Factory of connections to the broker under test (each test has its own names)."""
    made: list[Connection] = []
    if request.param == "pubsub":
        project = request.getfixturevalue("project")
        url = f"pubsub://{project}"
    else:
        url = "memory://"

    def factory() -> Connection:
        connection = Connection(url)
        made.append(connection)
        return connection

    yield factory
    for connection in made:
        connection.release()


@pytest.fixture
def name() -> Callable[[str], str]:
    """Names of this test's own: memory:// keeps queues for the whole process."""
    suffix = uuid.uuid4().hex[:8]
    return lambda base: f"{base}-{suffix}"


def publish(channel: Any, exchange: Exchange, queues: list[Queue], routing_key: str | None = None,
            **kwargs: Any) -> None:
    producer = Producer(channel, exchange=exchange)
    producer.publish({"hello": "world"}, declare=list(queues), serializer="json",
                     routing_key=routing_key or "", **kwargs)


def consume_one(connection: Connection, queue: Queue, timeout: float = 1.0) -> list[Any]:
    """What one drain_events(timeout) brings from `queue` on the connection's default channel."""
    got: list[Any] = []

    def on_message(body: Any, message: Any) -> None:
        got.append((body, message.delivery_info.get("routing_key")))
        message.ack()

    with Consumer(connection, [queue], callbacks=[on_message], accept=["json"]):
        connection.drain_events(timeout=timeout)
    return got


def test_connect_close_and_connect_again(broker):
    connection = broker()
    assert connection.connect()
    connection.close()
    assert connection.connection is None
    assert connection.default_channel  # connects again
    assert connection.connection is not None


def test_publish_with_declare_then_consume_on_another_channel(broker, name):
    queue = Queue(name("plain"), routing_key=name("plain"))
    connection = broker()
    with connection.channel() as channel:
        publish(channel, queue.exchange, [queue], routing_key=queue.routing_key)
        assert consume_one(connection, queue) == [({"hello": "world"}, queue.routing_key)], \
            "a message published with declare=[queue] must reach a consumer of that queue"


def test_consuming_an_empty_queue_times_out(broker, name):
    queue = Queue(name("empty"))
    with pytest.raises(socket.timeout):
        consume_one(broker(), queue)


def test_direct_exchange_routes_by_key(broker, name):
    exchange = Exchange(name("direct"), type="direct")
    first = Queue(name("d1"), exchange, routing_key="d1")
    second = Queue(name("d2"), exchange, routing_key="d2")
    connection = broker()
    with connection.channel() as channel:
        publish(channel, exchange, [first, second], routing_key="d1")
        assert len(consume_one(connection, first)) == 1
        with pytest.raises(socket.timeout):
            consume_one(connection, second)


def test_fanout_exchange_reaches_every_bound_durable_queue(broker, name):
    exchange = Exchange(name("fanout"), type="fanout")
    first = Queue(name("f1"), exchange)
    second = Queue(name("f2"), exchange)
    connection = broker()
    with connection.channel() as channel:
        publish(channel, exchange, [first, second])
        for queue in (first, second):
            assert len(consume_one(connection, queue)) == 1, \
                f"fanout: one publish must reach durable queue {queue.name} bound on another channel"


def test_fanout_reaches_a_queue_bound_by_another_connection(broker, name):
    exchange = Exchange(name("fanout"), type="fanout")
    queue = Queue(name("bound-elsewhere"), exchange)
    listener, sender = broker(), broker()
    with listener.channel() as channel:
        queue.bind(channel).declare()
    with sender.channel() as channel:
        Producer(channel, exchange=exchange).publish({"hello": "world"}, declare=[exchange],
                                                    serializer="json")
    assert len(consume_one(listener, queue)) == 1


def test_topic_exchange_routes_by_pattern(broker, name):
    exchange = Exchange(name("topic"), type="topic")
    star = Queue(name("t1"), exchange, routing_key="t.*")
    also_star = Queue(name("t2"), exchange, routing_key="t.*")
    exact = Queue(name("t3"), exchange, routing_key="t")
    connection = broker()
    with connection.channel() as channel:
        publish(channel, exchange, [star, also_star, exact], routing_key="t.1")
        assert len(consume_one(connection, star)) == 1
        assert len(consume_one(connection, also_star)) == 1
        with pytest.raises(socket.timeout):
            consume_one(connection, exact)


def test_simple_queue_keeps_body_and_headers(broker, name):
    with closing(broker().SimpleQueue(name("simple"))) as queue:
        queue.put({"Hello": "World"}, headers={"k1": "v1"})
        message = queue.get(timeout=1)
        message.ack()
    assert (message.payload, message.content_type, message.content_encoding, message.headers) == (
        {"Hello": "World"}, "application/json", "utf-8", {"k1": "v1"})


def test_simple_buffer_is_consumed_without_acks(broker, name):
    with closing(broker().SimpleBuffer(name("buffer"))) as buffer:
        buffer.put({"Hello": "World"})
        message = buffer.get(timeout=1)
        assert message.payload == {"Hello": "World"}
        with pytest.raises(buffer.Empty):
            buffer.get(timeout=0.5)


def test_a_requeued_message_comes_back(broker, name):
    with closing(broker().SimpleQueue(name("requeue"))) as queue:
        queue.put({"n": 1})
        queue.get(timeout=1).requeue()
        again = queue.get(timeout=2)
        again.ack()
    assert again.payload == {"n": 1}
