"""The settler sends acks, nacks and deadline changes in order, batched, and gathers in linear time."""

from __future__ import annotations

import pytest
from google.api_core import exceptions as gexc

from kombu_pubsub.engine.settling import MAX_IDS_PER_REQUEST, Settle, Settler, chunks
from kombu_pubsub.pubsub.rpc import Budget
from kombu_pubsub.stats import Stats
from tests.unit.engine.conftest import SUBSCRIPTION, sent

OTHER = "projects/p/subscriptions/other"


@pytest.fixture
def settler(subscriber) -> Settler:
    return Settler(subscriber, Budget(5.0), Stats(), on_crash=lambda exc: None)


def flush(settler: Settler) -> None:
    batch, _ = settler.gather(block=False)
    settler.send(batch)


def test_within_a_batch_deadline_changes_go_before_acks_and_acks_before_nacks(settler, subscriber):
    settler.nack(SUBSCRIPTION, "a")
    settler.ack(SUBSCRIPTION, "b")
    settler.modify(SUBSCRIPTION, ["a", "b"], 30)
    flush(settler)
    assert sent(subscriber) == [("modify", ["a", "b"], 30), ("ack", ["b"], -1), ("modify", ["a"], 0)]


def test_one_request_per_subscription_and_kind(settler, subscriber):
    for ack_id in ("a", "b", "c"):
        settler.ack(SUBSCRIPTION, ack_id)
    settler.ack(OTHER, "d")
    flush(settler)
    assert sent(subscriber) == [("ack", ["a", "b", "c"], -1), ("ack", ["d"], -1)]
    assert settler.sent_requests == 2


def test_a_forgotten_subscription_drops_what_was_queued_but_not_what_comes_after(settler, subscriber):
    # A temporary queue deleted and re-created under the same name (Celery's
    # Pidbox.reset) must get the acks of its new messages.
    settler.ack(SUBSCRIPTION, "old")
    settler.forget(SUBSCRIPTION)
    settler.ack(SUBSCRIPTION, "new")
    flush(settler)
    assert sent(subscriber) == [("ack", ["new"], -1)]


def test_gathering_compares_no_settles_so_it_stays_linear(settler, monkeypatch):
    # Looking for the stop marker with `in` compared every queued settle against
    # it on every get: 25,000 queued acks cost seconds of CPU.
    comparisons = []
    monkeypatch.setattr(Settle, "__eq__", lambda self, other: comparisons.append(1) or self is other)
    for index in range(25_000):
        settler.ack(SUBSCRIPTION, f"id-{index}")
    settler.stop()  # not started: nothing to wait for
    batch, stopping = settler.gather(block=False)
    assert len(batch) == 25_000 and not stopping
    assert comparisons == []


def test_stop_sends_what_was_queued_before_the_thread_ends(settler, subscriber):
    settler.ack(SUBSCRIPTION, "a")
    settler.nack(SUBSCRIPTION, "b")
    settler.start()
    settler.stop()
    settler.join(5.0)
    assert not settler.alive
    assert sent(subscriber) == [("ack", ["a"], -1), ("modify", ["b"], 0)]


def test_a_failed_request_is_logged_and_the_settler_goes_on(settler, subscriber, caplog):
    subscriber.acknowledge.side_effect = [gexc.PermissionDenied("no"), None]
    settler.ack(SUBSCRIPTION, "a")
    flush(settler)
    settler.ack(SUBSCRIPTION, "b")
    flush(settler)
    assert "Could not send 1 ack(s)" in caplog.text
    assert sent(subscriber)[-1] == ("ack", ["b"], -1)


@pytest.mark.parametrize(("count", "size", "max_bytes", "expected"), [
    (3, 10, 1000, [3]),
    (3, 10, 26, [2, 1]),  # 13 bytes an id with its framing
    (MAX_IDS_PER_REQUEST + 1, 5, 10_000_000, [MAX_IDS_PER_REQUEST, 1]),
])
def test_requests_are_split_by_bytes_and_by_count(count, size, max_bytes, expected):
    ids = [f"{i:0{size}d}" for i in range(count)]
    parts = chunks(ids, max_bytes)
    assert [len(part) for part in parts] == expected
    assert [ack_id for part in parts for ack_id in part] == ids


def test_a_busy_settler_gathers_for_a_linger_after_the_first_so_requests_grow(settler, subscriber):
    for ack_id in ("a", "b"):  # more than one waiting: busy
        settler.ack(SUBSCRIPTION, ack_id)
    flush(settler)
    # Settles arriving while it lingers join the batch (each arrives as the clock is read).
    arrivals = iter([(0.0, None), (0.002, "c"), (0.004, "d"), (0.009, "e"), (0.011, None)])

    def monotonic() -> float:
        now, arriving = next(arrivals)
        if arriving:
            settler.ack(SUBSCRIPTION, arriving)
        return now

    settler.monotonic = monotonic
    settler.ack(SUBSCRIPTION, "first")
    batch, stopping = settler.gather(block=True)
    assert [settle.ack_id for settle in batch] == ["first", "c", "d", "e"] and not stopping
    settler.send(batch)
    assert sent(subscriber)[-1] == ("ack", ["first", "c", "d", "e"], -1)


def test_an_idle_settler_sends_a_lone_ack_at_once(settler, subscriber):
    settler.monotonic = lambda: pytest.fail("an idle settler must not linger")
    settler.ack(SUBSCRIPTION, "lone")
    flush(settler)
    assert sent(subscriber) == [("ack", ["lone"], -1)]
