"""The leaser extends what is held at half its deadline, lets go past max_lease, and orders
extensions before settles."""

from __future__ import annotations

import pytest

from kombu_pubsub.engine.leasing import Leaser
from kombu_pubsub.engine.settling import Settler
from kombu_pubsub.pubsub.rpc import Budget
from kombu_pubsub.stats import Stats
from tests.unit.engine.conftest import SUBSCRIPTION, sent


@pytest.fixture
def settler(subscriber) -> Settler:
    return Settler(subscriber, Budget(5.0), Stats(), on_crash=lambda exc: None)


@pytest.fixture
def leaser(settler, clock) -> Leaser:
    return Leaser(settler, clock, Stats(), ack_deadline=30, max_lease=100, on_crash=lambda exc: None)


def flush(settler: Settler) -> None:
    batch, _ = settler.gather(block=False)
    settler.send(batch)


def test_a_lease_is_extended_at_half_its_deadline_and_again_each_half_deadline(
        leaser, settler, clock, subscriber):
    leaser.add(SUBSCRIPTION, ["a"], deadline=30)
    clock.advance(14)
    assert leaser.extend_due() == 0
    clock.advance(1)
    assert leaser.extend_due() == 1
    clock.advance(14)
    assert leaser.extend_due() == 0
    clock.advance(1)
    assert leaser.extend_due() == 1
    flush(settler)
    assert sent(subscriber) == [("modify", ["a"], 30)]  # both in one batch, merged per seconds


def test_a_subscription_with_a_shorter_deadline_is_extended_sooner(leaser, clock):
    leaser.add(SUBSCRIPTION, ["a"], deadline=10)
    clock.advance(5)
    assert leaser.extend_due() == 1


def test_past_max_lease_a_message_is_let_go_with_a_warning(leaser, clock, caplog):
    leaser.add(SUBSCRIPTION, ["a"], deadline=30)
    clock.advance(101)
    leaser.extend_due()
    assert len(leaser) == 0
    assert "over max_lease=100s" in caplog.text


def test_an_extension_never_follows_the_nack_of_the_same_message(leaser, settler, clock, subscriber):
    leaser.add(SUBSCRIPTION, ["a", "b"], deadline=30)
    clock.advance(15)
    leaser.extend_due()  # extensions of a and b are queued
    assert leaser.remove("a")  # then a is nacked: its lease goes first
    settler.nack(SUBSCRIPTION, "a")
    clock.advance(15)
    leaser.extend_due()  # only b is extended again
    flush(settler)
    assert sent(subscriber) == [("modify", ["a", "b"], 30), ("modify", ["a"], 0)]


def test_oldest_age_counts_from_when_the_message_was_leased(leaser, clock):
    assert leaser.oldest_age() == 0
    leaser.add(SUBSCRIPTION, ["a"], deadline=30)
    clock.advance(7)
    leaser.add(SUBSCRIPTION, ["b"], deadline=30)
    assert leaser.oldest_age() == 7
