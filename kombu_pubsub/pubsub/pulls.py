"""One unary Pull that can be cancelled while it waits on the server.

The generated client's ``pull()`` blocks until messages arrive or its timeout
ends, and nothing can stop it early. A consumer that goes away must end its
pull at once: a pull left waiting takes the next messages published to that
queue and holds them for a whole ack deadline (the emulator, and any pull
whose client died). So the pull is started as a gRPC future on the client's
own channel, which ``cancel()`` ends.

Under eventlet the gRPC future cannot be waited on from the engine's OS
threads (gRPC's own helper threads and conditions are green there), so the
pull blocks in the engine thread instead and cannot be cancelled: what it
brings after its consumer went is given back at once (see engine/pulling.py).
"""

from __future__ import annotations

from typing import Any

import grpc
from google.api_core import exceptions as gexc
from google.api_core.gapic_v1 import routing_header
from google.cloud import pubsub_v1

from .. import pools


class PullCall:
    """A pull in flight: wait for its messages with :meth:`received`, or :meth:`cancel` it."""

    def __init__(self, future: Any) -> None:
        self._future = future

    def received(self) -> list[Any] | None:
        """Wait for the pull: its ReceivedMessages (empty when the timeout passed), None if cancelled.

        Raises google.api_core exceptions, as the generated client does.
        """
        try:
            response = self._future.result()
        except grpc.FutureCancelledError:
            return None
        except grpc.RpcError as exc:
            if isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.CANCELLED:
                return None
            if isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return []
            raise gexc.from_grpc_error(exc) from exc
        return list(response.received_messages)

    def cancel(self) -> None:
        """End the pull now (any thread); messages it had not returned stay on the subscription."""
        self._future.cancel()


class BlockingPullCall:
    """A pull made when its messages are asked for; cancel() only marks it (eventlet)."""

    def __init__(self, subscriber: pubsub_v1.SubscriberClient, request: Any, timeout: float) -> None:
        self._subscriber = subscriber
        self._request = request
        self._timeout = timeout
        self._cancelled = False

    def received(self) -> list[Any] | None:
        if self._cancelled:
            return None
        try:
            response = self._subscriber.pull(request=self._request, retry=None, timeout=self._timeout)
        except gexc.DeadlineExceeded:
            return []
        return list(response.received_messages)

    def cancel(self) -> None:
        self._cancelled = True


def start_pull(subscriber: pubsub_v1.SubscriberClient, subscription_path: str, max_messages: int,
               timeout: float) -> PullCall | BlockingPullCall:
    """Start one pull of up to `max_messages`, waiting at most `timeout` seconds on the server."""
    request = pubsub_v1.types.PullRequest(subscription=subscription_path, max_messages=max_messages)
    if pools.environment() == "eventlet":
        return BlockingPullCall(subscriber, request, timeout)
    # The routing header the generated client would send (and a metadata sequence:
    # the client's logging interceptor iterates it).
    metadata = (routing_header.to_grpc_metadata((("subscription", subscription_path),)),)
    return PullCall(subscriber._transport.pull.future(request, timeout=timeout, metadata=metadata))
