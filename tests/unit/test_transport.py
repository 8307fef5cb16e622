"""The transport's life cycle without I/O: what it builds on first use, and that closed stays closed."""

from __future__ import annotations

import threading

import pytest
from kombu import Connection

import kombu_pubsub  # noqa: F401
from kombu_pubsub.errors import BrokerUnavailableError


@pytest.fixture
def transport(monkeypatch):
    # Creating clients makes no RPC; nothing listens here, and nothing is called.
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:9")
    connection = Connection("pubsub://unit-project")
    yield connection.transport
    connection.release()


def engine_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("kombu-pubsub-")]


def test_a_closed_transport_builds_nothing_again(transport):
    before = set(engine_threads())
    assert transport.engine is not None  # first use: clients and engine threads
    assert {"kombu-pubsub-settler", "kombu-pubsub-leaser", "kombu-pubsub-countdown"} <= set(engine_threads())
    transport.close_connection(None)
    assert set(engine_threads()) <= before
    # Touching it again must not rebuild the clients and start threads nobody stops.
    with pytest.raises(BrokerUnavailableError, match="closed"):
        _ = transport.engine
    with pytest.raises(BrokerUnavailableError, match="closed"):
        _ = transport.publisher
    assert set(engine_threads()) <= before


def test_it_offers_celery_its_event_loop_interface(transport):
    assert transport.implements.asynchronous
    assert callable(transport.register_with_event_loop) and callable(transport.on_readable)


def test_the_shutdown_hook_only_flags_and_rings(transport):
    # Celery calls it inside a signal handler (under gevent, in the hub): no lock, no wait.
    from kombu_pubsub import celery_hooks

    inbox = transport.engine.inbox
    celery_hooks.on_worker_shutting_down(sig="SIGTERM", how="Warm", exitcode=0)
    import select

    assert transport.stopping
    assert select.select([inbox.doorbell.fileno()], [], [], 0)[0]
