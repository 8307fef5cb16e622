"""Google API errors are classified in one place: reconnect, or report with what to do."""

from __future__ import annotations

import time

import pytest
from google.api_core import exceptions as gexc
from kombu import Connection

import kombu_pubsub  # noqa: F401
from kombu_pubsub.errors import (
    AccessDeniedError,
    BrokerUnavailableError,
    PublishError,
    QueueMismatchError,
    RequestError,
    as_kombu_error,
    is_transient,
)


@pytest.mark.parametrize(("error", "kind", "hint"), [
    (gexc.ServiceUnavailable("down"), BrokerUnavailableError, "PUBSUB_EMULATOR_HOST"),
    (gexc.DeadlineExceeded("slow"), BrokerUnavailableError, "reachable"),
    (gexc.RetryError("gave up", None), BrokerUnavailableError, "reachable"),
    (gexc.PermissionDenied("no"), AccessDeniedError, "roles/pubsub.subscriber"),
    (gexc.Unauthenticated("who"), AccessDeniedError, "roles/pubsub"),
    (gexc.InvalidArgument("bad"), RequestError, "bad"),
])
def test_google_errors_map_to_our_tree_with_a_hint(error, kind, hint):
    mapped = as_kombu_error(error, "pulling from 'x'")
    assert type(mapped) is kind
    assert hint in str(mapped)
    assert is_transient(error) is (kind is BrokerUnavailableError)


def test_celery_reconnects_on_unavailability_but_not_on_refusals():
    transport = Connection("pubsub://proj").transport
    assert BrokerUnavailableError in transport.connection_errors
    assert issubclass(BrokerUnavailableError, transport.recoverable_connection_errors)
    assert not issubclass(PublishError, transport.connection_errors)
    assert not issubclass(PublishError, transport.recoverable_connection_errors)
    for refusal in (AccessDeniedError, RequestError, QueueMismatchError):
        assert issubclass(refusal, transport.channel_errors)
        assert not issubclass(refusal, transport.connection_errors)


def test_a_budget_is_unproven_until_an_answer_and_again_after_a_transient_failure() -> None:
    from kombu_pubsub.pubsub.rpc import Budget

    budget = Budget(10.0)
    assert budget.unproven and budget.deadline() == 10.0
    budget.succeeded()
    assert not budget.unproven
    budget.failed(started=time.monotonic() - 9.95)  # a call that began ~10 s ago failed
    assert budget.unproven
    assert budget.deadline() == Budget.MIN_ATTEMPT  # what is left of the bound, at least this
    budget.succeeded()
    assert not budget.unproven and budget.deadline() == 10.0


def test_a_refused_purge_is_not_a_channel_error_that_celery_purge_would_swallow():
    import types

    import pytest

    from kombu_pubsub.channel import Channel
    from kombu_pubsub.errors import AccessDeniedError, PurgeRefusedError
    from kombu_pubsub.transport import Transport

    def refuse(path: str) -> int:
        raise AccessDeniedError("Pub/Sub refused: the caller lacks roles/pubsub.subscriber")

    step = types.SimpleNamespace(info=types.SimpleNamespace(path="projects/p/subscriptions/jobs"))
    admin = types.SimpleNamespace(purge=refuse)
    channel = types.SimpleNamespace(connection=types.SimpleNamespace(admin=admin), steps=lambda queue: [step])
    with pytest.raises(PurgeRefusedError, match="cannot purge queue 'jobs'.*pubsub.subscriber") as caught:
        Channel._purge(channel, "jobs")
    assert not isinstance(caught.value, Transport.channel_errors + Transport.connection_errors)
