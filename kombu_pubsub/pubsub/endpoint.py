"""Which Pub/Sub API a connection calls, and the clients made to call it.

An endpoint is Google Cloud (TLS and Application Default Credentials) or an
emulator (plain text, no credentials). It is chosen once per connection, first
match wins:

1. the broker URL's host, ``pubsub://HOST[:PORT]/PROJECT``;
2. the ``api_endpoint`` transport option;
3. ``PUBSUB_EMULATOR_HOST`` (always an emulator, as for the client library);
4. Google's global endpoint, ``pubsub.googleapis.com:443``.

For 1 and 2 the ``emulator`` transport option says which kind it is; unset,
a host ending in ``googleapis.com`` is Google Cloud and any other host an
emulator. Clients for 1 and 2 are given their gRPC channel, so a
``PUBSUB_EMULATOR_HOST`` set in the environment cannot redirect them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import grpc
from google.cloud import pubsub_v1

from ..errors import ConfigurationError
from ..options import TransportOptions

EMULATOR_ENV = "PUBSUB_EMULATOR_HOST"
GLOBAL_ENDPOINT = "pubsub.googleapis.com:443"
GOOGLE_DOMAIN = "googleapis.com"
#: Where the endpoint came from (Endpoint.source).
FROM_URL, FROM_OPTION, FROM_ENV, FROM_DEFAULT = ("the broker URL", "api_endpoint",
                                                 EMULATOR_ENV, "the default")


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """The Pub/Sub API one connection calls: where, which kind, and why."""

    target: str
    """``HOST:PORT`` the clients connect to."""
    emulator: bool
    """True: plain text and anonymous credentials; False: TLS and Google credentials."""
    source: str = FROM_DEFAULT
    """What chose it: FROM_URL, FROM_OPTION, FROM_ENV or FROM_DEFAULT."""

    @property
    def explicit(self) -> bool:
        """True when the URL or api_endpoint chose it: clients get their own channel."""
        return self.source in (FROM_URL, FROM_OPTION)

    def describe(self) -> str:
        """A phrase for messages, e.g. "the emulator at 127.0.0.1:8085"."""
        return f"{'the emulator' if self.emulator else 'Google Cloud'} at {self.target}"

    def publisher_client(self) -> pubsub_v1.PublisherClient:
        """A new PublisherClient calling this endpoint (makes no RPC).

        Raises google.auth's DefaultCredentialsError for Google Cloud without credentials.
        """
        if not self.explicit:
            return pubsub_v1.PublisherClient()  # the library's own choice, as the env says
        transport = pubsub_v1.PublisherClient.get_transport_class("grpc")
        return pubsub_v1.PublisherClient(transport=self._grpc_transport(transport))

    def subscriber_client(self) -> pubsub_v1.SubscriberClient:
        """A new SubscriberClient calling this endpoint (makes no RPC); raises as above."""
        if not self.explicit:
            return pubsub_v1.SubscriberClient()
        transport = pubsub_v1.SubscriberClient.get_transport_class("grpc")
        return pubsub_v1.SubscriberClient(transport=self._grpc_transport(transport))

    def _grpc_transport(self, transport_class: type[Any]) -> Any:
        if self.emulator:
            # What the client library does for PUBSUB_EMULATOR_HOST.
            return transport_class(host=self.target, channel=grpc.insecure_channel(self.target))
        return transport_class(host=self.target, always_use_jwt_access=True)


def resolve(url_target: str | None, options: TransportOptions,
            environ: Mapping[str, str] = os.environ) -> Endpoint:
    """The endpoint of a connection (module docstring: URL, option, environment, default)."""
    for target, source in ((url_target, FROM_URL), (options.api_endpoint or None, FROM_OPTION)):
        if target:
            return _named(target, source, options.emulator)
    emulator_host = environ.get(EMULATOR_ENV)
    if emulator_host:
        return Endpoint(emulator_host, emulator=True, source=FROM_ENV)
    if options.emulator:
        raise ConfigurationError(
            "transport option emulator=true, but no endpoint is named; use "
            "pubsub://HOST:PORT/PROJECT, the api_endpoint option, or PUBSUB_EMULATOR_HOST")
    return Endpoint(GLOBAL_ENDPOINT, emulator=False)


def _named(target: str, source: str, emulator: bool | None) -> Endpoint:
    host, port = _split(target)
    if emulator is None:
        emulator = not is_google_host(host)
    if port is None:
        if emulator:
            where = "pubsub://HOST:PORT/PROJECT" if source == FROM_URL else "api_endpoint=HOST:PORT"
            raise ConfigurationError(
                f"emulator endpoint {target!r} (from {source}) has no port; write {where} "
                "(the emulator's default port is 8085). For a Google endpoint whose host does "
                "not end in googleapis.com, set the transport option emulator=false")
        target = f"{target}:443"
    return Endpoint(target, emulator=emulator, source=source)


def _split(target: str) -> tuple[str, str | None]:
    """HOST and PORT (None when absent) of ``HOST[:PORT]``; an IPv6 host may be in brackets."""
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        return host, rest[1:] or None
    host, _, port = target.rpartition(":")
    return (host, port) if host else (target, None)


def is_google_host(host: str) -> bool:
    """True for Google's Pub/Sub endpoints (``*.googleapis.com``)."""
    host = host.lower().rstrip(".")
    return host == GOOGLE_DOMAIN or host.endswith("." + GOOGLE_DOMAIN)
