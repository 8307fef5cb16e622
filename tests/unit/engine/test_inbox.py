"""The inbox hands messages over only within each channel's prefetch window, and its doorbell
is readable exactly while there is something to look at."""

from __future__ import annotations

import select

import pytest

from kombu_pubsub.engine.inbox import Delivery, Inbox, Pace, Window
from kombu_pubsub.errors import BrokerUnavailableError


def readable(inbox: Inbox) -> bool:
    return bool(select.select([inbox.doorbell.fileno()], [], [], 0)[0])


def delivery(window: Window, tag: int, queue: str = "q") -> Delivery:
    return Delivery(object(), window, queue, "projects/p/subscriptions/q", f"ack-{tag}",
                    {"properties": {"delivery_tag": tag}})


@pytest.fixture
def inbox():
    inbox = Inbox()
    yield inbox
    inbox.close()


def test_the_doorbell_rings_on_arrival_and_is_quiet_once_cleared(inbox):
    window = Window(lambda: 0, inbox.ring_if_waiting)
    assert not readable(inbox)
    inbox.put_many([delivery(window, 1)])
    assert readable(inbox)
    inbox.doorbell.clear()
    assert not readable(inbox)


def test_a_ring_landing_while_the_bell_is_cleared_is_never_lost(inbox, monkeypatch):
    # A puller rings while the consuming thread drains the pipe. The bell must not end
    # up marked rung with nothing in the pipe: Celery's event loop would wait forever.
    bell = inbox.doorbell
    bell.ring()
    drain = bell._drain

    def ring_during_drain():
        bell.ring()
        drain()

    monkeypatch.setattr(bell, "_drain", ring_during_drain)
    bell.clear()
    monkeypatch.undo()
    bell.ring()  # the next arrival
    assert readable(inbox)


def test_a_full_window_holds_its_messages_back_but_not_another_channels(inbox):
    full = Window(lambda: 1, inbox.ring_if_waiting)
    other = Window(lambda: 1, inbox.ring_if_waiting)
    first, second, third = delivery(full, 1), delivery(full, 2), delivery(other, 3)
    inbox.put_many([first, second, third])
    assert inbox.take() is first
    full.handed(first, held=True)
    assert inbox.take() is third  # second waits: its channel has one unacked
    other.handed(third, held=True)
    assert inbox.take() is None
    inbox.doorbell.clear()
    assert full.settled(1) is first  # acked: room, and the doorbell says so
    assert readable(inbox)
    assert inbox.take() is second


def test_room_is_taken_on_arrival_never_reserved(inbox):
    window = Window(lambda: 3, inbox.ring_if_waiting)
    assert window.free() == 3
    inbox.put_many([delivery(window, 1), delivery(window, 2)])
    assert window.free() == 1
    taken = inbox.take()
    window.handed(taken, held=True)
    assert window.free() == 1  # one with Celery, one waiting
    assert window.settled(taken.tag) is taken
    assert window.free() == 2


def test_removed_messages_give_their_room_back(inbox):
    window = Window(lambda: 2, inbox.ring_if_waiting)
    inbox.put_many([delivery(window, 1, "a"), delivery(window, 2, "b")])
    removed = inbox.remove(lambda item: item.queue == "a")
    assert [item.tag for item in removed] == [1]
    assert window.free() == 1 and len(inbox) == 1


def test_an_error_from_a_background_thread_is_raised_by_the_next_take(inbox):
    inbox.fail(BrokerUnavailableError("gone"))
    inbox.fail(BrokerUnavailableError("second"))  # the first one wins
    assert readable(inbox)
    with pytest.raises(BrokerUnavailableError, match="gone"):
        inbox.take()
    assert inbox.take() is None


def test_no_limit_means_no_window(inbox):
    window = Window(lambda: 0, inbox.ring_if_waiting)
    assert window.free() is None and window.can_take()
    assert window.wait_for_room(0.0)


def ranked(window: Window, tag: int, rank: int, queue: str = "q") -> Delivery:
    return Delivery(object(), window, queue, "projects/p/subscriptions/q", f"ack-{tag}",
                    {"properties": {"delivery_tag": tag}}, rank)


def test_a_queues_higher_priority_step_is_handed_over_first(inbox):
    window = Window(lambda: 1, inbox.ring_if_waiting)
    low, high, middle, high_later = (ranked(window, 1, 0), ranked(window, 2, 2), ranked(window, 3, 1),
                                     ranked(window, 4, 2))
    inbox.put_many([low, high, middle, high_later])
    order = []
    while (taken := inbox.take()) is not None:
        window.handed(taken, held=True)
        order.append(taken.tag)
        window.settled(taken.tag)
    assert order == [2, 4, 3, 1]  # highest step first; within a step, arrival order


def test_priorities_order_one_queue_never_another_queues_older_messages(inbox):
    window = Window(lambda: 0, inbox.ring_if_waiting)
    other_queue = ranked(window, 1, 0, queue="plain")
    low, high = ranked(window, 2, 0), ranked(window, 3, 3)
    inbox.put_many([other_queue, low, high])
    assert [inbox.take().tag for _ in range(3)] == [1, 3, 2]


def test_a_step_counts_only_waiting_messages_of_its_rank_or_higher_plus_its_lookahead(inbox):
    window = Window(lambda: 2, inbox.ring_if_waiting)
    inbox.put_many([ranked(window, 1, 0), ranked(window, 2, 0), ranked(window, 3, 2)])
    assert window.free() == -1                        # a plain queue's room: unchanged
    assert window.free(rank=0, lookahead=1) == 0      # the lowest step counts everything
    assert window.free(rank=1, lookahead=1) == 2      # lower steps waiting do not count
    assert window.free(rank=2, lookahead=1) == 2
    assert window.free(rank=3, lookahead=1) == 3
    taken = inbox.take()
    assert taken.tag == 3
    window.handed(taken, held=True)
    assert window.free(rank=2, lookahead=1) == 2      # now with Celery instead of waiting
    assert [item.tag for item in inbox.remove(lambda item: True)] == [1, 2]
    assert window.free(rank=0, lookahead=1) == 2


def test_the_pace_keeps_two_pull_round_trips_of_what_celery_takes():
    pace = Pace(cap=100)
    assert pace.pulled(now=0.0, rtt=0.010) == 0  # nothing taken yet
    pace.took(100)
    assert pace.pulled(now=0.1, rtt=0.010) == 20  # 1,000/s for 2 × 10 ms
    pace.took(100)
    assert pace.pulled(now=0.2, rtt=0.035) == 30  # round trip 10 → 15 ms (moving average)
    pace.took(100)
    assert pace.pulled(now=0.3, rtt=None) == 30  # a pull that may have waited is no sample


def test_the_pace_counts_at_least_twenty_milliseconds_and_at_most_its_cap():
    pace = Pace(cap=25)
    pace.pulled(now=0.0, rtt=0.001)
    pace.took(500)
    assert pace.pulled(now=0.1, rtt=0.001) == 25  # 5,000/s × 20 ms = 100, capped
    fast = Pace(cap=100)
    fast.pulled(now=0.0, rtt=0.001)
    fast.took(100)
    assert fast.pulled(now=0.1, rtt=0.001) == 20  # 1,000/s × 20 ms, not × 2 ms


def test_long_tasks_keep_nothing_beyond_the_window():
    # Minute-long tasks on 32 threads: Celery takes about one message a second.
    pace = Pace(cap=100)
    pace.pulled(now=0.0, rtt=0.05)
    for second in range(1, 60):
        pace.took(1)
        assert pace.pulled(now=float(second), rtt=0.05) == 0


def test_while_messages_wait_a_pull_waits_for_room_for_half_the_pace(inbox):
    window = Window(lambda: 4, inbox.ring_if_waiting, ahead_cap=100)
    window.pace.ahead = 10
    assert window.free() == 14
    inbox.put_many([delivery(window, tag) for tag in range(1, 11)])
    assert window.free() == 4 and not window.wait_for_room(0.0)  # 4 < 10 / 2, and 10 wait
    for _ in range(4):
        window.handed(inbox.take(), held=True)
    assert inbox.take() is None  # Celery never holds more than its window
    assert window.free() == 4 and not window.wait_for_room(0.0)
    window.settled(1)
    assert window.free() == 5 and window.wait_for_room(0.0)
    inbox.remove(lambda item: True)  # nothing waits: any room will do
    for tag in (2, 3, 4):
        window.settled(tag)
    window.pace.ahead = 0
    assert window.free() == 4 and window.wait_for_room(0.0)
