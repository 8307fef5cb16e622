"""Celery on Google Cloud Pub/Sub: a Kombu transport for the ``pubsub://`` scheme.

Importing this package registers the scheme, so ``Celery(broker="pubsub://my-project")``
works; ``broker_transport="kombu_pubsub.transport:Transport"`` does too.
"""

from __future__ import annotations

from kombu.transport import TRANSPORT_ALIASES

from .errors import (
    BrokerUnavailableError,
    ConfigurationError,
    MessageTooLargeError,
    NamingError,
    PublishError,
    PubSubError,
    ResourceMissingError,
)
from .options import TransportOptions

TRANSPORT_ALIASES.setdefault("pubsub", "kombu_pubsub.transport:Transport")

__all__ = [
    "BrokerUnavailableError",
    "ConfigurationError",
    "MessageTooLargeError",
    "NamingError",
    "PubSubError",
    "PublishError",
    "ResourceMissingError",
    "TransportOptions",
]
__version__ = "0.1.0"
