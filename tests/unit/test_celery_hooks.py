"""Which prefetched messages a stopping worker gives back at once."""

from __future__ import annotations

import types

import pytest
from celery.worker import state

from kombu_pubsub import celery_hooks


class FakeQoS:
    def __init__(self, delivered: dict) -> None:
        self._delivered = delivered


@pytest.fixture
def channel(monkeypatch):
    started, reserved = object(), object()
    channel = types.SimpleNamespace(qos=FakeQoS({1: started, 2: reserved, 3: object()}))
    # Celery's on_close has dropped what it reserved but did not start: only 1 is left.
    monkeypatch.setattr(state, "requests", {"a": types.SimpleNamespace(message=started)})
    return channel


def test_a_prefork_worker_gives_back_what_celery_dropped(channel, monkeypatch):
    from celery.concurrency.prefork import TaskPool

    monkeypatch.setattr(celery_hooks, "_pool_drops_reserved", False)
    celery_hooks.on_worker_ready(sender=types.SimpleNamespace(pool=object.__new__(TaskPool)))
    assert celery_hooks.dropped_at_shutdown(channel, [1, 2, 4]) == [2]


def test_other_pools_give_back_nothing_early(channel, monkeypatch):
    monkeypatch.setattr(celery_hooks, "_pool_drops_reserved", False)
    from celery.concurrency.thread import TaskPool

    celery_hooks.on_worker_ready(sender=types.SimpleNamespace(pool=object.__new__(TaskPool)))
    assert celery_hooks.dropped_at_shutdown(channel, [1, 2, 3]) == []
