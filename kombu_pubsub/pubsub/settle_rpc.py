"""Acknowledge and ModifyAckDeadline, made on the client's own gRPC channel with plain protobuf.

The settler sends one of these per batch of acks, nacks or deadline changes, so
a busy worker sends hundreds a second. The generated (GAPIC) methods turn the
request into a proto-plus message and run it through layers of Python wrappers
(retry, timeout, metadata, tracing, a logging interceptor) under the GIL, the
same CPU the pool and the pullers need. These callables take the generated
methods' arguments (``request=``, ``retry=``, ``timeout=``) so that
:func:`kombu_pubsub.pubsub.rpc.call` bounds and classifies them as it does any
call, and send the same request with the same routing header.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.api_core import exceptions as gexc
from google.api_core.gapic_v1 import routing_header
from google.protobuf import empty_pb2
from google.pubsub_v1.services.subscriber.transports.base import DEFAULT_CLIENT_INFO
from google.pubsub_v1.types import pubsub

ACKNOWLEDGE_METHOD = "/google.pubsub.v1.Subscriber/Acknowledge"
MODIFY_METHOD = "/google.pubsub.v1.Subscriber/ModifyAckDeadline"


class _UnaryRpc:
    """One Subscriber method whose answer is Empty, called like the generated method."""

    def __init__(self, channel: grpc.Channel, method: str, request_type: Any) -> None:
        self._request_type = request_type
        self._call = channel.unary_unary(method, request_serializer=request_type.SerializeToString,
                                         response_deserializer=empty_pb2.Empty.FromString)
        self._client_header = DEFAULT_CLIENT_INFO.to_grpc_metadata()

    def __call__(self, request: dict[str, Any], retry: Any = None, timeout: float | None = None) -> None:
        """Send `request` (the generated method's dict); `retry` wraps each attempt as there."""
        message = self._request_type(**request)
        metadata = (self._client_header,
                    routing_header.to_grpc_metadata((("subscription", request["subscription"]),)))

        def attempt() -> None:
            try:
                self._call(message, timeout=timeout, metadata=metadata)
            except grpc.RpcError as exc:
                raise gexc.from_grpc_error(exc) from exc

        if retry is None:
            attempt()
        else:
            retry(attempt)()


class SettleRpcs:
    """``acknowledge`` and ``modify_ack_deadline`` of a SubscriberClient, without its layers."""

    def __init__(self, channel: grpc.Channel) -> None:
        """`channel`: the SubscriberClient's ``transport.grpc_channel`` (its credentials included)."""
        self.acknowledge = _UnaryRpc(channel, ACKNOWLEDGE_METHOD, pubsub.AcknowledgeRequest.pb())
        self.modify_ack_deadline = _UnaryRpc(channel, MODIFY_METHOD, pubsub.ModifyAckDeadlineRequest.pb())
