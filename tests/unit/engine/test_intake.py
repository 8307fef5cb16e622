"""What happens to pulled messages before Celery sees them: deliver, hold, defer, re-publish,
bury or skip; countdowns held in memory stay leased until Celery settles them."""

from __future__ import annotations

import datetime

import pytest
from kombu.serialization import registry

from kombu_pubsub.engine import countdown
from kombu_pubsub.engine.intake import judge
from tests.unit.engine.conftest import consumer_for, envelope, received, sent

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def flush(engine) -> None:
    engine.settler.send(engine.settler.gather(block=False)[0])


@pytest.mark.parametrize(("data", "action", "reason"), [
    (b"not json", "bury", "not UTF-8 JSON"),
    (b'{"body": "x"}', "bury", "lacks the Kombu envelope"),
    (None, "deliver", ""),
])
def test_judge_decodes_and_checks(data, action, reason, no_installed_apps):
    import json

    verdict = judge(data or json.dumps(envelope()).encode(), 1, NOW, 600, lambda payload: True)
    assert verdict.action == action and reason in verdict.reason


@pytest.mark.parametrize(("seconds", "attempt", "action"), [
    (-1, 1, "deliver"), (2, 1, "hold"), (100, 1, "defer"), (100, 3, "republish"),
])
def test_judge_plans_countdowns(seconds, attempt, action, no_installed_apps):
    import json

    eta = NOW + datetime.timedelta(seconds=seconds)
    verdict = judge(json.dumps(envelope(eta=eta)).encode(), attempt, NOW, 600, lambda payload: True)
    assert verdict.action == action


def test_checks_work_when_the_app_disabled_json_in_kombu(no_installed_apps):
    # app.setup_security() disables every serializer but its own: the transport's
    # checks must not decode through Kombu's registry, or every pull raises.
    import json

    registry.disable("application/json")
    try:
        verdict = judge(json.dumps(envelope()).encode(), 1, NOW, 600, lambda payload: True)
    finally:
        registry.enable("application/json")
    assert verdict.action == "deliver"


def test_a_message_that_cannot_be_decoded_is_buried_then_acked(engine, buried, subscriber):
    consumer = consumer_for(engine)
    assert engine.intake.accept(consumer, [received("x", b"\xff garbage")]) == []
    flush(engine)
    assert buried == [("message data is not UTF-8 JSON", "jobs")]
    assert sent(subscriber) == [("ack", ["x"], -1)]
    assert len(engine.leaser) == 0


def test_a_message_for_no_binding_of_this_queue_is_acked_unseen(engine, subscriber):
    consumer = consumer_for(engine, wanted=lambda payload: False)
    assert engine.intake.accept(consumer, [received("x", envelope())]) == []
    flush(engine)
    assert sent(subscriber) == [("ack", ["x"], -1)]


def test_a_delivered_message_is_leased_tagged_and_marked_redelivered(engine):
    consumer = consumer_for(engine)
    first, second = engine.intake.accept(consumer, [received("a", envelope(), attempt=1),
                                                    received("b", envelope(), attempt=2)])
    assert (first.tag, second.tag) == (1, 2)
    assert first.payload["redelivered"] is False and second.payload["redelivered"] is True
    assert second.payload["properties"]["delivery_info"]["redelivered"] is True
    assert len(engine.leaser) == 2


def test_a_countdown_due_later_is_deferred_in_pubsub_not_held(engine, clock, subscriber):
    consumer = consumer_for(engine)
    eta = clock.now() + datetime.timedelta(seconds=100)
    assert engine.intake.accept(consumer, [received("a", envelope(eta=eta), attempt=1)]) == []
    flush(engine)
    assert sent(subscriber) == [("modify", ["a"], 97)]  # back LOCAL_HOLD seconds early
    assert len(engine.leaser) == 0 and len(engine.timer) == 0


def test_a_countdown_deferred_many_times_is_republished_before_a_dead_letter_policy_sees_it(
        engine, clock, subscriber, republished):
    consumer = consumer_for(engine)
    eta = clock.now() + datetime.timedelta(seconds=100)
    engine.intake.accept(consumer, [received("a", envelope(eta=eta), attempt=3)])
    flush(engine)
    assert republished == [consumer.subscription.topic_path]
    assert sent(subscriber) == [("ack", ["a"], -1)]


def test_a_held_countdown_stays_leased_until_celery_settles_it(engine, clock, subscriber):
    # A held countdown stays leased while it waits behind a busy pool: were its
    # deadline to lapse, Pub/Sub would deliver it again while the first copy ran.
    consumer = consumer_for(engine, limit=1)
    eta = clock.now() + datetime.timedelta(seconds=2)
    assert engine.intake.accept(consumer, [received("a", envelope(eta=eta), attempt=1)]) == []
    assert len(engine.leaser) == 1 and len(engine.timer) == 1
    clock.advance(2 - countdown.HANDOVER_EARLY)
    assert engine.timer.run_due() == 1
    assert len(engine.inbox) == 1
    for _ in range(4):  # a minute waiting for the pool: extended every half deadline
        clock.advance(15)
        assert engine.leaser.extend_due() == 1
    flush(engine)
    assert sent(subscriber) == [("modify", ["a"], 30)]
    assert all(seconds != 0 for _, _, seconds in sent(subscriber))


def test_closing_gives_back_held_countdowns_and_what_waits_in_the_inbox(engine, clock, subscriber):
    consumer = consumer_for(engine)
    eta = clock.now() + datetime.timedelta(seconds=2)
    engine.intake.accept(consumer, [received("held", envelope(eta=eta))])
    engine.inbox.put_many(engine.intake.accept(consumer, [received("ready", envelope())]))
    engine.close()
    flush(engine)
    assert sent(subscriber) == [("modify", ["held", "ready"], 0)]
    assert len(engine.leaser) == 0


def test_deferred_countdowns_are_counted_per_queue_until_they_come_back(engine, clock):
    consumer = consumer_for(engine)
    base = clock.now()
    etas = [base + datetime.timedelta(seconds=seconds) for seconds in (100, 40, 2)]
    items = [received(f"c{index}", envelope(eta=eta)) for index, eta in enumerate(etas)]
    assert engine.intake.accept(consumer, items) == []
    counted = engine.intake.countdowns()["jobs"]
    # Two deferred in Pub/Sub, one held in memory (due within seconds).
    assert counted == {"pending": 2, "held": 1, "next_eta": etas[2].timestamp(),
                       "last_eta": etas[0].timestamp()}
    # The 40 s one comes back (its deadline ends ~3 s before its ETA): no longer counted
    # here; whichever worker pulls it counts it again.
    # The held one went to Celery meanwhile.
    clock.advance(40 - countdown.LOCAL_HOLD + 1)
    engine.timer.run_due()
    counted = engine.intake.countdowns()["jobs"]
    assert counted == {"pending": 1, "held": 0, "next_eta": etas[0].timestamp(),
                       "last_eta": etas[0].timestamp()}


def test_counting_pending_countdowns_stays_linear_and_drops_what_came_back():
    book = countdown.Pending()
    for index in range(1000):  # each comes back one second after the one before
        book.note("q", 5000.0 + index, 1000.0 + index, now=1000.0 + index / 2)
    # Noting prunes as the list doubles: what came back is gone long before counting.
    assert len(book._etas["q"]) < 1000
    assert book.count(now=1998.5)["q"]["pending"] == 1
    assert book.count(now=1999.0) == {}

def expiring(seconds: float) -> dict:
    """A task envelope published with Kombu's expiration (milliseconds, as text)."""
    message = envelope()
    message["properties"]["expiration"] = str(int(seconds * 1000))
    return message


@pytest.mark.parametrize(("message", "published", "ttl", "action", "reason"), [
    (expiring(5), NOW - datetime.timedelta(seconds=7), None, "expire",
     "expired: 7.0s old, over its expiration of 5s"),
    (expiring(5), NOW - datetime.timedelta(seconds=3), None, "deliver", ""),
    (envelope(), NOW - datetime.timedelta(seconds=6), 5.0, "expire",
     "expired: 6.0s old, over its queue message TTL of 5s"),
    (envelope(), NOW - datetime.timedelta(seconds=6), None, "deliver", ""),
])
def test_judge_sends_an_expired_message_to_the_morgue_with_its_age_and_limit(
        message, published, ttl, action, reason, no_installed_apps):
    import json

    verdict = judge(json.dumps(message).encode(), 1, NOW, 600, lambda payload: True,
                    published=published, message_ttl=ttl)
    assert (verdict.action, verdict.reason) == (action, reason)


@pytest.mark.parametrize(("countdown_seconds", "action"), [(60, "expire"), (2, "hold"), (4, "defer")])
def test_judge_expires_a_countdown_that_would_be_handed_over_after_its_deadline(
        countdown_seconds, action, no_installed_apps):
    import json

    message = envelope(eta=NOW + datetime.timedelta(seconds=countdown_seconds))
    message["properties"]["expiration"] = "10000"
    verdict = judge(json.dumps(message).encode(), 1, NOW, 600, lambda payload: True, published=NOW)
    assert verdict.action == action
    if action == "expire":
        assert verdict.reason == "expired: 60.0s old at its ETA, over its expiration of 10s"


def test_judge_leaves_a_message_for_another_queue_alone_even_if_expired(no_installed_apps):
    import json

    verdict = judge(json.dumps(expiring(0)).encode(), 1, NOW, 600, lambda payload: False,
                    published=NOW - datetime.timedelta(seconds=9))
    assert verdict.action == "skip"


def test_an_expired_message_is_buried_acked_and_counted(engine, clock, buried, subscriber):
    consumer = consumer_for(engine)
    consumer.message_ttl = 5.0
    old = received("old", envelope(), published=clock.now() - datetime.timedelta(seconds=8))
    fresh = received("fresh", envelope(), published=clock.now() - datetime.timedelta(seconds=1))
    ready = engine.intake.accept(consumer, [old, fresh])
    flush(engine)
    assert [delivery.ack_id for delivery in ready] == ["fresh"]
    assert buried == [("expired: 8.0s old, over its queue message TTL of 5s", "jobs")]
    assert sent(subscriber) == [("ack", ["old"], -1)]
    assert engine.stats.counts()["expired"] == 1
    assert len(engine.leaser) == 1  # only the fresh one, now Celery's


def test_an_expired_message_the_morgue_did_not_take_is_nacked_and_not_counted(engine, clock, subscriber):
    from kombu_pubsub.engine.intake import Intake

    intake = Intake(engine.leaser, engine.settler, engine.timer, engine.inbox, clock, engine.stats,
                    lambda *args: False, lambda *args: None, 600)
    expired = received("old", expiring(1), published=clock.now() - datetime.timedelta(seconds=3))
    assert intake.accept(consumer_for(engine), [expired]) == []
    flush(engine)
    assert sent(subscriber) == [("modify", ["old"], 0)]
    assert engine.stats.counts()["expired"] == 0


def test_a_republished_countdown_keeps_its_first_publish_time_so_its_ttl_is_not_restarted(
        engine, clock, republished_attributes):
    consumer = consumer_for(engine)
    consumer.message_ttl = 3600.0
    first = clock.now() - datetime.timedelta(seconds=200)
    eta = clock.now() + datetime.timedelta(seconds=100)
    engine.intake.accept(consumer, [received("a", envelope(eta=eta), attempt=3, published=first)])
    assert republished_attributes == [{"kombu_pubsub": "1",
                                       "published_at": "2025-12-31T23:56:40.000+00:00"}]
