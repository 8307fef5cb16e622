"""The awaited publish without I/O: threads publish at once, errors and retries stay within the bound.

The gRPC channel is an autospec fake whose Publish call the test answers.
"""

from __future__ import annotations

import threading
from unittest import mock

import grpc
import pytest
from google.cloud import pubsub_v1

from kombu_pubsub.errors import PublishError
from kombu_pubsub.options import TransportOptions
from kombu_pubsub.pubsub.publish_rpc import PUBLISH_METHOD, PublishRpc
from kombu_pubsub.pubsub.publisher import Publisher
from kombu_pubsub.pubsub.rpc import Budget
from tests.unit.grpc_fakes import FakeRpcError

TOPIC = "projects/p/topics/jobs"
THREADS = 8
#: How long the threads wait for each other inside the fake RPC: far beyond what
#: starting 8 threads takes, and what makes a serialized publish fail the test.
MEET_WITHIN = 5.0


def publisher_with(call: object, rpc_timeout: float = 20.0) -> Publisher:
    """A Publisher whose Publish RPC is `call(request, timeout=, metadata=)`."""
    channel = mock.create_autospec(grpc.Channel, instance=True)
    channel.unary_unary.return_value = call
    client = mock.create_autospec(pubsub_v1.PublisherClient, instance=True)
    options = TransportOptions(rpc_timeout=rpc_timeout)
    publisher = Publisher(client, options, Budget(rpc_timeout), send=PublishRpc(channel))
    channel.unary_unary.assert_called_once()
    assert channel.unary_unary.call_args.args[0] == PUBLISH_METHOD
    return publisher


def test_threads_publishing_to_different_topics_at_once_are_all_inside_the_rpc_together():
    # Each fake RPC returns only once all THREADS calls are inside it at the same time:
    # a lock or a single-file queue anywhere on the way makes the barrier time out.
    # (Publishes to one topic share requests instead: test_convoy.py.)
    inside = threading.Barrier(THREADS, timeout=MEET_WITHIN)
    requests = []

    def publish_rpc(request, timeout, metadata):
        requests.append(request)
        inside.wait()

    publisher = publisher_with(publish_rpc)
    errors: list[BaseException] = []

    def send(index: int) -> None:
        try:
            publisher.publish(f"{TOPIC}-{index}", b"message %d" % index, {"task": "t.job"})
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(index,)) for index in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(MEET_WITHIN * 2)
    assert errors == [] and not inside.broken
    assert publisher.published == THREADS
    assert sorted(request.messages[0].data for request in requests) == sorted(
        b"message %d" % index for index in range(THREADS))


def test_the_request_names_the_topic_and_carries_the_message_and_the_bound():
    seen = {}

    def publish_rpc(request, timeout, metadata):
        seen.update(request=request, timeout=timeout, metadata=dict(metadata))

    publisher_with(publish_rpc, rpc_timeout=7.0).publish(TOPIC, b"{}", {"task": "t.job"})

    request = seen["request"]
    assert request.topic == TOPIC and len(request.messages) == 1
    assert request.messages[0].data == b"{}" and dict(request.messages[0].attributes) == {"task": "t.job"}
    assert 0 < seen["timeout"] <= 7.0
    assert seen["metadata"]["x-goog-request-params"] == f"topic={TOPIC}"


def test_a_transient_error_is_retried_and_the_message_is_published_once():
    answers = [FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection reset"), None]
    calls = []

    def publish_rpc(request, timeout, metadata):
        calls.append(request)
        answer = answers.pop(0)
        if answer is not None:
            raise answer

    publisher = publisher_with(publish_rpc)
    publisher.publish(TOPIC, b"{}", {})
    assert len(calls) == 2 and publisher.published == 1 and publisher.failed == 0


def test_a_missing_topic_raises_publish_error_at_once_saying_so():
    calls = []

    def publish_rpc(request, timeout, metadata):
        calls.append(request)
        raise FakeRpcError(grpc.StatusCode.NOT_FOUND, "Topic not found")

    publisher = publisher_with(publish_rpc)
    with pytest.raises(PublishError, match="does not exist") as raised:
        publisher.publish(TOPIC, b"{}", {})
    assert raised.value.topic_missing and len(calls) == 1 and publisher.failed == 1


def test_pubsub_never_answering_raises_publish_error_within_the_bound():
    timeouts = []

    def publish_rpc(request, timeout, metadata):
        timeouts.append(timeout)
        raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "no route")

    publisher = publisher_with(publish_rpc, rpc_timeout=0.3)
    with pytest.raises(PublishError, match="within the rpc_timeout"):
        publisher.publish(TOPIC, b"{}", {})
    # Retried with backoff, and no attempt was given more than what was left of the bound.
    assert len(timeouts) >= 2 and timeouts == sorted(timeouts, reverse=True) and timeouts[0] <= 0.3
