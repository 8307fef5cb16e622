"""One unary Pull that can be cancelled while it waits on the server (on Google Cloud).

The generated client's ``pull()`` blocks until messages arrive or its timeout
ends, and nothing can stop it early. A consumer that goes away must end its
pull at once: a pull left waiting takes the next messages published to that
queue and holds them for a whole ack deadline (the emulator, and any pull
whose client died). So the pull is started as a gRPC future on the client's
own channel, which ``cancel()`` ends.

Under eventlet the gRPC future cannot be waited on from the engine's OS
threads (gRPC's own helper threads and conditions are green there), and under
gevent starting one can stall until the hub is free; so in both the pull
blocks in the engine thread instead and cannot be cancelled: what it brings
after its consumer went is given back at once (see engine/pulling.py), and
closing the client at connection close ends it.

The emulator does not always honour a cancelled pull: about one time in ten
the pull stays registered there and takes the next message of its queue for
a whole ack deadline. So against the emulator no pull is cancelled; pulls
last about a second (EMULATOR_PULL_TIMEOUT), and a consumer that goes waits for
its last one to end (its messages are given back at once).
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import grpc
from google.api_core import exceptions as gexc
from google.api_core.gapic_v1 import routing_header
from google.cloud import pubsub_v1

from .. import pools

PULL_METHOD = "/google.pubsub.v1.Subscriber/Pull"
#: Longest pull against the emulator, seconds: how long a closing consumer may wait
#: for its last pull, which is never cancelled there. The emulator answers about a
#: second before a pull's deadline (at once under one second, which would make an
#: idle puller spin), so this keeps an idle queue at about one pull a second.
EMULATOR_PULL_TIMEOUT = 2.0


@dataclasses.dataclass(frozen=True, slots=True)
class PulledMessage:
    """The parts of a pulled message the engine reads (as ``ReceivedMessage.message`` names them)."""

    data: bytes
    attributes: dict[str, str]
    publish_time: datetime.datetime | None
    message_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class Received:
    """One message a pull brought: the fields of a ``ReceivedMessage`` the engine reads.

    Read straight from the protobuf response: the client library's proto-plus
    wrappers cost about ten times as much CPU per message (each field access
    converts), and a busy worker pulls thousands of messages a second.
    """

    ack_id: str
    delivery_attempt: int
    message: PulledMessage


def _received(response: Any) -> list[Received]:
    """The messages of a raw ``PullResponse`` protobuf."""
    items = []
    for item in response.received_messages:
        message = item.message
        published = (message.publish_time.ToDatetime(tzinfo=datetime.UTC)
                     if message.HasField("publish_time") else None)
        items.append(Received(item.ack_id, item.delivery_attempt,
                              PulledMessage(message.data, dict(message.attributes), published,
                                            message.message_id)))
    return items


class PullCall:
    """A pull in flight: wait for its messages with :meth:`received`, or :meth:`cancel` it."""

    def __init__(self, future: Any, cancellable: bool = True) -> None:
        self._future = future
        self._cancellable = cancellable

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
        return _received(response)

    def cancel(self) -> None:
        """End the pull now (any thread); messages it had not returned stay on the subscription.

        Against the emulator the pull runs to its end (module docstring)."""
        if self._cancellable:
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
            return None  # cancelled before it started
        try:
            response = self._subscriber.pull(request=self._request, retry=None, timeout=self._timeout)
        except gexc.DeadlineExceeded:
            return []
        return list(response.received_messages)

    def cancel(self) -> None:
        self._cancelled = True


def start_pull(subscriber: pubsub_v1.SubscriberClient, subscription_path: str, max_messages: int,
               timeout: float, *, emulator: bool = False) -> PullCall | BlockingPullCall:
    """Start one pull of up to `max_messages`, waiting at most `timeout` seconds on the server;
    `emulator`: the client calls an emulator (module docstring)."""
    request = pubsub_v1.types.PullRequest(subscription=subscription_path, max_messages=max_messages)
    if emulator:
        timeout = min(timeout, EMULATOR_PULL_TIMEOUT)
    if pools.environment() != "default":
        return BlockingPullCall(subscriber, request, timeout)
    # The routing header the generated client would send.
    metadata = (routing_header.to_grpc_metadata((("subscription", subscription_path),)),)
    return PullCall(_pull_stub(subscriber).future(request, timeout=timeout, metadata=metadata),
                    cancellable=not emulator)


def _pull_stub(subscriber: pubsub_v1.SubscriberClient) -> Any:
    """The Pull method on the client's own gRPC channel, made once per client.

    Not the generated client's stub: with DEBUG logging on, its logging interceptor
    waits for each call's result to log it, so starting a pull would block until the
    pull ends and could not be cancelled.
    """
    stub = getattr(subscriber, "_kombu_pubsub_pull", None)
    if stub is None:
        stub = subscriber._transport.grpc_channel.unary_unary(
            PULL_METHOD, request_serializer=pubsub_v1.types.PullRequest.serialize,
            response_deserializer=pubsub_v1.types.PullResponse.pb().FromString)
        subscriber._kombu_pubsub_pull = stub
    return stub
