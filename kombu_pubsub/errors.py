"""The errors kombu_pubsub raises, and the one place Google API errors are classified.

::

    KombuError (kombu.exceptions)
    └── PubSubError                     anything this package raises
        ├── ConfigurationError          a bad URL, transport option or queue argument
        ├── NamingError                 a queue/exchange name Pub/Sub cannot take
        ├── ResourceMissingError        create_missing=False and a topic/subscription is absent
        ├── QueueMismatchError          a queue exists in Pub/Sub with other priorities than declared
        ├── MessageTooLargeError        a message over Pub/Sub's 10 MB limit
        ├── PublishError                Pub/Sub refused or did not accept a publish in time
        ├── AccessDeniedError           Pub/Sub refused a request for lack of permission or credentials
        ├── RequestError                Pub/Sub refused any other request (not a publish)
        └── BrokerUnavailableError      Pub/Sub cannot be reached (a connection error: Celery reconnects)
"""

from __future__ import annotations

import os

from google.api_core import exceptions as gexc
from kombu.exceptions import KombuError, OperationalError


class PubSubError(KombuError):
    """Base class of every error kombu_pubsub raises."""


class ConfigurationError(PubSubError, ValueError):
    """A broker URL, transport option or queue argument is malformed or out of range."""


class NamingError(PubSubError, ValueError):
    """A Celery queue or exchange name cannot be turned into a Pub/Sub id."""


class ResourceMissingError(PubSubError):
    """A topic or subscription does not exist and create_missing is off."""


class QueueMismatchError(PubSubError):
    """A queue exists in Pub/Sub with priorities other than it is declared with (filters are immutable)."""


class MessageTooLargeError(PubSubError, ValueError):
    """A message is larger than Pub/Sub accepts (10 MB)."""


class PublishError(PubSubError, OperationalError):
    """Pub/Sub refused a publish, or did not accept it within rpc_timeout."""

    #: True when the publish failed because the topic does not exist.
    topic_missing = False


class AccessDeniedError(PubSubError):
    """Pub/Sub refused a request: the credentials lack a role, or there are none."""


class RequestError(PubSubError):
    """Pub/Sub refused a request other than a publish (bad argument, precondition, not implemented)."""


class PurgeRefusedError(PubSubError):
    """Pub/Sub refused to empty a queue (permissions, or a request it does not accept).

    Not a channel error on purpose: Celery's ``purge`` takes a channel error for "no
    such queue, nothing to purge" and would report "No messages purged"."""


class BrokerUnavailableError(PubSubError, ConnectionError):
    """Pub/Sub could not be reached; Celery treats this as a lost connection."""


#: Where Application Default Credentials are read from first (google.auth's variable).
CREDENTIALS_ENV = "GOOGLE_APPLICATION_CREDENTIALS"


def missing_credentials(exc: BaseException, where: str = "Google Cloud") -> ConfigurationError:
    """The error for Google Cloud without usable Application Default Credentials.

    `exc` is google.auth's DefaultCredentialsError; `where` names the endpoint. When
    GOOGLE_APPLICATION_CREDENTIALS is set, that file is what google.auth could not use.
    """
    key_file = os.environ.get(CREDENTIALS_ENV)
    fix = (f"fix {CREDENTIALS_ENV} (it names {key_file!r}) or unset it and run "
           "'gcloud auth application-default login'" if key_file else
           f"run 'gcloud auth application-default login' or set {CREDENTIALS_ENV} to a key file")
    return ConfigurationError(f"no Google Cloud credentials for {where} ({exc}); {fix}, "
                              "or set PUBSUB_EMULATOR_HOST to use the emulator")


#: Errors that mean "the broker is (perhaps briefly) out of reach": retried
#: within the operation's time bound, then reported as BrokerUnavailableError,
#: which is in Transport.connection_errors so Celery reconnects.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.Aborted,
    gexc.TooManyRequests,
    gexc.Unknown,
    gexc.RetryError,
    gexc.Cancelled,
)

#: Errors that no retry fixes (bad request, permissions, missing resource):
#: reported at once as a channel error.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    gexc.InvalidArgument,
    gexc.PermissionDenied,
    gexc.Unauthenticated,
    gexc.NotFound,
    gexc.FailedPrecondition,
    gexc.MethodNotImplemented,
)


def is_transient(exc: BaseException) -> bool:
    """Tell whether a Google API error is worth retrying."""
    return isinstance(exc, TRANSIENT_ERRORS)


def as_kombu_error(exc: BaseException, doing: str) -> PubSubError:
    """Map a Google API error to our tree; `doing` names the operation for the message."""
    if isinstance(exc, PubSubError):
        return exc
    if is_transient(exc):
        return BrokerUnavailableError(
            f"Pub/Sub did not answer while {doing}: {exc}. "
            "Check that Pub/Sub is reachable (PUBSUB_EMULATOR_HOST for the emulator, "
            "network and credentials for Google Cloud)."
        )
    if isinstance(exc, (gexc.PermissionDenied, gexc.Unauthenticated)):
        return AccessDeniedError(
            f"Pub/Sub refused {doing}: {exc}. Grant the service account the roles in the "
            "operations guide (roles/pubsub.publisher, roles/pubsub.subscriber, and "
            "roles/pubsub.editor when queues are created on demand)."
        )
    return RequestError(f"Pub/Sub failed while {doing}: {exc}")
