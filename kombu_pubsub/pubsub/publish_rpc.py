"""The awaited Publish RPC, made on the client's own gRPC channel with a plain protobuf request.

Apart from publisher.py because it bypasses the generated (GAPIC) method: that
method turns a dict into a proto-plus message, runs the call through layers of
Python wrappers (retry, timeout, metadata, tracing, a logging interceptor) and
turns the response back into proto-plus. All of that runs under the GIL, and in
a process whose threads publish at once it costs several times the call's own
Python work: the threads wait for each other there, not for Pub/Sub. Here a
call is one ``grpc`` unary call (which waits for Pub/Sub with the GIL released)
plus the retry of transient errors within the deadline, as the generated method
does it (rpc.retry_within), with the same request and routing header.
Publishes to one topic made at the same moment share a request (convoy.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import grpc
from google.api_core import exceptions as gexc
from google.api_core.gapic_v1 import routing_header
from google.pubsub_v1.services.publisher.transports.base import DEFAULT_CLIENT_INFO
from google.pubsub_v1.types import pubsub

from . import convoy, rpc

#: The method's full name on the wire (google/pubsub/v1/pubsub.proto).
PUBLISH_METHOD = "/google.pubsub.v1.Publisher/Publish"
#: Shortest timeout given to an attempt, seconds: a retry late in the deadline still reaches Pub/Sub.
MIN_ATTEMPT = 0.05

#: The plain protobuf classes behind the client library's proto-plus types.
_Request = pubsub.PublishRequest.pb()
_Message = pubsub.PubsubMessage.pb()
_Response = pubsub.PublishResponse.pb()

#: Most topics whose routing header is kept (one entry per topic a process publishes to).
_ROUTING_CACHE = 1024

UnaryCall = Callable[..., Any]


class PublishRpc:
    """Publish one message and wait for Pub/Sub's answer; any thread, and many at once.

    Holds no lock: the gRPC channel multiplexes concurrent calls, and the only
    shared state is the routing-header cache, a dict whose worst race is
    building the same entry twice.
    """

    def __init__(self, channel: grpc.Channel, route: Hashable | None = None,
                 convoys: convoy.Convoys | None = None) -> None:
        """`channel`: the PublisherClient's ``transport.grpc_channel`` (its credentials included).

        `route` names the endpoint the channel reaches: publishes of every PublishRpc with
        the same route share requests (convoy.py); None shares only this one's.
        """
        self._call: UnaryCall = channel.unary_unary(
            PUBLISH_METHOD, request_serializer=_Request.SerializeToString,
            response_deserializer=_Response.FromString)
        self._client_header = DEFAULT_CLIENT_INFO.to_grpc_metadata()
        self._metadata: dict[str, tuple[tuple[str, str], ...]] = {}
        self._route = route if route is not None else ("rpc", id(self))
        self._convoys = convoys  # None: the process's, looked up per call (new after a fork)

    def __call__(self, topic_path: str, data: bytes, attributes: Mapping[str, str], deadline: float) -> None:
        """One message to `topic_path`; transient errors retried until `deadline` seconds have passed.

        Raises google.api_core's GoogleAPICallError (or RetryError), as the generated method does.
        """
        message = _Message(data=data, attributes=attributes)
        convoys = self._convoys or convoy.shared()
        convoys.send((self._route, topic_path), message, convoy.request_bytes(data, attributes),
                     deadline, lambda messages, left: self.send_request(topic_path, messages, left))

    def send_request(self, topic_path: str, messages: list[Any], deadline: float) -> None:
        """One Publish request carrying `messages` (plain protobuf), retried within `deadline` s."""
        request = _Request(topic=topic_path, messages=messages)
        metadata = self._metadata_for(topic_path)
        ends = time.monotonic() + deadline

        def attempt() -> None:
            try:
                self._call(request, timeout=max(MIN_ATTEMPT, ends - time.monotonic()), metadata=metadata)
            except grpc.RpcError as exc:
                raise gexc.from_grpc_error(exc) from exc

        rpc.retry_within(deadline)(attempt)()

    def _metadata_for(self, topic_path: str) -> tuple[tuple[str, str], ...]:
        """The client header and the ``topic`` routing header the generated method sends."""
        metadata = self._metadata.get(topic_path)
        if metadata is None:
            if len(self._metadata) >= _ROUTING_CACHE:
                self._metadata.clear()
            routing = routing_header.to_grpc_metadata((("topic", topic_path),))
            metadata = self._metadata[topic_path] = (self._client_header, routing)
        return metadata
