"""Pullers take room on arrival, share the window among busy queues, report failures, and
cancel their pull when their consumer goes."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from google.api_core import exceptions as gexc

from kombu_pubsub.engine import pulling
from kombu_pubsub.errors import AccessDeniedError, BrokerUnavailableError
from tests.unit.engine.conftest import consumer_for, envelope, received, sent


def consume(engine, consumer):
    engine.consume(consumer)
    puller = engine.puller(consumer)
    puller.pause = lambda seconds: None  # no real waiting between failed pulls
    return puller


def test_a_pull_waiting_on_a_quiet_queue_holds_no_room_a_busy_queue_needs(engine, pulls):
    window_seen = []
    quiet = consumer_for(engine, limit=4, queue="quiet")
    busy = consumer_for(engine, limit=4, queue="busy")
    busy.window = quiet.window  # one channel, two queues
    quiet_puller, busy_puller = consume(engine, quiet), consume(engine, busy)
    pulls.answer([], while_waiting=lambda: window_seen.append(busy_puller.ask()))
    quiet_puller.step()
    assert pulls.calls[0].max_messages == 4
    assert window_seen == [4]  # the whole window is still free for the busy queue


def test_arrivals_take_room_and_later_pulls_ask_for_what_is_left(engine, pulls):
    consumer = consumer_for(engine, limit=4)
    puller = consume(engine, consumer)
    pulls.answer([received("a", envelope()), received("b", envelope())])
    puller.step()
    assert consumer.window.free() == 2
    assert len(engine.inbox) == 2 and len(engine.leaser) == 2
    assert puller.ask() == 2


def test_busy_queues_share_the_free_room(engine, pulls):
    first = consumer_for(engine, limit=8, queue="first")
    second = consumer_for(engine, limit=8, queue="second")
    second.window = first.window
    first_puller, second_puller = consume(engine, first), consume(engine, second)
    first.busy = second.busy = 3  # both brought messages last time
    assert first_puller.ask() == 4 and second_puller.ask() == 4
    second.busy = 0
    assert first_puller.ask() == 8


def test_an_unexpected_error_in_a_puller_is_logged_once_and_reaches_celery_as_a_lost_connection(
        engine, pulls, caplog, monkeypatch):
    consumer = consumer_for(engine)
    puller = consume(engine, consumer)

    def broken(*args):
        raise KeyError("boom")

    monkeypatch.setattr(engine.intake, "accept", broken)
    pulls.answer([received("a", envelope())])
    with caplog.at_level(logging.ERROR):
        puller._run()  # the thread's body, here: it ends on the error
    assert puller.stopped
    assert caplog.text.count("stopped on an unexpected error") == 1
    with pytest.raises(BrokerUnavailableError, match="KeyError"):
        engine.inbox.take()


def test_a_transient_outage_is_retried_then_reported_as_a_lost_connection(engine, pulls, clock, caplog):
    consumer = consumer_for(engine)
    puller = consume(engine, consumer)
    pulls.answer(error=gexc.ServiceUnavailable("down"))
    assert puller.step() is True
    assert engine.inbox.take() is None
    clock.advance(pulling.RECONNECT_AFTER + 1)
    pulls.answer(error=gexc.ServiceUnavailable("down"))
    assert puller.step() is False
    with pytest.raises(BrokerUnavailableError, match="did not answer"):
        engine.inbox.take()
    assert caplog.text.count("retrying for up to") == 1  # one WARNING per outage


def test_a_deleted_subscription_is_reported_so_that_celery_re_declares_it(engine, pulls):
    puller = consume(engine, consumer_for(engine))
    pulls.answer(error=gexc.NotFound("gone"))
    assert puller.step() is False
    with pytest.raises(BrokerUnavailableError, match="disappeared"):
        engine.inbox.take()


def test_cancelling_a_consumer_cancels_its_pull_in_flight_and_releases_what_it_brought(
        engine, pulls, subscriber):
    consumer = consumer_for(engine)
    puller = consume(engine, consumer)
    pulls.answer([received("a", envelope())], while_waiting=lambda: engine.cancel(consumer))
    puller.step()
    assert pulls.calls[0].cancelled
    assert len(engine.inbox) == 0 and len(engine.leaser) == 0


def test_what_a_pull_brings_after_its_consumer_went_is_given_back_at_once(engine, pulls, subscriber):
    consumer = consumer_for(engine)
    puller = consume(engine, consumer)
    pulls.answer([received("late", envelope())], while_waiting=lambda: engine.cancel(consumer))
    original = pulls.__call__

    def answered_call(*args):
        call = original(*args)
        call.answered = True
        return call

    puller._start_pull = answered_call
    puller.step()
    assert len(engine.inbox) == 0
    engine.settler.send(engine.settler.gather(block=False)[0])
    assert sent(subscriber) == [("modify", ["late"], 0)]  # nacked: another consumer gets it now


def test_a_closed_engine_stays_closed(engine, pulls):
    engine.close()
    with pytest.raises(BrokerUnavailableError, match="closed"):
        engine.consume(consumer_for(engine))


def test_a_pull_that_fails_on_this_side_reconnects_and_one_refused_by_pubsub_says_why(engine, pulls):
    puller = consume(engine, consumer_for(engine))
    pulls.answer(error=TypeError("'NoneType' object is not iterable"))
    assert puller.step() is False
    with pytest.raises(BrokerUnavailableError, match="failed unexpectedly"):
        engine.inbox.take()
    other = consume(engine, consumer_for(engine, queue="other"))
    pulls.answer(error=gexc.PermissionDenied("no"))
    assert other.step() is False
    with pytest.raises(AccessDeniedError, match="roles/pubsub.subscriber"):
        engine.inbox.take()


def steps_of(engine, limit=1, ranks=(0, 1, 2), probed=True):
    """Consumers of one queue's priority steps, lowest first, sharing one window; `probed`:
    each has had its first pull (what most tests look at: consuming in full swing)."""
    consumers = [consumer_for(engine, limit=limit, queue="jobs") for _ in ranks]
    for consumer, rank in zip(consumers, ranks, strict=True):
        consumer.window, consumer.rank, consumer.ranked = consumers[0].window, rank, True
        consumer.probing = not probed
        consumer.subscription = dataclasses.replace(
            consumer.subscription, path=f"{consumer.subscription.path}~p{rank}")
    return consumers


def test_lower_steps_waiting_never_stop_a_higher_step_from_pulling(engine, pulls):
    low, middle, high = steps_of(engine, limit=1)
    low_puller, middle_puller, high_puller = (consume(engine, c) for c in (low, middle, high))
    pulls.answer([received("low", envelope())])
    low_puller.step()
    pulls.answer([received("middle", envelope())])
    middle_puller.step()
    lookahead = pulling.LOOKAHEAD
    assert low.window.free(low.rank, 0) == -1  # the lowest step counts every waiting message
    assert high.window.free(high.rank, high.lookahead) == 1 + lookahead  # the highest none below
    pulls.answer([received("high", envelope())])
    high_puller.step()
    assert [engine.inbox.take().ack_id for _ in range(3)] == ["high", "middle", "low"]


def test_the_best_message_is_waiting_when_celery_makes_room(engine, pulls):
    # Prefetch 1 with late acks: Celery holds one message while the highest step's next
    # one is already pulled, so the ack hands it over instead of a lower step's.
    low, high = steps_of(engine, limit=1, ranks=(0, 1))
    low_puller, high_puller = consume(engine, low), consume(engine, high)
    pulls.answer([received("low", envelope())])
    low_puller.step()
    pulls.answer([received("high-1", envelope())])
    high_puller.step()
    first = engine.inbox.take()
    assert first.ack_id == "high-1"
    first.window.handed(first, held=True)
    assert high.window.free(high.rank, high.lookahead) == pulling.LOOKAHEAD  # room ahead
    pulls.answer([received("high-2", envelope())])
    high_puller.step()
    first.window.settled(first.tag)
    assert engine.inbox.take().ack_id == "high-2"


def test_a_queue_without_priorities_keeps_its_window_exact_until_celery_takes_messages_fast(
        engine, pulls):
    consumer = consumer_for(engine, limit=1)
    puller = consume(engine, consumer)
    pulls.answer([received("a", envelope())])
    puller.step()
    assert consumer.lookahead is None and consumer.window.free() == 0
    assert puller.name == "kombu-pubsub-puller-jobs"


def test_a_busy_channel_pulls_about_two_round_trips_ahead_and_celery_still_gets_its_window(
        engine, pulls, clock):
    consumer = consumer_for(engine, limit=4)
    puller = consume(engine, consumer)
    tags = iter(range(10_000))
    # Celery takes each pull's 4 messages at once; a pull's round trip is 1 ms.
    for _ in range(120):
        asked = puller.ask()
        pulls.answer([received(f"m{next(tags)}", envelope()) for _ in range(asked)],
                     while_waiting=lambda: clock.advance(0.001))
        puller.step()
        while (delivery := engine.inbox.take()) is not None:
            consumer.window.handed(delivery, held=True)
            engine.settle(consumer.window.settled(delivery.tag), ack=True)
    # 4,000 a second for 20 ms (the round trip is shorter): 80 may wait beyond the window.
    assert consumer.window.pace.ahead == 80
    assert puller.ask() == 84 and pulls.calls[-1].max_messages == 84
    pulls.answer([received(f"m{next(tags)}", envelope()) for _ in range(84)])
    puller.step()
    taken = []
    while (delivery := engine.inbox.take()) is not None:
        consumer.window.handed(delivery, held=True)
        taken.append(delivery)
    assert len(taken) == 4 and len(engine.inbox) == 80 and len(engine.leaser) == 84


def test_a_step_waits_while_a_higher_step_brings_messages_and_pulls_once_it_comes_back_empty(
        engine, pulls, monkeypatch):
    low, high = steps_of(engine, limit=4, ranks=(0, 1))
    low_puller, high_puller = consume(engine, low), consume(engine, high)
    paused = []
    monkeypatch.setattr(low.window, "pause", paused.append)
    pulls.answer([received("high-1", envelope())])
    high_puller.step()
    low_puller.step()
    assert paused and [call.subscription_path for call in pulls.calls] == [high.subscription.path]
    pulls.answer([])  # the higher step is empty now
    high_puller.step()
    pulls.answer([received("low-1", envelope())])
    low_puller.step()
    assert [call.subscription_path for call in pulls.calls][-1] == low.subscription.path
    assert len(paused) == 1


def test_when_consuming_starts_lower_steps_wait_for_each_higher_steps_first_short_pull(
        engine, pulls):
    low, high = steps_of(engine, limit=4, ranks=(0, 1), probed=False)
    low_puller, high_puller = consume(engine, low), consume(engine, high)
    # The steps' first pulls do not race: the lower one waits for the higher one's.
    assert engine.higher_busy(low) and not engine.higher_busy(high)
    pulls.answer([])  # the higher step is empty
    high_puller.step()
    assert pulls.calls[-1].timeout == pulling.PROBE_TIMEOUT  # a short first pull
    assert not engine.higher_busy(low)
    pulls.answer([received("low", envelope())])
    low_puller.step()
    assert pulls.calls[-1].timeout == pulling.PROBE_TIMEOUT
    # Afterwards each waits on the server as long as any pull does.
    pulls.answer([])
    high_puller.step()
    assert pulls.calls[-1].timeout > pulling.PROBE_TIMEOUT


def test_a_higher_step_that_has_messages_at_start_hands_them_over_first(engine, pulls):
    low, high = steps_of(engine, limit=4, ranks=(0, 1), probed=False)
    low_puller, high_puller = consume(engine, low), consume(engine, high)
    pulls.answer([received("high", envelope())])
    high_puller.step()
    assert engine.higher_busy(low)  # it brought messages: lower steps keep waiting
    pulls.answer([])
    high_puller.step()
    pulls.answer([received("low", envelope())])
    low_puller.step()
    assert [engine.inbox.take().ack_id for _ in range(2)] == ["high", "low"]
