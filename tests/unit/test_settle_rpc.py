"""Acks and deadline changes sent on the client's gRPC channel (kombu_pubsub/pubsub/settle_rpc.py)."""

from __future__ import annotations

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.api_core.gapic_v1 import routing_header
from google.pubsub_v1.types import pubsub

from kombu_pubsub.pubsub import rpc
from kombu_pubsub.pubsub.settle_rpc import ACKNOWLEDGE_METHOD, MODIFY_METHOD, SettleRpcs
from tests.unit.grpc_fakes import FakeRpcError


class FakeChannel:
    """Records each call: (method, serialized request, timeout, metadata); fails the first `failures`."""

    def __init__(self, failures: int = 0) -> None:
        self.calls: list[tuple[str, bytes, float | None, tuple]] = []
        self.failures = failures

    def unary_unary(self, method, request_serializer, response_deserializer):  # noqa: ANN001, ANN201
        def call(request, timeout=None, metadata=()):  # noqa: ANN001, ANN202
            self.calls.append((method, request_serializer(request), timeout, tuple(metadata)))
            if self.failures:
                self.failures -= 1
                raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "down")
            return response_deserializer(b"")
        return call


def test_an_ack_sends_the_generated_methods_request_with_its_routing_header():
    channel = FakeChannel()
    rpcs = SettleRpcs(channel)
    rpcs.acknowledge(request={"subscription": "projects/p/subscriptions/q", "ack_ids": ["a", "b"]},
                     retry=rpc.retry_within(5), timeout=5)
    (method, body, timeout, metadata), = channel.calls
    assert method == ACKNOWLEDGE_METHOD and timeout == 5
    expected = pubsub.AcknowledgeRequest(subscription="projects/p/subscriptions/q", ack_ids=["a", "b"])
    assert body == pubsub.AcknowledgeRequest.serialize(expected)
    # The header the generated client builds for this request.
    assert routing_header.to_grpc_metadata((("subscription", "projects/p/subscriptions/q"),)) in metadata


def test_a_deadline_change_is_retried_on_a_transient_error_within_its_bound():
    channel = FakeChannel(failures=1)
    rpcs = SettleRpcs(channel)
    request = {"subscription": "projects/p/subscriptions/q", "ack_ids": ["a"], "ack_deadline_seconds": 0}
    budget = rpc.Budget(5)
    rpc.call(rpcs.modify_ack_deadline, "nacking", budget, **request)
    assert [call[0] for call in channel.calls] == [MODIFY_METHOD, MODIFY_METHOD]
    sent = pubsub.ModifyAckDeadlineRequest.deserialize(channel.calls[-1][1])
    assert (list(sent.ack_ids), sent.ack_deadline_seconds) == (["a"], 0)


def test_without_a_retry_a_transient_error_reaches_the_caller_as_google_api_cores():
    rpcs = SettleRpcs(FakeChannel(failures=1))
    with pytest.raises(gexc.ServiceUnavailable):
        rpcs.acknowledge(request={"subscription": "projects/p/subscriptions/q", "ack_ids": ["a"]})
