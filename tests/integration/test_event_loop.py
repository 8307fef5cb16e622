"""Kombu's asynchronous interface, as Celery's event loop uses it: a hub polls the
transport's file descriptor, messages arrive through on_readable, acks may come from
other threads, and the prefetch window holds."""

from __future__ import annotations

import threading
import time

import pytest
from kombu import Consumer, Queue
from kombu.asynchronous import Hub


def spin(hub: Hub, until, timeout: float) -> bool:
    """Turn the hub until `until()` is true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    loop = hub.create_loop()
    while not until() and time.monotonic() < deadline:
        next(loop)
    return bool(until())


@pytest.fixture
def hub():
    hub = Hub()
    yield hub
    hub.close()


def test_messages_arrive_through_the_hub_and_acks_from_another_thread_free_the_window(connect, hub):
    with connect() as connection:
        queue = Queue("through-the-hub")
        producer = connection.Producer()
        for i in range(5):
            producer.publish({"i": i}, routing_key=queue.name, declare=[queue], serializer="json")
        received = []
        with Consumer(connection, [queue], callbacks=[lambda body, m: received.append(m)],
                      prefetch_count=2):
            connection.register_with_event_loop(hub)
            assert spin(hub, lambda: len(received) == 2, timeout=10)
            assert not spin(hub, lambda: len(received) > 2, timeout=1.0)  # the window is full
            acker = threading.Thread(target=lambda: [m.ack() for m in received[:2]])
            acker.start()
            acker.join(5)
            assert spin(hub, lambda: len(received) == 4, timeout=10)
            for message in received[2:]:
                message.ack()
            assert spin(hub, lambda: len(received) == 5, timeout=10)
            received[4].ack()
        assert sorted(m.payload["i"] for m in received) == [0, 1, 2, 3, 4]


def test_a_failure_in_an_engine_thread_reaches_the_hub_as_a_connection_error(connect, hub):
    with connect() as connection:
        with Consumer(connection, [Queue("hub-failure")], callbacks=[lambda body, m: None]):
            connection.register_with_event_loop(hub)
            engine = connection.transport.engine
            engine.crashed(RuntimeError("boom"))  # what a failing thread reports
            with pytest.raises(connection.connection_errors) as caught:
                spin(hub, lambda: False, timeout=5)
            assert "boom" in str(caught.value)
