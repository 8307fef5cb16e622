"""What Kombu expects of any broker, run against kombu_pubsub and two references: Redis and memory.

Each case runs three times: on ``pubsub://`` (the emulator), on ``redis://`` (a
redis-server of the session's own: the broker Celery users compare against) and
on ``memory://`` (Kombu's in-process virtual transport). The cases follow Kombu's
transport-agnostic integration classes (``t/integration/common.py``: basic
functionality, exchange types, time to live, priority, failover) plus the
message life cycle Celery relies on (requeue, reject, unacked at close).

Where a system behaves differently on purpose or by design, the case states
that system's outcome in a table at the top (``PRIORITY_ORDER``, ``HONOURS`` …)
with the reason, and records what it observed (``record_property("observed",
…)``); ``python -m tests.conformance_table`` turns one run into the table the
docs show. A case that fails is a difference nobody wrote down.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue

from tests.emulator import free_port

SYSTEMS = ("pubsub", "redis", "memory")

#: The priorities a consumer (prefetch 1) receives, for PRIORITIES published in that order
#: to a queue declared with max_priority=10.
PRIORITIES = (3, 9, 0, 6, 3)
PRIORITY_ORDER = {
    # A higher number first, in steps (0, 3, 6, 9), as on RabbitMQ (kombu_pubsub/priorities.py).
    "pubsub": [9, 6, 3, 3, 0],
    # Kombu's Redis transport keeps one list per step of `priority_steps` (0, 3, 6, 9): a
    # priority goes to the highest step not above it (Channel.priority), and consumers pop
    # the lists in step order (Channel._get, the BRPOP keys): 0 is the highest priority.
    "redis": [0, 3, 3, 6, 9],
    # Kombu's memory transport has no priorities: first in, first out.
    "memory": [3, 9, 0, 6, 3],
}

#: Whether each system applies a queue or message argument; the cases below measure it.
HONOURS = {
    # Per-message `expiration` (Celery's apply_async(expires=…) sets it too). kombu_pubsub
    # checks it when a message is consumed and moves an expired one to the morgue; Kombu's
    # Redis and memory transports ignore it: the message is delivered however old.
    "expiration": {"pubsub": True, "redis": False, "memory": False},
    # Queue(message_ttl=…) (x-message-ttl): as `expiration`, for every message of the queue.
    "message_ttl": {"pubsub": True, "redis": False, "memory": False},
    # Queue(expires=…) (x-expires): Kombu's Redis transport sets a TTL on the queue's lists,
    # renewed by activity, so an idle queue disappears with its messages. A Pub/Sub
    # subscription's expiration is counted in days (subscription_ttl, temporary_ttl), so
    # kombu_pubsub keeps the queue; memory ignores it.
    "expires": {"pubsub": False, "redis": True, "memory": False},
    # A fanout to a queue no consumer listens on at publish time. Kombu's Redis transport
    # sends fanout with Redis PUBLISH: only queues whose consumer is subscribed at that
    # moment get a copy, the others never see it. Pub/Sub keeps it in the queue's
    # subscription; memory keeps it in the queue.
    "fanout_to_idle_queue": {"pubsub": True, "redis": False, "memory": True},
    # Unacked messages when their consumer's connection closes. kombu_pubsub releases its
    # leases (the messages are redelivered at once); Kombu's Redis transport restores
    # them from its unacked hash; Kombu's memory transport drops them (do_restore = False).
    "unacked_at_close": {"pubsub": True, "redis": True, "memory": False},
}


@dataclass
class Broker:
    """Factory of connections to the broker under test (each test has its own names)."""

    system: str
    url: str
    #: A URL of this system on which nothing listens; None where nothing can be unreachable.
    unreachable: str | None
    #: `url` naming its server in full, as an alternate after `unreachable` must: Kombu fills
    #: what an alternate leaves out (the port) from the URL before it.
    reachable: str | None
    made: list[Connection] = field(default_factory=list)

    def __call__(self, url: str | None = None) -> Connection:
        connection = Connection(url or self.url)
        self.made.append(connection)
        return connection


@pytest.fixture(params=SYSTEMS)
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    dead = f"127.0.0.1:{free_port()}"
    if request.param == "pubsub":
        project = request.getfixturevalue("project")
        host = request.getfixturevalue("emulator_host")
        made = Broker("pubsub", f"pubsub://{project}", f"pubsub://{dead}/{project}",
                      f"pubsub://{host}/{project}")
    elif request.param == "redis":
        url = request.getfixturevalue("redis_server").url
        made = Broker("redis", url, f"redis://{dead}/0", url)
    else:
        made = Broker("memory", "memory://", None, None)
    yield made
    for connection in made.made:
        connection.release()


@pytest.fixture
def name() -> Callable[[str], str]:
    """Names of this test's own: memory:// and the session's redis-server keep queues."""
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


def delivered(connection: Connection, queue: Queue, timeout: float = 1.0) -> bool:
    """Whether a consumer of `queue` receives a message within `timeout`."""
    try:
        return bool(consume_one(connection, queue, timeout))
    except TimeoutError:
        return False


def needs_endpoint(broker: Broker) -> str:
    if broker.unreachable is None:
        pytest.skip(f"{broker.system}:// runs in this process: there is no server to be unreachable")
    return broker.unreachable


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


def test_fanout_exchange_reaches_every_bound_durable_queue(broker, name, record_property):
    exchange = Exchange(name("fanout"), type="fanout")
    first = Queue(name("f1"), exchange)
    second = Queue(name("f2"), exchange)
    connection = broker()
    with connection.channel() as channel:
        publish(channel, exchange, [first, second])
        got = [delivered(connection, queue) for queue in (first, second)]
    record_property("observed", {(True, True): "kept for both queues",
                                 (False, False): "lost for both queues"}.get(tuple(got), str(got)))
    expected = HONOURS["fanout_to_idle_queue"][broker.system]
    assert got == [expected, expected], \
        "fanout to durable queues no consumer listens on yet: see HONOURS['fanout_to_idle_queue']"


def test_fanout_reaches_a_queue_bound_by_another_connection(broker, name, record_property):
    exchange = Exchange(name("fanout"), type="fanout")
    queue = Queue(name("bound-elsewhere"), exchange)
    listener, sender = broker(), broker()
    with listener.channel() as channel:
        queue.bind(channel).declare()
    with sender.channel() as channel:
        Producer(channel, exchange=exchange).publish({"hello": "world"}, declare=[exchange],
                                                    serializer="json")
    observed = "kept" if delivered(listener, queue) else "lost"
    record_property("observed", observed)
    assert observed == ("kept" if HONOURS["fanout_to_idle_queue"][broker.system] else "lost")


def test_fanout_reaches_a_consumer_listening_on_another_connection(broker, name):
    """As Celery's remote control (pidbox) and events use fanout: the consumer is listening."""
    exchange = Exchange(name("fanout"), type="fanout")
    queue = Queue(name("listening"), exchange, auto_delete=True)
    listener, sender = broker(), broker()
    got: list[Any] = []

    def on_message(body: Any, message: Any) -> None:
        got.append(body)
        message.ack()

    with Consumer(listener, [queue], callbacks=[on_message], accept=["json"]):
        for _ in range(3):  # listening once a drain times out (Redis's first handles SUBSCRIBE)
            try:
                listener.drain_events(timeout=0.5)
            except TimeoutError:
                break
        assert got == []
        with sender.channel() as channel:
            Producer(channel, exchange=exchange).publish({"hello": "world"}, declare=[exchange],
                                                        serializer="json")
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            try:
                listener.drain_events(timeout=1)
            except TimeoutError:
                pass
    assert got == [{"hello": "world"}]


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


def test_a_rejected_message_does_not_come_back(broker, name):
    with closing(broker().SimpleQueue(name("reject"))) as queue:
        queue.put({"n": 1})
        queue.get(timeout=1).reject()
        with pytest.raises(queue.Empty):
            queue.get(timeout=1)


def test_an_unacked_message_comes_back_when_its_connection_closes(broker, name, record_property):
    queue_name = name("unacked")
    first = broker()
    queue = first.SimpleQueue(queue_name)
    queue.put({"n": 1})
    assert queue.get(timeout=1).payload == {"n": 1}  # not acked
    first.release()
    with closing(broker().SimpleQueue(queue_name)) as again:
        try:
            message = again.get(timeout=5)
            message.ack()
            came_back = message.payload == {"n": 1}
        except again.Empty:
            came_back = False
    observed = "redelivered" if came_back else "lost"
    record_property("observed", observed)
    assert observed == ("redelivered" if HONOURS["unacked_at_close"][broker.system] else "lost")


def test_priorities_order_what_a_consumer_receives(broker, name, record_property):
    queue = Queue(name("priority"), max_priority=10)
    connection = broker()
    producer = Producer(connection.default_channel)
    for index, priority in enumerate(PRIORITIES):
        producer.publish({"index": index, "priority": priority}, routing_key=queue.name,
                         declare=[queue], priority=priority, serializer="json")
    got: list[dict] = []

    def on_message(body: Any, message: Any) -> None:
        got.append(body)
        message.ack()

    channel = connection.channel()
    channel.basic_qos(0, 1, False)
    with Consumer(channel, [queue], callbacks=[on_message], accept=["json"]):
        deadline = time.monotonic() + 30
        while len(got) < len(PRIORITIES) and time.monotonic() < deadline:
            try:
                connection.drain_events(timeout=1)
            except TimeoutError:
                pass
    order = [body["priority"] for body in got]
    received, sent = (" ".join(map(str, values)) for values in (order, PRIORITIES))
    record_property("observed", f"{received} (sent {sent})")
    assert order == PRIORITY_ORDER[broker.system]
    ties = [body["index"] for body in got if body["priority"] == 3]
    assert ties == sorted(ties), "messages of one priority keep their publish order"


@pytest.mark.parametrize("how", ["expiration", "message_ttl"])
def test_a_message_past_its_time_to_live_is_not_delivered(broker, name, how, record_property):
    """Kombu's BaseTimeToLive, by message (`expiration`) and by queue (`message_ttl`)."""
    queue = Queue(name("ttl"), message_ttl=1) if how == "message_ttl" else Queue(name("ttl"))
    connection = broker()
    Producer(connection.default_channel).publish(
        {"hello": "world"}, routing_key=queue.name, declare=[queue], serializer="json",
        **({"expiration": 1} if how == "expiration" else {}))
    time.sleep(1.5)  # the time to live passes while nobody consumes
    observed = "delivered" if delivered(connection, queue, timeout=2) else "not delivered"
    record_property("observed", observed)
    assert observed == ("not delivered" if HONOURS[how][broker.system] else "delivered")


def test_an_idle_queue_past_its_expires_is_deleted_with_its_messages(broker, name, record_property):
    queue = Queue(name("expires"), expires=1)
    with broker() as connection:
        Producer(connection.default_channel).publish(
            {"hello": "world"}, routing_key=queue.name, declare=[queue], serializer="json")
    time.sleep(2)  # one second idle, and some
    observed = "kept" if delivered(broker(), queue, timeout=2) else "deleted"
    record_property("observed", observed)
    assert observed == ("deleted" if HONOURS["expires"][broker.system] else "kept")


def test_connecting_to_a_server_that_does_not_listen_fails(broker):
    """Kombu's test_failed_connect: the error is one of the transport's connection_errors."""
    connection = broker(needs_endpoint(broker))
    with pytest.raises(connection.connection_errors):
        connection.connect()


def test_alternate_urls_fail_over_past_a_server_that_does_not_listen(broker, name):
    """Kombu's BaseFailover: ``URL;URL`` moves on to the next alternate."""
    connection = broker(f"{needs_endpoint(broker)};{broker.reachable}")
    connection.ensure_connection(max_retries=3)
    with closing(connection.SimpleQueue(name("failover"))) as queue:
        queue.put({"n": 1})
        message = queue.get(timeout=10)
        message.ack()
    assert message.payload == {"n": 1}
